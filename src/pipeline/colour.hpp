#pragma once
#include <string>

#include <opencv2/core.hpp>

namespace maskmaker {
// Share (0..1) of the masked pixels whose colour reads as `colour` ("white", "red", ...); -1 if unknown word.
float colour_fraction(const cv::Mat& hsv, const cv::Mat& mask, const std::string& colour);
}  // namespace maskmaker
