// Response bodies of the compatible and the native endpoints.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "maskmaker/maskmaker.hpp"
#include "maskmaker/service.hpp"
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

size_t positive_count(const MaskResult& result);

ApiResponse compatible_response(const DecodedImage& image, const MaskResult& result, const MaskRequest& request);
ApiResponse native_response(const DecodedImage& image, const MaskResult& result, const MaskRequest& request);


// Phrases are user text: keep header values printable ASCII.
std::string header_safe(const std::string& text);

}  // namespace maskmaker::service
