#include "image/geometry.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <opencv2/imgproc.hpp>

namespace maskmaker {

float iou(const Box& a, const Box& b) {
  float ix = std::max(0.f, std::min(a.x2, b.x2) - std::max(a.x1, b.x1));
  float iy = std::max(0.f, std::min(a.y2, b.y2) - std::max(a.y1, b.y1));
  float inter = ix * iy;
  float uni = a.area() + b.area() - inter;
  return uni > 0 ? inter / uni : 0.f;
}

LetterboxInfo letterbox(const cv::Mat& bgr, cv::Size target, bool centred, uint8_t pad, cv::Mat& out) {
  LetterboxInfo info;
  info.original = bgr.size();
  info.target = target;
  info.scale = std::min(float(target.width) / bgr.cols, float(target.height) / bgr.rows);
  int w = std::clamp(int(std::lround(bgr.cols * info.scale)), 1, target.width);
  int h = std::clamp(int(std::lround(bgr.rows * info.scale)), 1, target.height);
  if (centred) {
    info.pad_x = (target.width - w) / 2;
    info.pad_y = (target.height - h) / 2;
  }
  out.create(target, bgr.type());
  out.setTo(cv::Scalar::all(pad));
  cv::Mat roi = out(cv::Rect(info.pad_x, info.pad_y, w, h));
  if (w == bgr.cols && h == bgr.rows) bgr.copyTo(roi);
  else cv::resize(bgr, roi, roi.size(), 0, 0, cv::INTER_LINEAR);
  return info;
}

Box clip_box(const Box& b, cv::Size size) {
  auto cx = [&](float v) { return std::clamp(v, 0.f, float(size.width)); };
  auto cy = [&](float v) { return std::clamp(v, 0.f, float(size.height)); };
  return Box{cx(b.x1), cy(b.y1), cx(b.x2), cy(b.y2)};
}

Box unletterbox(const Box& b, const LetterboxInfo& info) {
  Box out{(b.x1 - info.pad_x) / info.scale, (b.y1 - info.pad_y) / info.scale, (b.x2 - info.pad_x) / info.scale,
          (b.y2 - info.pad_y) / info.scale};
  return clip_box(out, info.original);
}

void pack_chw(const cv::Mat& bgr, bool to_rgb, float scale, const std::array<float, 3>& mean,
              const std::array<float, 3>& stdev, float* dst) {
  CV_Assert(bgr.type() == CV_8UC3);
  const size_t plane = size_t(bgr.rows) * bgr.cols;
  cv::Mat planes[3];
  for (int c = 0; c < 3; ++c) planes[c] = cv::Mat(bgr.rows, bgr.cols, CV_32F, dst + c * plane);
  cv::Mat u8[3];
  cv::split(bgr, u8);
  for (int c = 0; c < 3; ++c) {
    int src = to_rgb ? 2 - c : c;  // output channel c takes R,G,B (rgb) or B,G,R (bgr)
    u8[src].convertTo(planes[c], CV_32F, scale / stdev[c], -mean[c] / stdev[c]);
  }
}

std::vector<size_t> nms(const std::vector<Box>& boxes, const std::vector<float>& scores, float iou_thresh) {
  std::vector<size_t> order(boxes.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  std::vector<size_t> kept;
  for (size_t i : order) {
    bool keep = true;
    for (size_t k : kept) {
      if (iou(boxes[i], boxes[k]) > iou_thresh) { keep = false; break; }
    }
    if (keep) kept.push_back(i);
  }
  return kept;
}

}  // namespace maskmaker
