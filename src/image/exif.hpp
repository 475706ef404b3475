#pragma once
#include <cstdint>
#include <span>

#include <opencv2/core.hpp>

namespace maskmaker {
// The EXIF Orientation tag (1..8) of a JPEG's APP1 segment; 1 when absent or malformed. Bounds-checked.
int jpeg_exif_orientation(std::span<const uint8_t> jpeg);
// Returns the image as it should be displayed for the given orientation.
cv::Mat apply_exif_orientation(const cv::Mat& image, int orientation);
}  // namespace maskmaker
