#include "service/request.hpp"

#include <algorithm>
#include <cmath>

#include "runtime/ascii.hpp"
#include "runtime/utf8.hpp"
#include "service/base64.hpp"
#include "service/crop_params.hpp"

namespace maskmaker::service {
namespace {

using nlohmann::json;

// Reads the parameters of one endpoint from a JSON object through the parameter table: the spec gives the type,
// the range and the words of the error; a parameter the endpoint does not take is ignored, as unknown fields are.
class Reader {
 public:
  Reader(const json& body, Endpoint endpoint) : body_(body), endpoint_(endpoint) {}

  const json* given(std::string_view name) const {
    const ParamSpec& spec = spec_of(name);
    if (!(spec.apis & endpoint_api(endpoint_))) return nullptr;
    auto it = body_.find(name);
    if (it == body_.end() || it->is_null()) return nullptr;  // null = not given
    return &*it;
  }
  bool boolean(std::string_view name, bool fallback) const {
    const json* v = given(name);
    if (!v) return fallback;
    if (!v->is_boolean()) fail(name);
    return v->get<bool>();
  }
  double number(std::string_view name, double fallback) const {
    const json* v = given(name);
    if (!v) return fallback;
    const ParamSpec& spec = spec_of(name);
    const double lo = compatible() ? spec.compatible_min : spec.min;
    if (!v->is_number()) fail(name);
    if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(spec.max)) fail(name);
    double d = v->get<double>();
    if (!std::isfinite(d) || d < lo || d > spec.max) fail(name);
    if (spec.type == ParamType::Integer && d != std::floor(d)) fail(name);
    return d;
  }
  std::string text(std::string_view name) const {
    const json* v = given(name);
    if (!v) return "";
    if (!v->is_string()) fail(name);
    return checked_utf8(name, v->get<std::string>());
  }
  std::string choice(std::string_view name, const std::string& fallback) const {
    std::string v = rt::ascii_lower(text(name));
    if (v.empty()) return fallback;
    std::string_view choices = spec_of(name).choices;
    for (size_t start = 0; start <= choices.size();) {
      size_t bar = std::min(choices.find('|', start), choices.size());
      if (choices.substr(start, bar - start) == v) return v;
      start = bar + 1;
    }
    fail(name);
  }
  std::vector<std::string> phrases(std::string_view name) const {
    const json* v = given(name);
    if (!v) return {};
    if (v->is_string()) return split_prompt(checked_utf8(name, v->get<std::string>()));
    if (!v->is_array()) fail(name);
    std::vector<std::string> out;
    for (const auto& item : *v) {
      if (!item.is_string()) fail(name);
      for (auto& p : split_prompt(checked_utf8(name, item.get<std::string>()))) out.push_back(p);
    }
    return out;
  }

 private:
  static const ParamSpec& spec_of(std::string_view name) {
    const ParamSpec* spec = find_param(name);
    if (!spec) throw Error(ErrorCode::Internal, "parameter " + std::string(name) + " is not in the table");
    return *spec;
  }
  bool compatible() const { return endpoint_ == Endpoint::Compatible || endpoint_ == Endpoint::Jobs; }
  [[noreturn]] void fail(std::string_view name) const {
    throw Error(ErrorCode::InvalidArgument, std::string(name) + " " + param_rule(spec_of(name), compatible()),
                std::string(name));
  }
  static std::string checked_utf8(std::string_view name, std::string value) {
    if (!valid_utf8(value))
      throw Error(ErrorCode::InvalidArgument, std::string(name) + " is not valid UTF-8 text", std::string(name));
    return value;
  }

  const json& body_;
  Endpoint endpoint_;
};

void check_phrase_limits(const std::vector<std::string>& phrases, size_t bytes, const char* name) {
  if (bytes > kMaxPromptBytes)
    throw Error(ErrorCode::InvalidArgument, std::string(name) + " is " + std::to_string(bytes) + " bytes long; at most " +
                                                std::to_string(kMaxPromptBytes) + " are allowed", name);
  if (phrases.size() > kMaxPhrases)
    throw Error(ErrorCode::InvalidArgument, std::string(name) + " has " + std::to_string(phrases.size()) +
                                                " phrases; at most " + std::to_string(kMaxPhrases) + " are allowed", name);
}

// Parses a request's JSON without building what no parameter reads. With `table_fields_only`, a top-level field
// the parameter table does not name is skipped as it is read (unknown fields are ignored, so they need not cost
// memory: `"x":[{},{},...]` would cost ~20x its size as a tree); containers and values past kMaxJsonValues refuse the
// body, so a kept field cannot grow a tree either. Nothing here recurses: depth is checked before.
json parse_bounded(std::string_view text, bool table_fields_only, const std::string& what, const char* field) {
  size_t items = 0;
  bool skipping = false;  // inside a top-level field that is not kept: nothing of it is built, nothing counted
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) -> bool {
    if (event == json::parse_event_t::key) {
      if (depth == 1)
        skipping = table_fields_only && find_param(parsed.get_ref<const std::string&>()) == nullptr;
      return !skipping;
    }
    if ((event == json::parse_event_t::value || event == json::parse_event_t::object_start ||
         event == json::parse_event_t::array_start) &&
        !(skipping && depth >= 1) && ++items > kMaxJsonValues)
      throw Error(ErrorCode::InvalidArgument, what + " holds more than " + std::to_string(kMaxJsonValues) +
                                                  " JSON values", field ? field : "");
    return true;
  };
  return json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/false);
}

}  // namespace

