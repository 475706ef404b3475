#include "server/request.hpp"

#include <algorithm>
#include <cmath>

#include "server/base64.hpp"
#include "server/crop_params.hpp"

namespace maskmaker::server {
namespace {

using nlohmann::json;
constexpr size_t kMaxDepth = 32;
// Longest prompt (bytes, also of a native `phrases` list joined): phrases that match nothing come back in the
// X-Unmatched-Phrases header, and HTTP clients refuse header lines over 64 KiB (Python's http.client).
constexpr size_t kMaxPromptBytes = 4096;
constexpr size_t kMaxPhrases = 64;  // also checked by the pipeline; here it comes before the image is fetched

const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;  // null = not given
  return &*it;
}

bool get_bool(const json& body, const char* name, bool fallback) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_boolean()) throw Error(ErrorCode::InvalidArgument, std::string(name) + " must be a boolean (true or false)", name);
  return v->get<bool>();
}

float get_unit(const json& body, const char* name, float fallback) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_number()) throw Error(ErrorCode::InvalidArgument, std::string(name) + " must be a number between 0 and 1", name);
  double d = v->get<double>();
  if (!std::isfinite(d) || d < 0.0 || d > 1.0)
    throw Error(ErrorCode::InvalidArgument, std::string(name) + " must be a number between 0 and 1", name);
  return float(d);
}

int get_int(const json& body, const char* name, int fallback, int lo, int hi) {
  const json* v = field(body, name);
  if (!v) return fallback;
  std::string msg = std::string(name) + " must be an integer between " + std::to_string(lo) + " and " + std::to_string(hi);
  if (!v->is_number()) throw Error(ErrorCode::InvalidArgument, msg, name);
  double d = v->get<double>();
  if (v->is_number_float() && (!std::isfinite(d) || d != std::floor(d))) throw Error(ErrorCode::InvalidArgument, msg, name);
  if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(hi)) throw Error(ErrorCode::InvalidArgument, msg, name);
  if (d < lo || d > hi) throw Error(ErrorCode::InvalidArgument, msg, name);
  return int(d);
}

std::string get_string(const json& body, const char* name, bool required) {
  const json* v = field(body, name);
  if (!v) {
    if (required) throw Error(ErrorCode::InvalidArgument, std::string(name) + " is required", name);
    return "";
  }
  if (!v->is_string()) throw Error(ErrorCode::InvalidArgument, std::string(name) + " must be a string", name);
  return v->get<std::string>();
}

std::vector<std::string> get_phrases(const json& body, const char* name) {
  const json* v = field(body, name);
  if (!v) return {};
  if (v->is_string()) return split_prompt(v->get<std::string>());
  if (!v->is_array()) throw Error(ErrorCode::InvalidArgument, std::string(name) + " must be a string or a list of strings", name);
  std::vector<std::string> out;
  for (const auto& item : *v) {
    if (!item.is_string()) throw Error(ErrorCode::InvalidArgument, std::string(name) + " must be a string or a list of strings", name);
    for (auto& p : split_prompt(item.get<std::string>())) out.push_back(p);
  }
  return out;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), ::tolower);
  return s;
}

}  // namespace

size_t json_nesting_depth(std::string_view text) {
  size_t depth = 0, max_depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') max_depth = std::max(max_depth, ++depth);
    else if ((c == ']' || c == '}') && depth > 0) --depth;
  }
  return max_depth;
}

MaskRequest parse_mask_request(std::string_view body, Endpoint endpoint) {
  if (body.empty()) throw Error(ErrorCode::InvalidArgument, "request body is empty: send a JSON object");
  if (json_nesting_depth(body) > kMaxDepth)
    throw Error(ErrorCode::InvalidArgument, "request body is nested deeper than " + std::to_string(kMaxDepth) + " levels");
  json parsed = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) throw Error(ErrorCode::InvalidArgument, "request body is not valid JSON");
  return parse_mask_request(parsed, endpoint);
}

