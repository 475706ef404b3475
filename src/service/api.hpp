// Response bodies of the compatible and the native endpoints.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "maskmaker/maskmaker.hpp"
#include "service/request.hpp"

namespace maskmaker::service {

struct ApiResponse {
  std::vector<uint8_t> bytes;
  std::string content_type;
  std::optional<nlohmann::json> json_body;  // set instead of bytes for JSON answers
};

ApiResponse compatible_response(const DecodedImage& image, const MaskResult& result, const MaskRequest& request);
ApiResponse native_response(const DecodedImage& image, const MaskResult& result, const MaskRequest& request);

// COCO run-length encoding (column-major, compressed string form as pycocotools writes it).
nlohmann::json rle_encode(const cv::Mat& binary_mask);
cv::Mat rle_decode(const nlohmann::json& rle);

// Phrases are user text: keep header values printable ASCII.
std::string header_safe(const std::string& text);

}  // namespace maskmaker::service
