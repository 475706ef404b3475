#include "pipeline/colour.hpp"

#include <functional>
#include <map>

namespace maskmaker {

float colour_fraction(const cv::Mat& hsv, const cv::Mat& mask, const std::string& colour) {
  // OpenCV 8-bit HSV: H in 0..179, S and V in 0..255.
  using Rule = std::function<bool(int, int, int)>;
  static const std::map<std::string, Rule> rules = {
      {"white", [](int, int s, int v) { return s < 60 && v > 165; }},
      {"black", [](int, int, int v) { return v < 60; }},
      {"gray", [](int, int s, int v) { return s < 45 && v >= 60 && v <= 200; }},
      {"silver", [](int, int s, int v) { return s < 45 && v >= 100; }},
      {"red", [](int h, int s, int v) { return (h < 9 || h > 165) && s > 90 && v > 50; }},
      {"orange", [](int h, int s, int v) { return h >= 9 && h < 22 && s > 110 && v > 110; }},
      {"yellow", [](int h, int s, int v) { return h >= 20 && h < 35 && s > 80 && v > 80; }},
      {"gold", [](int h, int s, int v) { return h >= 15 && h < 35 && s > 70 && v > 80; }},
      {"golden", [](int h, int s, int v) { return h >= 15 && h < 35 && s > 70 && v > 80; }},
      {"green", [](int h, int s, int v) { return h >= 35 && h < 85 && s > 50 && v > 40; }},
      {"blue", [](int h, int s, int v) { return h >= 85 && h < 130 && s > 50 && v > 40; }},
      {"purple", [](int h, int s, int v) { return h >= 130 && h < 160 && s > 50 && v > 40; }},
      {"pink", [](int h, int s, int v) { return (h >= 150 || h < 8) && s > 30 && s < 170 && v > 140; }},
      {"brown", [](int h, int s, int v) { return h >= 5 && h < 25 && s > 60 && v > 30 && v < 170; }},
      {"beige", [](int h, int s, int v) { return h >= 10 && h < 30 && s > 25 && s < 110 && v > 150; }},
  };
  auto it = rules.find(colour);
  if (it == rules.end()) return -1.f;
  int64_t total = 0, hits = 0;
  for (int y = 0; y < hsv.rows; ++y) {
    const cv::Vec3b* px = hsv.ptr<cv::Vec3b>(y);
    const uint8_t* m = mask.ptr<uint8_t>(y);
    for (int x = 0; x < hsv.cols; ++x) {
      if (!m[x]) continue;
      ++total;
      hits += it->second(px[x][0], px[x][1], px[x][2]);
    }
  }
  return total ? float(hits) / float(total) : 0.f;
}

}  // namespace maskmaker