MaskRequest parse_mask_request(const json& body, Endpoint endpoint) {
  if (!body.is_object()) throw Error(ErrorCode::InvalidArgument, "request body must be a JSON object");
  MaskRequest r;
  const bool native = endpoint == Endpoint::Native;
  if (native && field(body, "phrases")) {
    auto phrases = get_phrases(body, "phrases");
    for (size_t i = 0; i < phrases.size(); ++i) r.prompt += (i ? ", " : "") + phrases[i];
    if (r.prompt.empty()) throw Error(ErrorCode::InvalidArgument, "phrases must name at least one thing to find", "phrases");
  } else {
    r.prompt = get_string(body, "prompt", true);
    if (split_prompt(r.prompt).empty())
      throw Error(ErrorCode::InvalidArgument, "prompt is empty: give one or more phrases separated by commas", "prompt");
  }
  if (r.prompt.size() > kMaxPromptBytes) {
    const char* name = native && field(body, "phrases") ? "phrases" : "prompt";
    throw Error(ErrorCode::InvalidArgument, std::string(name) + " is " + std::to_string(r.prompt.size()) +
                                                " bytes long; at most " + std::to_string(kMaxPromptBytes) + " are allowed",
                name);
  }
  if (size_t n = split_prompt(r.prompt).size(); n > kMaxPhrases) {
    const char* name = native && field(body, "phrases") ? "phrases" : "prompt";
    throw Error(ErrorCode::InvalidArgument, std::string(name) + " has " + std::to_string(n) + " phrases; at most " +
                                                std::to_string(kMaxPhrases) + " are allowed", name);
  }
  r.image = get_string(body, "image", true);
  if (r.image.empty()) throw Error(ErrorCode::InvalidArgument, "image is empty: give an http(s) URL, a data URI or base64", "image");
  r.params.invert_mask = get_bool(body, "invert_mask", false);
  r.params.confidence_thresh = get_unit(body, "confidence_thresh", 0.5f);
  r.params.iou_thresh = get_unit(body, "iou_thresh", 0.2f);
  r.params.grow_mask = get_int(body, "grow_mask", 10, native ? -100 : 0, 100);
  r.return_mask = get_bool(body, "return_mask", false);
  r.base64 = get_bool(body, "base64", false);
  if (native) {
    r.params.negative_phrases = get_phrases(body, "negative_prompt");
    // The same limits as the prompt's: each negative phrase is one more detector query.
    size_t negative_bytes = 0;
    for (const auto& p : r.params.negative_phrases) negative_bytes += p.size() + 2;
    if (r.params.negative_phrases.size() > kMaxPhrases)
      throw Error(ErrorCode::InvalidArgument, "negative_prompt has " + std::to_string(r.params.negative_phrases.size()) +
                                                  " phrases; at most " + std::to_string(kMaxPhrases) + " are allowed",
                  "negative_prompt");
    if (negative_bytes > kMaxPromptBytes + 2)
      throw Error(ErrorCode::InvalidArgument, "negative_prompt is " + std::to_string(negative_bytes - 2) +
                                                  " bytes long; at most " + std::to_string(kMaxPromptBytes) + " are allowed",
                  "negative_prompt");
    r.params.feather = get_int(body, "feather", 0, 0, 100);
    r.params.max_detections = get_int(body, "max_detections", 100, 0, 1000);
    r.output = lower(get_string(body, "output", false));
    if (r.output.empty()) r.output = "mask";
    if (r.output != "mask" && r.output != "annotated" && r.output != "cutout" && r.output != "none")
      throw Error(ErrorCode::InvalidArgument, "output must be one of mask, annotated, cutout, none", "output");
    r.mask_encoding = lower(get_string(body, "mask_format", false));
    if (r.mask_encoding.empty()) r.mask_encoding = "rle";
    if (r.mask_encoding != "rle" && r.mask_encoding != "png")
      throw Error(ErrorCode::InvalidArgument, "mask_format must be rle or png", "mask_format");
    r.include_instance_masks = get_bool(body, "instance_masks", true);
    r.crop = parse_crop_params(body);
  }
  return r;
}

std::vector<uint8_t> resolve_image_bytes(const std::string& image, const FetchLimits& limits) {
  std::string head = lower(image.substr(0, std::min<size_t>(image.size(), 16)));
  if (head.rfind("http://", 0) == 0 || head.rfind("https://", 0) == 0) return fetch_url(image, limits);
  if (head.rfind("data:", 0) == 0) {
    size_t comma = image.find(',');
    if (comma == std::string::npos) throw Error(ErrorCode::InvalidArgument, "image data URI has no ',' before its data", "image");
    std::string meta = lower(image.substr(5, comma - 5));
    if (meta.size() < 7 || meta.compare(meta.size() - 7, 7, ";base64") != 0)
      throw Error(ErrorCode::InvalidArgument, "image data URI must be base64-encoded (data:image/...;base64,...)", "image");
    auto bytes = base64_decode(std::string_view(image).substr(comma + 1));
    if (!bytes) throw Error(ErrorCode::InvalidArgument, "image data URI does not hold valid base64", "image");
    if (bytes->size() > limits.max_bytes)
      throw Error(ErrorCode::PayloadTooLarge, "image is larger than the limit of " + std::to_string(limits.max_bytes) + " bytes", "image");
    return std::move(*bytes);
  }
  size_t scheme_end = image.find("://");
  if (scheme_end != std::string::npos && scheme_end < 16) {
    throw Error(ErrorCode::ForbiddenUrl, "image URL scheme '" + lower(image.substr(0, scheme_end)) +
                                             "' is not allowed: use http(s), a data URI or base64", "image");
  }
  auto bytes = base64_decode(image);
  if (!bytes || bytes->empty())
    throw Error(ErrorCode::InvalidArgument, "image is neither an http(s) URL, a data URI nor valid base64", "image");
  if (bytes->size() > limits.max_bytes)
    throw Error(ErrorCode::PayloadTooLarge, "image is larger than the limit of " + std::to_string(limits.max_bytes) + " bytes", "image");
  return std::move(*bytes);
}

}  // namespace maskmaker::server