unsigned endpoint_api(Endpoint endpoint) {
  switch (endpoint) {
    case Endpoint::Compatible: return kApiCompatible;
    case Endpoint::Native: return kApiNative;
    case Endpoint::Jobs: return kApiJobs;
    case Endpoint::Cli: return kApiCli;
  }
  return 0;
}

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
  if (json_nesting_depth(body) > kMaxJsonDepth)
    throw Error(ErrorCode::InvalidArgument, "request body is nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  json parsed = parse_bounded(body, /*table_fields_only=*/true, "request body", nullptr);
  if (parsed.is_discarded()) throw Error(ErrorCode::InvalidArgument, "request body is not valid JSON");
  return parse_mask_request(parsed, endpoint);
}

MaskRequest parse_mask_request(const json& body, Endpoint endpoint) {
  if (!body.is_object()) throw Error(ErrorCode::InvalidArgument, "request body must be a JSON object");
  const Reader in(body, endpoint);
  MaskRequest r;
  r.endpoint = endpoint;
  if (in.given("phrases")) {
    auto phrases = in.phrases("phrases");
    for (size_t i = 0; i < phrases.size(); ++i) r.prompt += (i ? ", " : "") + phrases[i];
    if (r.prompt.empty()) throw Error(ErrorCode::InvalidArgument, "phrases must name at least one thing to find", "phrases");
    check_phrase_limits(split_prompt(r.prompt), r.prompt.size(), "phrases");
  } else {
    if (!in.given("prompt")) throw Error(ErrorCode::InvalidArgument, "prompt is required", "prompt");
    r.prompt = in.text("prompt");
    if (split_prompt(r.prompt).empty())
      throw Error(ErrorCode::InvalidArgument, "prompt is empty: give one or more phrases separated by commas", "prompt");
    check_phrase_limits(split_prompt(r.prompt), r.prompt.size(), "prompt");
  }
  const bool takes_image = find_param("image")->apis & endpoint_api(endpoint);
  if (takes_image && !in.given("image")) throw Error(ErrorCode::InvalidArgument, "image is required", "image");
  r.image = in.text("image");
  if (takes_image && r.image.empty()) throw Error(ErrorCode::InvalidArgument, "image is empty: give an http(s) URL, a data URI or base64", "image");
  MaskParams& p = r.params;
  p.invert_mask = in.boolean("invert_mask", p.invert_mask);
  p.confidence_thresh = float(in.number("confidence_thresh", p.confidence_thresh));
  p.iou_thresh = float(in.number("iou_thresh", p.iou_thresh));
  p.grow_mask = int(in.number("grow_mask", p.grow_mask));
  r.return_mask = in.boolean("return_mask", r.return_mask);
  r.base64 = in.boolean("base64", r.base64);
  p.negative_phrases = in.phrases("negative_prompt");
  size_t negative_bytes = 0;  // joined with ", " as a prompt would be
  for (const auto& phrase : p.negative_phrases) negative_bytes += phrase.size() + 2;
  check_phrase_limits(p.negative_phrases, negative_bytes ? negative_bytes - 2 : 0, "negative_prompt");
  p.feather = int(in.number("feather", p.feather));
  p.max_detections = int(in.number("max_detections", p.max_detections));
  r.output = in.choice("output", r.output);
  r.mask_encoding = in.choice("mask_format", r.mask_encoding);
  r.include_instance_masks = in.boolean("instance_masks", r.include_instance_masks);
  if (in.given("crop")) r.crop = parse_crop_params(body);
  if (in.given("webhook_url")) {
    if (!in.given("webhook_url")->is_string())
      throw Error(ErrorCode::InvalidArgument, "webhook_url must be a string (an http(s) URL)", "webhook_url");
    r.webhook_url = in.text("webhook_url");
  }
  return r;
}

