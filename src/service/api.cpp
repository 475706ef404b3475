#include "service/api.hpp"

#include "service/base64.hpp"
#include "service/crop_params.hpp"

namespace maskmaker::service {
namespace {

using nlohmann::json;


std::string png_data_uri(const cv::Mat& m) { return "data:image/png;base64," + base64_encode(encode_png(m)); }

}  // namespace

size_t positive_count(const MaskResult& r) {
  return size_t(std::count_if(r.instances.begin(), r.instances.end(), [](const Instance& i) { return !i.negative; }));
}

std::string header_safe(const std::string& text) {
  std::string out;
  for (unsigned char c : text) out += (c >= 0x20 && c < 0x7f && c != ',') ? char(c) : '?';
  return out;
}

json rle_encode(const cv::Mat& mask) {
  // Column-major runs, starting with a run of zeros (possibly empty).
  std::vector<int64_t> counts;
  cv::Mat t = mask.t();  // rows of t are the columns of mask
  bool current = false;
  int64_t run = 0;
  for (int r = 0; r < t.rows; ++r) {
    const uint8_t* p = t.ptr<uint8_t>(r);
    for (int c = 0; c < t.cols; ++c) {
      bool v = p[c] > 127;
      if (v != current) { counts.push_back(run); run = 0; current = v; }
      ++run;
    }
  }
  counts.push_back(run);
  std::string s;
  for (size_t i = 0; i < counts.size(); ++i) {
    int64_t x = counts[i];
    if (i > 2) x -= counts[i - 2];
    bool more = true;
    while (more) {
      int64_t c = x & 0x1f;
      x >>= 5;
      more = (c & 0x10) ? x != -1 : x != 0;
      if (more) c |= 0x20;
      s += char(c + 48);
    }
  }
  return json{{"size", {mask.rows, mask.cols}}, {"counts", s}};
}

cv::Mat rle_decode(const json& rle) {
  int h = rle.at("size")[0].get<int>(), w = rle.at("size")[1].get<int>();
  std::vector<int64_t> counts;
  if (rle.at("counts").is_array()) {
    counts = rle["counts"].get<std::vector<int64_t>>();
  } else {
    const std::string s = rle["counts"].get<std::string>();
    size_t p = 0;
    while (p < s.size()) {
      int64_t x = 0;
      int k = 0;
      bool more = true;
      while (more && p < s.size()) {
        int64_t c = s[p] - 48;
        x |= (c & 0x1f) << (5 * k);
        more = c & 0x20;
        ++p;
        ++k;
        if (!more && (c & 0x10)) x |= -1LL << (5 * k);
      }
      if (counts.size() > 2) x += counts[counts.size() - 2];
      counts.push_back(x);
    }
  }
  cv::Mat t(w, h, CV_8UC1, cv::Scalar(0));
  uint8_t* data = t.data;
  int64_t pos = 0, total = int64_t(h) * w;
  bool value = false;
  for (int64_t c : counts) {
    int64_t end = std::min(total, pos + c);
    if (value) std::fill(data + pos, data + end, uint8_t(255));
    pos = end;
    value = !value;
  }
  return t.t();
}

RenderedImage render_image(const DecodedImage& image, const MaskResult& result, std::string_view output) {
  RenderedImage out;
  if (output == "mask") out.bytes = encode_png(result.mask);
  else if (output == "cutout") out.bytes = encode_png(cutout(image.bgr, result.mask));
  else if (image.format == ImageFormat::Jpeg) { out.bytes = encode_jpeg(annotate(image.bgr, result)); out.content_type = "image/jpeg"; }
  else out.bytes = encode_png(annotate(image.bgr, result));
  return out;
}

json instance_json(const Instance& inst, MaskEncoding encoding) {
  json j = {{"phrase", inst.phrase}, {"label", inst.label}, {"score", inst.score},
            {"box", {inst.box.x1, inst.box.y1, inst.box.x2, inst.box.y2}}, {"area", inst.area}};
  if (encoding != MaskEncoding::None && !inst.mask.empty()) j["mask"] = mask_json(inst.mask, encoding);
  return j;
}

json mask_json(const cv::Mat& mask, MaskEncoding encoding) {
  if (encoding == MaskEncoding::Png) return png_data_uri(mask);
  return rle_encode(mask);
}

ApiResponse compatible_response(const DecodedImage& image, const MaskResult& result, const MaskRequest& request) {
  ApiResponse out;
  RenderedImage rendered = render_image(image, result, request.return_mask ? "mask" : "annotated");
  out.bytes = std::move(rendered.bytes);
  out.content_type = rendered.content_type;
  if (request.base64) {
    json body = {{"image", base64_encode(out.bytes)}, {"status", "Success"}, {"detections", positive_count(result)}};
    if (!result.unmatched.empty()) body["unmatched"] = result.unmatched;
    out.json_body = std::move(body);
  }
  return out;
}

ApiResponse native_response(const DecodedImage& image, const MaskResult& result, const MaskRequest& request) {
  const MaskEncoding encoding = request.mask_encoding == "png" ? MaskEncoding::Png : MaskEncoding::Rle;
  json instances = json::array(), negatives = json::array();
  for (const auto& inst : result.instances)
    (inst.negative ? negatives : instances)
        .push_back(instance_json(inst, request.include_instance_masks ? encoding : MaskEncoding::None));
  json body = {{"status", "Success"},
               {"width", result.width},
               {"height", result.height},
               {"phrases", result.phrases},
               {"unmatched", result.unmatched},
               {"detections", positive_count(result)},
               {"instances", instances},
               {"negative_instances", negatives},
               {"mask", mask_json(result.mask, encoding)},
               {"image_cache_hit", result.image_cache_hit},
               {"timings_ms", {{"decode", result.times.decode_ms}, {"detect", result.times.detect_ms},
                               {"encode", result.times.encode_ms}, {"segment", result.times.segment_ms},
                               {"post", result.times.post_ms}}}};
  if (request.output != "none") {
    RenderedImage rendered = render_image(image, result, request.output);
    body["output"] = request.output;
    body["image"] = base64_encode(rendered.bytes);
    body["image_content_type"] = rendered.content_type;
  }
  add_crop_response(body, image.bgr, result.mask, request.crop);
  ApiResponse out;
  out.json_body = std::move(body);
  out.content_type = "application/json";
  return out;
}

}  // namespace maskmaker::service
