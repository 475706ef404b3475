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

// The image answer of every front end: output = mask (PNG), cutout (RGBA PNG) or annotated (JPEG for a JPEG
// input, PNG otherwise).
struct RenderedImage {
  std::vector<uint8_t> bytes;
  std::string content_type = "image/png";
};
RenderedImage render_image(const DecodedImage& image, const MaskResult& result, std::string_view output);

// One instance as every JSON answer shows it: phrase, label, score, box, area, and its mask unless None.
enum class MaskEncoding { Rle, Png, None };
nlohmann::json instance_json(const Instance& instance, MaskEncoding encoding);
nlohmann::json mask_json(const cv::Mat& mask, MaskEncoding encoding);
size_t positive_count(const MaskResult& result);

ApiResponse compatible_response(const DecodedImage& image, const MaskResult& result, const MaskRequest& request);
ApiResponse native_response(const DecodedImage& image, const MaskResult& result, const MaskRequest& request);

// COCO run-length encoding (column-major, compressed string form as pycocotools writes it).
nlohmann::json rle_encode(const cv::Mat& binary_mask);
cv::Mat rle_decode(const nlohmann::json& rle);

// Phrases are user text: keep header values printable ASCII.
std::string header_safe(const std::string& text);

}  // namespace maskmaker::service
