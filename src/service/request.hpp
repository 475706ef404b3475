// The typed request every front end builds (JSON body, multipart form, command line), through the parameter
// table (maskmaker/params.hpp); and the `image` field's three forms.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "maskmaker/maskmaker.hpp"
#include "service/url_fetch.hpp"

namespace maskmaker::service {

enum class Endpoint {
  Compatible,  // POST /v1/inpaint-mask-maker: the hosted API's contract
  Native,      // POST /v1/masks
  Jobs,        // POST /v2/inpaint-mask-maker: the compatible contract, queued, with webhook_url
  Cli,         // maskmaker run: the native parameters; images come from files
};
unsigned endpoint_api(Endpoint endpoint);  // its ParamApi bit

struct MaskRequest {
  Endpoint endpoint = Endpoint::Compatible;
  std::string prompt;
  std::string image;            // URL, data URI or bare base64; empty when the image was uploaded
  std::vector<uint8_t> upload;  // an uploaded file (multipart `image` part)
  MaskParams params;
  bool return_mask = false;
  bool base64 = false;
  // native API (/v1/masks)
  std::string output = "mask";        // mask | annotated | cutout | none
  std::string mask_encoding = "rle";  // rle | png: per-instance masks
  bool include_instance_masks = true;
  std::optional<CropParams> crop;     // crop for inpainting (service/crop_params.hpp)
  // jobs (/v2)
  std::string webhook_url;
};

// A JSON body (any object; unknown fields ignored). Throws Error(InvalidArgument) naming the field.
MaskRequest parse_mask_request(std::string_view body, Endpoint endpoint);
MaskRequest parse_mask_request(const nlohmann::json& body, Endpoint endpoint);

// A multipart form: text fields by name (values read by each parameter's type: booleans and numbers as JSON
// scalars, phrase lists as a JSON array or comma-separated text), and the uploaded image, if any.
struct FormField {
  std::string name;
  std::string value;
};
MaskRequest parse_mask_form(const std::vector<FormField>& fields, std::vector<uint8_t> upload, Endpoint endpoint);

// The request back as the JSON body that parses to it (stored by /v2 jobs; an upload travels separately).
nlohmann::json to_json(const MaskRequest& request);

// Bytes of the `image` field: fetched (http/https), a data URI, or bare base64.
// Throws Error with ForbiddenUrl / FetchFailed / Timeout / PayloadTooLarge / InvalidArgument.
std::vector<uint8_t> resolve_image_bytes(const std::string& image, const FetchLimits& limits);

// Nesting depth of a JSON text (brackets outside strings), to refuse pathological bodies before parsing.
size_t json_nesting_depth(std::string_view text);
constexpr size_t kMaxJsonDepth = 32;

}  // namespace maskmaker::service
