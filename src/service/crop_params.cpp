#include "service/crop_params.hpp"

#include <algorithm>
#include <cmath>

#include "service/base64.hpp"
#include "service/request.hpp"

namespace maskmaker::service {
namespace {

using nlohmann::json;
constexpr size_t kMaxCropText = 1024;  // a multipart field's JSON text; the object has six short fields

[[noreturn]] void invalid(const std::string& field, const std::string& rule) {
  throw Error(ErrorCode::InvalidArgument, "crop." + field + " must be " + rule, "crop." + field);
}

// An integer field in [lo, hi]; `rule` is the message's end. Bounds are checked before the conversion to int.
void read_int(const json& crop, const char* name, int& out, double lo, double hi, const std::string& rule) {
  auto it = crop.find(name);
  if (it == crop.end() || it->is_null()) return;
  if (!it->is_number()) invalid(name, rule);
  double d = it->get<double>();
  if (!std::isfinite(d) || d != std::floor(d) || d < lo || d > hi) invalid(name, rule);
  out = int(d);
}

void read_number(const json& crop, const char* name, double& out, double lo, double hi, const std::string& rule) {
  auto it = crop.find(name);
  if (it == crop.end() || it->is_null()) return;
  if (!it->is_number()) invalid(name, rule);
  double d = it->get<double>();
  if (!std::isfinite(d) || d < lo || d > hi) invalid(name, rule);
  out = d;
}

}  // namespace

std::optional<CropParams> parse_crop_params(const json& body) {
  auto it = body.find("crop");
  if (it == body.end() || it->is_null()) return std::nullopt;
  const std::string must = "crop must be an object such as {\"padding\": 32, \"multiple_of\": 64} "
                           "(in a multipart form: that object as JSON text)";
  json text_object;
  const json* crop = &*it;
  if (it->is_string()) {
    const std::string& text = it->get_ref<const std::string&>();
    if (text.size() > kMaxCropText || json_nesting_depth(text) > 2) throw Error(ErrorCode::InvalidArgument, must, "crop");
    text_object = json::parse(text, nullptr, /*allow_exceptions=*/false);
    crop = &text_object;
    if (crop->is_null()) return std::nullopt;  // "null" in a form, as in JSON
  }
  if (!crop->is_object()) throw Error(ErrorCode::InvalidArgument, must, "crop");
  static const char* known[] = {"padding", "padding_fraction", "multiple_of", "target_size", "min_size", "aspect_ratio"};
  for (const auto& [key, value] : crop->items()) {
    if (std::find(std::begin(known), std::end(known), key) == std::end(known))
      throw Error(ErrorCode::InvalidArgument,
                  "crop has an unknown field '" + key.substr(0, 40) +
                      "'; known: padding, padding_fraction, multiple_of, target_size, min_size, aspect_ratio",
                  "crop");
  }
  using L = CropLimits;
  CropParams p;
  read_int(*crop, "padding", p.padding, 0, L::max_padding, "an integer between 0 and 4096");
  read_number(*crop, "padding_fraction", p.padding_fraction, 0, L::max_padding_fraction, "a number between 0 and 2");
  read_int(*crop, "multiple_of", p.multiple_of, 1, L::max_multiple_of, "an integer between 1 and 1024");
  read_int(*crop, "target_size", p.target_size, 1, L::max_target_size, "an integer between 1 and 4096");
  read_int(*crop, "min_size", p.min_size, 0, L::max_min_size, "an integer between 0 and 8192");
  read_number(*crop, "aspect_ratio", p.aspect_ratio, L::min_aspect_ratio, L::max_aspect_ratio,
              "a number between 0.1 and 10");
  validate(p);  // the rules between fields (target_size a multiple of multiple_of)
  return p;
}

json crop_geometry_json(const CropGeometry& g) {
  return {{"box", {g.box.x, g.box.y, g.box.x + g.box.width, g.box.y + g.box.height}},
          {"mask_box", {g.mask_box.x, g.mask_box.y, g.mask_box.x + g.mask_box.width, g.mask_box.y + g.mask_box.height}},
          {"width", g.size.width},
          {"height", g.size.height},
          {"scale", {g.scale_x, g.scale_y}}};
}

void add_crop_response(json& body, const cv::Mat& bgr, const cv::Mat& mask, const std::optional<CropParams>& params) {
  if (!params) return;
  std::optional<InpaintCrop> crop = crop_for_inpainting(bgr, mask, *params);
  if (!crop) {
    body["crop"] = nullptr;
    body["crop_reason"] = "the mask is empty: nothing to crop";
    return;
  }
  json j = crop_geometry_json(crop->geometry);
  j["image"] = base64_encode(encode_png(crop->image));
  j["mask"] = base64_encode(encode_png(crop->mask));
  body["crop"] = std::move(j);
}

}  // namespace maskmaker::service
