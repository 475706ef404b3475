#include <algorithm>
#include <cstdio>
#include <map>

#include <opencv2/imgproc.hpp>

#include "maskmaker/maskmaker.hpp"

namespace maskmaker {
namespace {

// Distinct, saturated colours (BGR), one per phrase in prompt order.
const cv::Scalar kPalette[] = {
    {56, 56, 255}, {151, 157, 255}, {31, 112, 255}, {29, 178, 255}, {49, 210, 207}, {10, 249, 72},
    {23, 204, 146}, {134, 219, 61}, {52, 147, 26}, {187, 212, 0}, {168, 153, 44}, {255, 194, 0},
    {147, 69, 52}, {255, 115, 100}, {236, 24, 0}, {255, 56, 132}, {133, 0, 82}, {255, 56, 203},
};

}  // namespace

cv::Mat annotate(const cv::Mat& bgr, const MaskResult& result) {
  cv::Mat out = bgr.clone();
  std::map<std::string, size_t> phrase_index;
  for (size_t i = 0; i < result.phrases.size(); ++i) phrase_index.emplace(result.phrases[i], i);
  auto colour_of = [&](const std::string& phrase) {
    auto it = phrase_index.find(phrase);
    size_t i = it == phrase_index.end() ? phrase_index.size() : it->second;
    return kPalette[i % std::size(kPalette)];
  };
  // Masks first (50 % blend), then boxes and labels on top so that they stay readable.
  for (const auto& inst : result.instances) {
    if (inst.negative || inst.mask.empty()) continue;
    // Blend only where the mask is: a full-frame blend per instance costs a lot on large photos.
    cv::Rect area = cv::boundingRect(inst.mask);
    if (area.empty()) continue;
    cv::Mat roi = out(area);
    cv::Mat blended;
    cv::addWeighted(roi, 0.5, cv::Mat(area.size(), CV_8UC3, colour_of(inst.phrase)), 0.5, 0.0, blended);
    blended.copyTo(roi, inst.mask(area));
  }
  int shorter = std::min(out.cols, out.rows);
  int thickness = std::max(1, shorter / 300);
  double font_scale = std::clamp(shorter / 900.0, 0.4, 2.0);
  for (const auto& inst : result.instances) {
    if (inst.negative) continue;
    cv::Scalar colour = colour_of(inst.phrase);
    cv::Point p1(int(std::lround(inst.box.x1)), int(std::lround(inst.box.y1)));
    cv::Point p2(int(std::lround(inst.box.x2)), int(std::lround(inst.box.y2)));
    cv::rectangle(out, p1, p2, colour, thickness, cv::LINE_AA);
    char label[256];
    std::snprintf(label, sizeof label, "%s %.2f", inst.phrase.c_str(), inst.score);
    int baseline = 0;
    cv::Size text = cv::getTextSize(label, cv::FONT_HERSHEY_SIMPLEX, font_scale, thickness, &baseline);
    int top = p1.y - text.height - baseline - 2 >= 0 ? p1.y - text.height - baseline - 2 : p1.y;
    cv::Rect bg(p1.x, top, text.width + 4, text.height + baseline + 2);
    bg &= cv::Rect(0, 0, out.cols, out.rows);
    cv::rectangle(out, bg, colour, cv::FILLED);
    cv::putText(out, label, cv::Point(bg.x + 2, bg.y + text.height + 1), cv::FONT_HERSHEY_SIMPLEX, font_scale,
                cv::Scalar(255, 255, 255), thickness, cv::LINE_AA);
  }
  return out;
}

cv::Mat cutout(const cv::Mat& bgr, const cv::Mat& mask) {
  cv::Mat bgra;
  cv::cvtColor(bgr, bgra, cv::COLOR_BGR2BGRA);
  cv::Mat channels[4];
  cv::split(bgra, channels);
  channels[3] = mask.clone();
  cv::merge(channels, 4, bgra);
  return bgra;
}

}  // namespace maskmaker