MaskRequest parse_mask_form(const std::vector<FormField>& fields, std::vector<uint8_t> upload, Endpoint endpoint) {
  // Each field's text becomes the JSON value its parameter's type reads; then the JSON path checks it.
  json body = json::object();
  for (const FormField& f : fields) {
    const ParamSpec* spec = find_param(f.name);
    if (!spec || !(spec->apis & endpoint_api(endpoint)) || body.contains(f.name)) continue;  // first value wins
    json value = f.value;
    const bool scalar = spec->type == ParamType::Boolean || spec->type == ParamType::Number ||
                        spec->type == ParamType::Integer;
    const size_t start = f.value.find_first_not_of(" \t\r\n");
    const bool list = spec->type == ParamType::Phrases && start != std::string::npos && f.value[start] == '[';
    if (list) {  // a JSON list of strings, bounded as a JSON body is
      if (json_nesting_depth(f.value) > kMaxJsonDepth)
        throw Error(ErrorCode::InvalidArgument, f.name + " is nested deeper than " + std::to_string(kMaxJsonDepth) +
                                                    " levels", f.name);
      json parsed = parse_bounded(f.value, /*table_fields_only=*/false, f.name, f.name.c_str());
      if (parsed.is_discarded() || !parsed.is_array())
        throw Error(ErrorCode::InvalidArgument, f.name + " " + param_rule(*spec), f.name);
      value = std::move(parsed);
    } else if (scalar) {
      json parsed = json::parse(f.value, nullptr, /*allow_exceptions=*/false);
      if (!parsed.is_discarded() && parsed.is_primitive()) value = std::move(parsed);
    }
    body[f.name] = std::move(value);
  }
  if (!upload.empty()) body["image"] = "uploaded";
  MaskRequest r = parse_mask_request(body, endpoint);
  if (!upload.empty()) {
    r.image.clear();
    r.upload = std::move(upload);
  }
  return r;
}

json to_json(const MaskRequest& r) {
  const MaskParams& p = r.params;
  json j = {{"prompt", r.prompt}, {"image", r.image}, {"invert_mask", p.invert_mask},
            {"confidence_thresh", p.confidence_thresh}, {"iou_thresh", p.iou_thresh}, {"grow_mask", p.grow_mask},
            {"return_mask", r.return_mask}, {"base64", r.base64}};
  if (r.endpoint == Endpoint::Native) {
    j.update({{"negative_prompt", p.negative_phrases}, {"feather", p.feather}, {"max_detections", p.max_detections},
              {"output", r.output}, {"mask_format", r.mask_encoding}, {"instance_masks", r.include_instance_masks}});
  }
  if (!r.webhook_url.empty()) j["webhook_url"] = r.webhook_url;
  return j;
}

void check_image_size(size_t bytes, const FetchLimits& limits) {
  if (bytes > limits.max_bytes)
    throw Error(ErrorCode::PayloadTooLarge, "image is larger than the limit of " + std::to_string(limits.max_bytes) + " bytes", "image");
}

bool is_image_url(const std::string& image) {
  std::string head = rt::ascii_lower(image.substr(0, std::min<size_t>(image.size(), 8)));
  return head.rfind("http://", 0) == 0 || head.rfind("https://", 0) == 0;
}

std::vector<uint8_t> resolve_image_bytes(const std::string& image, const FetchLimits& limits) {
  if (is_image_url(image)) return fetch_url(image, limits);
  if (rt::ascii_lower(image.substr(0, std::min<size_t>(image.size(), 5))) == "data:") {
    size_t comma = image.find(',');
    if (comma == std::string::npos) throw Error(ErrorCode::InvalidArgument, "image data URI has no ',' before its data", "image");
    std::string meta = rt::ascii_lower(image.substr(5, comma - 5));
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
    throw Error(ErrorCode::ForbiddenUrl, "image URL scheme '" + rt::ascii_lower(image.substr(0, scheme_end)) +
                                             "' is not allowed: use http(s), a data URI or base64", "image");
  }
  auto bytes = base64_decode(image);
  if (!bytes || bytes->empty())
    throw Error(ErrorCode::InvalidArgument, "image is neither an http(s) URL, a data URI nor valid base64", "image");
  if (bytes->size() > limits.max_bytes)
    throw Error(ErrorCode::PayloadTooLarge, "image is larger than the limit of " + std::to_string(limits.max_bytes) + " bytes", "image");
  return std::move(*bytes);
}

}  // namespace maskmaker::service
