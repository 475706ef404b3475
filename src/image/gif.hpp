#pragma once
#include <cstdint>
#include <optional>
#include <span>

#include <opencv2/core.hpp>

namespace maskmaker {
// The first frame of a GIF, composed on its logical screen, as BGR. Empty Mat when it does not decode.
// Only the first frame is read, so a huge animation costs no more than one image. The frame's own size (which
// giflib does not bound by the screen's) is held to `max_pixels` too: Error(ImageTooLarge) above it.
// The logical screen's size as giflib reads it (the canvas decode_gif_first_frame returns); nullopt when giflib
// cannot open the file.
std::optional<cv::Size> gif_screen_size(std::span<const uint8_t> bytes);
cv::Mat decode_gif_first_frame(std::span<const uint8_t> bytes, int64_t max_pixels = INT64_MAX);
}  // namespace maskmaker
