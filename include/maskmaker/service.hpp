// The front ends' API over the service layer: the typed request every front end builds (JSON body, multipart
// form, command line) through the parameter table (params.hpp), a local run for the command line, and the JSON
// pieces every answer shares. The HTTP server and `maskmaker run` use this; MaskService itself is internal.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "maskmaker/maskmaker.hpp"

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

// Nesting depth of a JSON text (brackets outside strings), to refuse pathological bodies before parsing.
size_t json_nesting_depth(std::string_view text);
constexpr size_t kMaxJsonDepth = 32;
// Containers and values in one JSON body or form list (a request has a few dozen; phrase lists are capped far lower).
constexpr size_t kMaxJsonValues = 10000;

// One instance as every JSON answer shows it: phrase, label, score, box, area, and its mask unless None.
enum class MaskEncoding { Rle, Png, None };
nlohmann::json instance_json(const Instance& instance, MaskEncoding encoding);
nlohmann::json mask_json(const cv::Mat& mask, MaskEncoding encoding);

// COCO run-length encoding (column-major, compressed string form as pycocotools writes it).
nlohmann::json rle_encode(const cv::Mat& binary_mask);
cv::Mat rle_decode(const nlohmann::json& rle);

// box, mask_box ([x1, y1, x2, y2], x2 and y2 exclusive), width, height and scale [x, y] of a crop (the CLI's --json too).
nlohmann::json crop_geometry_json(const CropGeometry& geometry);

// What a run produced: the serialised answer, and what the front ends report about it.
struct MaskAnswer {
  std::string body;  // the bytes to send (an image, or JSON)
  std::string content_type;
  MaskResult result;  // instances, phrases, unmatched, size, stage times (decode and output included)
  int detections = 0;  // positive instances
  double infer_ms = 0;  // decode + pipeline (what X-Inference-Time-Ms reports)
  double fetch_ms = 0, wait_ms = 0;
  bool charged = false;
  std::optional<int64_t> remaining_credits;  // after the charge; nullopt = unlimited
  DecodedImage image;  // run_local only
};

// A pipeline run alone (decode, run, render; no keys, no slots): what `maskmaker run` does for each file, its
// bytes in request.upload. The answer keeps the decoded image (`image`) for further renderings (crops).
MaskAnswer run_local(Pipeline& pipeline, MaskRequest request, const DecodeLimits& limits = {});

}  // namespace maskmaker::service
