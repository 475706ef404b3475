#include "segment/regions.hpp"

#include <algorithm>
#include <array>
#include <cmath>

#include <opencv2/imgproc.hpp>

#include "maskmaker/maskmaker.hpp"

namespace maskmaker {
namespace {

// He et al.'s guided filter with a grey guide (box filters only; ximgproc's version would pull opencv_contrib
// into the runtime image): `src` follows the guide's edges within `radius`. Both are CV_32F of one size.
cv::Mat guided_filter(const cv::Mat& I, const cv::Mat& src, int radius, double eps) {
  const cv::Size k(2 * radius + 1, 2 * radius + 1);
  auto box = [&](const cv::Mat& m) {
    cv::Mat r;
    cv::boxFilter(m, r, CV_32F, k, cv::Point(-1, -1), true, cv::BORDER_REFLECT);
    return r;
  };
  cv::Mat mean_I = box(I), mean_p = box(src);
  cv::Mat cov_Ip = box(I.mul(src)) - mean_I.mul(mean_p);
  cv::Mat var_I = box(I.mul(I)) - mean_I.mul(mean_I);
  cv::Mat a = cov_Ip / (var_I + eps);
  cv::Mat b = mean_p - a.mul(mean_I);
  return box(a).mul(I) + box(b);
}

// Refinement runs at no more than this many pixels on the photo's long side; only the final bilinear upsampling
// and threshold run at full size, so a 12 MP photo costs about what a 1 MP one does.
constexpr int kWorkSide = 1024;

}  // namespace

const std::vector<std::string>& RegionSegmenter::class_names() {
  static const std::vector<std::string> names = {
      "other",  "wall",     "building", "sky",   "floor",   "tree",  "ceiling", "road",     "bed",
      "windowpane", "grass", "cabinet", "sidewalk", "person", "earth", "door",  "table",    "mountain",
      "plant",  "curtain",  "chair",    "car",   "water",   "painting", "sofa", "shelf",    "house",
      "sea",    "mirror",   "rug",      "field", "armchair"};
  return names;
}

std::vector<int> RegionSegmenter::expand(int id, const RegionMap& map) {
  // Measured on ../shared/data/dev/manifest_stuff.jsonl (docs/accuracy.md): each set is one COCO region, or
  // ADE classes this model confuses with the asked one where COCO draws no line between them.
  switch (id) {
    case 1: return {1, 2, 26};  // wall + building + house: a wall outdoors is a building's wall, which the
                                // model calls building (COCO: "wall brick" of a house)
    case 2: {
      // building + house; and, on a photo with no sign of an interior, wall: the model calls most building
      // facades "wall" (53 % of COCO's building pixels).
      static constexpr int kIndoor[] = {4, 6, 8, 11, 29};  // floor, ceiling, bed, cabinet, rug
      std::array<int, 256> count{};
      for (const cv::Mat* m : {&map.ids, &map.ids_flipped}) {
        for (int y = 0; y < m->rows; ++y) {
          const uint8_t* p = m->ptr<uint8_t>(y);
          for (int x = 0; x < m->cols; ++x) ++count[p[x]];
        }
      }
      size_t indoor = 0;
      for (int c : kIndoor) indoor += size_t(count[size_t(c)]);
      const size_t total = map.ids.total() + map.ids_flipped.total();
      if (double(indoor) < kIndoorShare * double(total)) return {2, 26, 1};
      return {2, 26};
    }
    case 26: return {26, 2};  // house + building
    case 27: return {27, 22};  // sea + water
    case 22: return {22, 27};  // water + sea
    case 5: return {5, 18};   // tree + plant (bushes, leaves)
    case 30: return {30, 10};  // field + grass (a playing field is mostly grass)
    case 14: return {14, 30};  // earth (ground, dirt) + field (bare fields: the model calls dirt "field")
    case 25: return {25, 11};  // shelf + cabinet (shelving units: ADE labels many as cabinet)
    default: return {id};
  }
}

RegionSegmenter::RegionSegmenter(const std::string& path, const rt::SessionConfig& config, RegionOptions options)
    : session_(rt::open_session(path, config)), options_(options) {
  auto in = rt::input_specs(*session_);
  auto out = rt::output_specs(*session_);
  if (in.size() != 1 || in[0].shape.size() != 4 || in[0].shape[3] != 3 ||
      in[0].type != ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 || out.size() != 1 || out[0].shape.size() != 3 ||
      out[0].type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32)
    throw Error(ErrorCode::ModelError, "region segmenter " + path +
                                           ": expected one uint8 [1,S,S,3] input and one int32 [1,S,S] output");
  in_name_ = in[0].name;
  out_name_ = out[0].name;
  if (in[0].shape[1] > 0) side_ = int(in[0].shape[1]);
}

cv::Mat RegionSegmenter::infer(const cv::Mat& rgb) {
  cv::Mat input = rgb.isContinuous() ? rgb : rgb.clone();
  std::array<int64_t, 4> shape{1, side_, side_, 3};
  Ort::Value tensor = Ort::Value::CreateTensor<uint8_t>(rt::cpu_memory(), input.data, input.total() * 3,
                                                        shape.data(), shape.size());
  const char* in_names[] = {in_name_.c_str()};
  const char* out_names[] = {out_name_.c_str()};
  auto outputs = session_->Run(Ort::RunOptions{nullptr}, in_names, &tensor, 1, out_names, 1);
  auto info = outputs[0].GetTensorTypeAndShapeInfo();
  if (info.GetElementCount() != size_t(side_) * side_)
    throw Error(ErrorCode::ModelError, "region segmenter: unexpected output size");
  const int32_t* data = outputs[0].GetTensorData<int32_t>();
  const int n_classes = int(class_names().size());
  cv::Mat ids(side_, side_, CV_8UC1);
  uint8_t* dst = ids.ptr<uint8_t>();
  for (size_t i = 0; i < ids.total(); ++i) dst[i] = uint8_t(data[i] >= 0 && data[i] < n_classes ? data[i] : 0);
  return ids;
}

std::shared_ptr<const RegionMap> RegionSegmenter::run(const cv::Mat& bgr) {
  // The model was trained on the photo stretched to its square input (no letterbox).
  cv::Mat square, rgb, mirrored;
  const bool shrink = bgr.cols > side_ && bgr.rows > side_;
  cv::resize(bgr, square, cv::Size(side_, side_), 0, 0, shrink ? cv::INTER_AREA : cv::INTER_LINEAR);
  cv::cvtColor(square, rgb, cv::COLOR_BGR2RGB);
  auto map = std::make_shared<RegionMap>();
  map->original = bgr.size();
  map->ids = infer(rgb);
  cv::flip(rgb, mirrored, 1);
  cv::flip(infer(mirrored), map->ids_flipped, 1);
  return map;
}

RegionMask RegionSegmenter::mask(const RegionMap& map, const std::vector<int>& classes, const cv::Mat& bgr) const {
  RegionMask out;
  out.mask = cv::Mat::zeros(map.original, CV_8UC1);
  cv::Mat lut(1, 256, CV_8UC1, cv::Scalar(0));
  for (int c : classes) {
    if (c > 0 && c < 256) lut.at<uint8_t>(0, c) = 255;
  }
  cv::Mat a, b;
  cv::LUT(map.ids, lut, a);
  cv::LUT(map.ids_flipped, lut, b);
  const int both = cv::countNonZero(a & b), either = cv::countNonZero(a | b);
  out.agreement = either == 0 ? 0.f : float(both) / float(either);
  // The two runs' mean: 1 where both see the region, 0.5 where one does.
  cv::Mat soft;
  cv::addWeighted(a, 1.0 / 510.0, b, 1.0 / 510.0, 0.0, soft, CV_32F);
  const float share = float(cv::mean(soft)[0]);
  if (out.agreement < options_.min_agreement || share < options_.min_area) return out;

  const double f = std::min(1.0, double(kWorkSide) / std::max(map.original.width, map.original.height));
  const cv::Size work(std::max(1, int(std::lround(map.original.width * f))),
                      std::max(1, int(std::lround(map.original.height * f))));
  cv::Mat up;
  cv::resize(soft, up, work, 0, 0, cv::INTER_LINEAR);
  if (options_.guided_radius > 0.f && bgr.size() == map.original) {
    // Edges follow the photo: the map is side x side, the photo often several times larger.
    cv::Mat grey, I;
    cv::cvtColor(bgr, grey, cv::COLOR_BGR2GRAY);
    if (work != grey.size()) cv::resize(grey, grey, work, 0, 0, cv::INTER_AREA);
    grey.convertTo(I, CV_32F, 1.0 / 255.0);
    const float cell = float(std::max(work.width, work.height)) / float(side_);
    const int radius = std::max(1, int(std::lround(options_.guided_radius * cell)));
    up = guided_filter(I, up, radius, options_.guided_eps);
  }
  if (options_.min_component > 0.f) {
    // Specks: parts under min_component of the photo are cleared before the final upsampling.
    cv::Mat labels, stats, centroids;
    cv::Mat binary = up > 0.5f;
    int n = cv::connectedComponentsWithStats(binary, labels, stats, centroids, 8, CV_32S);
    const double min_px = options_.min_component * double(binary.total());
    std::vector<uint8_t> keep(size_t(std::max(n, 1)), 0);
    for (int i = 1; i < n; ++i) keep[size_t(i)] = stats.at<int>(i, cv::CC_STAT_AREA) >= min_px;
    for (int y = 0; y < up.rows; ++y) {
      float* m = up.ptr<float>(y);
      const int* l = labels.ptr<int>(y);
      for (int x = 0; x < up.cols; ++x) if (l[x] > 0 && !keep[size_t(l[x])]) m[x] = 0.f;
    }
  }
  if (work != map.original) cv::resize(up, up, map.original, 0, 0, cv::INTER_LINEAR);
  out.mask = up > 0.5f;
  out.area_share = float(cv::countNonZero(out.mask)) / float(std::max<size_t>(1, out.mask.total()));
  return out;
}

cv::Mat RegionSegmenter::refine(const cv::Mat& mask, SamSegmenter& sam, const ImageEmbedding& embedding) const {
  cv::Mat labels, stats, centroids;
  const int n = cv::connectedComponentsWithStats(mask, labels, stats, centroids, 8, CV_32S);
  std::vector<int> parts;
  for (int i = 1; i < n; ++i) {
    if (stats.at<int>(i, cv::CC_STAT_AREA) >= options_.sam_min_component * double(mask.total())) parts.push_back(i);
  }
  std::sort(parts.begin(), parts.end(), [&](int a, int b) {
    return stats.at<int>(a, cv::CC_STAT_AREA) > stats.at<int>(b, cv::CC_STAT_AREA);
  });
  if (parts.size() > size_t(std::max(0, options_.sam_max_components))) parts.resize(size_t(std::max(0, options_.sam_max_components)));
  cv::Mat out = mask.clone();
  const int g = std::max(1, int(std::lround(options_.sam_grow * std::max(mask.cols, mask.rows))));
  const cv::Mat disk = cv::getStructuringElement(cv::MORPH_ELLIPSE, cv::Size(2 * g + 1, 2 * g + 1));
  for (int i : parts) {
    const cv::Rect r(stats.at<int>(i, cv::CC_STAT_LEFT), stats.at<int>(i, cv::CC_STAT_TOP),
                     stats.at<int>(i, cv::CC_STAT_WIDTH), stats.at<int>(i, cv::CC_STAT_HEIGHT));
    // Work in the part's box plus the growth margin: the part, its innermost point, SAM's mask there.
    const cv::Rect roi = cv::Rect(r.x - g, r.y - g, r.width + 2 * g, r.height + 2 * g) & cv::Rect(0, 0, mask.cols, mask.rows);
    cv::Mat part = labels(roi) == i;
    cv::Mat dist;
    cv::distanceTransform(part, dist, cv::DIST_L2, 3);
    double depth = 0;
    cv::Point inner;
    cv::minMaxLoc(dist, nullptr, &depth, nullptr, &inner);
    if (depth <= 1.0) continue;
    const Box box{float(r.x), float(r.y), float(r.x + r.width), float(r.y + r.height)};
    const cv::Mat s = sam.segment_box(embedding, box, {cv::Point2f(float(inner.x + roi.x) + 0.5f, float(inner.y + roi.y) + 0.5f)},
                                      {true});
    cv::Mat s_roi = s(roi);
    const double both = cv::countNonZero(s_roi & part);
    const double either = double(cv::countNonZero(s)) + double(cv::countNonZero(part)) - both;
    if (either == 0 || both / either < options_.sam_min_iou) continue;
    cv::Mat grown;
    cv::dilate(part, grown, disk);
    cv::Mat o = out(roi);
    o.setTo(0, part);
    o.setTo(255, s_roi & grown);
  }
  return out;
}

}  // namespace maskmaker
