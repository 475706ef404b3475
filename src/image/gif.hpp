#pragma once
#include <cstdint>
#include <span>

#include <opencv2/core.hpp>

namespace maskmaker {
// The first frame of a GIF, composed on its logical screen, as BGR. Empty Mat when it does not decode.
// Only the first frame is read, so a huge animation costs no more than one image.
cv::Mat decode_gif_first_frame(std::span<const uint8_t> bytes);
}  // namespace maskmaker
