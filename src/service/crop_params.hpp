// The native API's optional `crop` object (POST /v1/masks): parsing and validation, and its part of the answer.
#pragma once

#include <optional>

#include <nlohmann/json.hpp>

#include "maskmaker/maskmaker.hpp"
#include "maskmaker/service.hpp"

namespace maskmaker::service {

// The `crop` field of a request body: nullopt when absent or null. A string is read as JSON text (multipart
// forms carry the object that way). Unknown keys are refused (a typo would silently change the crop).
// Throws Error(InvalidArgument) naming the field, e.g. "crop.multiple_of must be an integer between 1 and 1024".
std::optional<CropParams> parse_crop_params(const nlohmann::json& body);


// The answer's `crop` object (box, scale, cropped image and mask as base64 PNG), or null with `crop_reason`, added
// to `body` when the request asked for a crop.
void add_crop_response(nlohmann::json& body, const cv::Mat& bgr, const cv::Mat& mask, const std::optional<CropParams>& params);

}  // namespace maskmaker::service
