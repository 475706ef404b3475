// Parsing and validation of the JSON request body, and of the `image` field's three forms.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "maskmaker/maskmaker.hpp"
#include "server/url_fetch.hpp"

namespace maskmaker::server {

enum class Endpoint { Compatible, Native };

struct MaskRequest {
  std::string prompt;
  std::string image;  // URL, data URI or bare base64
  MaskParams params;
  bool return_mask = false;
  bool base64 = false;
  // native API (/v1/masks)
  std::string output = "mask";        // mask | annotated | cutout | none
  std::string mask_encoding = "rle";  // rle | png: per-instance masks
  bool include_instance_masks = true;
  std::optional<CropParams> crop;     // crop for inpainting (server/crop_params.hpp)
};

// Parses a JSON body (any object; unknown fields ignored). Throws Error(InvalidArgument) naming the field.
MaskRequest parse_mask_request(std::string_view body, Endpoint endpoint);
// Same, from an already-parsed object (multipart forms build one).
MaskRequest parse_mask_request(const nlohmann::json& body, Endpoint endpoint);

// Bytes of the `image` field: fetched (http/https), a data URI, or bare base64.
// Throws Error with ForbiddenUrl / FetchFailed / Timeout / PayloadTooLarge / InvalidArgument.
std::vector<uint8_t> resolve_image_bytes(const std::string& image, const FetchLimits& limits);

// Nesting depth of a JSON text (brackets outside strings), to refuse pathological bodies before parsing.
size_t json_nesting_depth(std::string_view text);

}  // namespace maskmaker::server
