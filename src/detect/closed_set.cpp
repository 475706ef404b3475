// A closed-set detector behind the Detector interface: phrases -> classes, optional slicing for small objects.
#include <algorithm>
#include <cmath>
#include <map>
#include <memory>

#include "detect/detector.hpp"
#include "runtime/lru_cache.hpp"
#include "runtime/work_pool.hpp"
#include "text/phrase_matcher.hpp"

namespace maskmaker {
namespace {

class ClosedSetDetector final : public Detector {
 public:
  ClosedSetDetector(std::unique_ptr<ClassDetectorModel> model, std::vector<std::string> names,
                    const ClosedSetOptions& options)
      : model_(std::move(model)), names_(std::move(names)), matcher_(names_), options_(options) {}

  DetectorOutput detect(const cv::Mat& bgr, const std::vector<std::string>& phrases, float conf,
                        const ContentKey& image_key) override {
    DetectorOutput out;
    out.colour_hints.resize(phrases.size());
    std::map<int, size_t> phrase_of_class;  // two phrases naming one class share its instances (first wins)
    for (size_t i = 0; i < phrases.size(); ++i) {
      PhraseMatch m = matcher_.match(phrases[i]);
      if (m.class_id < 0) { out.unmatched.push_back(phrases[i]); continue; }
      out.colour_hints[i] = m.colour;
      phrase_of_class.emplace(m.class_id, i);
    }
    if (phrase_of_class.empty()) return out;  // nothing to look for: skip the model

    const std::vector<ClassBox>* whole = nullptr;  // the whole image's boxes, every class
    auto keep = [&](const std::vector<ClassBox>& boxes, const cv::Rect& frame, const cv::Rect* inner_edges) {
      for (const auto& cb : boxes) {
        if (cb.score < conf) continue;  // cached boxes go down to kCacheFloor
        auto it = phrase_of_class.find(cb.class_id);
        if (it == phrase_of_class.end()) continue;
        Box b{cb.box.x1 + frame.x, cb.box.y1 + frame.y, cb.box.x2 + frame.x, cb.box.y2 + frame.y};
        if (inner_edges && cut_by_inner_edge(b, frame, bgr.size())) continue;
        if (inner_edges && options_.tile_inside > 0 && part_of_other_object(b, cb, frame, *whole, conf)) continue;
        out.candidates.push_back({b, cb.score, it->second, names_[size_t(cb.class_id)]});
      }
    };
    // The whole image first, then the crops; all run side by side, results kept in this order.
    std::vector<cv::Rect> frames{cv::Rect(0, 0, bgr.cols, bgr.rows)};
    for (const cv::Rect& tile : tiles(bgr.size())) frames.push_back(tile);
    // Every class's boxes come out of one run, whatever the phrases: keep them per image at a low floor, so the
    // same image with another prompt or threshold (>= the floor) filters the cached boxes instead of re-running.
    const bool cacheable = !image_key.empty() && conf >= kCacheFloor;
    std::shared_ptr<const FrameBoxes> found;
    if (cacheable) {
      if (auto hit = cache_.get(image_key)) found = *hit;
    }
    if (!found) {
      auto fresh = std::make_shared<FrameBoxes>(frames.size());
      const float run_conf = cacheable ? kCacheFloor : conf;
      rt::parallel_for(frames.size(), [&](size_t i) { (*fresh)[i] = model_->run(bgr(frames[i]), run_conf); });
      if (cacheable) cache_.put(image_key, fresh);
      found = std::move(fresh);
    }
    whole = &(*found)[0];
    for (size_t i = 0; i < frames.size() && i < found->size(); ++i) keep((*found)[i], frames[i], i == 0 ? nullptr : &frames[i]);
    return out;
  }

  std::vector<std::string> labels() const override { return names_; }
  uint64_t detection_cache_hits() const override { return cache_.hits(); }
  uint64_t detection_cache_misses() const override { return cache_.misses(); }
  std::string name() const override { return model_->name(); }

 private:
  std::vector<cv::Rect> tiles(cv::Size size) const {
    std::vector<cv::Rect> out;
    int grid = options_.tile_grid;
    if (grid < 2 || std::min(size.width, size.height) < options_.min_tile_side) return out;
    int tw = std::min(size.width, int(std::lround(size.width * options_.tile_overlap / grid)));
    int th = std::min(size.height, int(std::lround(size.height * options_.tile_overlap / grid)));
    for (int gy = 0; gy < grid; ++gy) {
      for (int gx = 0; gx < grid; ++gx) {
        int x = grid == 1 ? 0 : int(std::lround(double(size.width - tw) * gx / (grid - 1)));
        int y = grid == 1 ? 0 : int(std::lround(double(size.height - th) * gy / (grid - 1)));
        out.emplace_back(x, y, tw, th);
      }
    }
    return out;
  }

  // Whether crop box `b` (image coordinates; `cb` as the model gave it) is probably part of a larger object
  // that the whole image names otherwise: see ClosedSetOptions::tile_inside.
  bool part_of_other_object(const Box& b, const ClassBox& cb, const cv::Rect& frame, const std::vector<ClassBox>& whole,
                            float conf) const {
    const float fx1 = float(frame.x), fy1 = float(frame.y);
    const float fx2 = float(frame.x + frame.width), fy2 = float(frame.y + frame.height);
    auto overlap = [](float a1, float a2, float b1, float b2) { return std::max(0.f, std::min(a2, b2) - std::max(a1, b1)); };
    const float area = std::max(1e-3f, b.width() * b.height());
    for (const auto& w : whole) {
      if (w.class_id == cb.class_id || w.score < conf || w.score < cb.score) continue;
      const float inside = overlap(b.x1, b.x2, w.box.x1, w.box.x2) * overlap(b.y1, b.y2, w.box.y1, w.box.y2);
      if (inside < options_.tile_inside * area) continue;
      const float w_area = w.box.width() * w.box.height();
      if (area < options_.tile_inside_area * w_area) continue;
      const float w_in_crop = overlap(w.box.x1, w.box.x2, fx1, fx2) * overlap(w.box.y1, w.box.y2, fy1, fy2);
      if (w_in_crop >= kWholeInCrop * w_area) continue;  // the crop saw all of it: its call stands
      return true;
    }
    return false;
  }
  static constexpr float kWholeInCrop = 0.9f;

  // A box touching a crop edge that is not an image edge is probably a cut-off part of a larger object.
  static bool cut_by_inner_edge(const Box& b, const cv::Rect& tile, cv::Size image) {
    const float margin = 2.f;
    if (tile.x > 0 && b.x1 <= tile.x + margin) return true;
    if (tile.y > 0 && b.y1 <= tile.y + margin) return true;
    if (tile.x + tile.width < image.width && b.x2 >= tile.x + tile.width - margin) return true;
    if (tile.y + tile.height < image.height && b.y2 >= tile.y + tile.height - margin) return true;
    return false;
  }

  using FrameBoxes = std::vector<std::vector<ClassBox>>;  // per frame: whole image, then each crop
  static constexpr float kCacheFloor = 0.1f;
  static constexpr size_t kCacheEntries = 64;  // a few hundred boxes each: kilobytes

  std::unique_ptr<ClassDetectorModel> model_;
  LruCache<ContentKey, std::shared_ptr<const FrameBoxes>, ContentKeyHash> cache_{kCacheEntries};
  std::vector<std::string> names_;
  PhraseMatcher matcher_;
  ClosedSetOptions options_;
};

}  // namespace

std::unique_ptr<Detector> make_closed_set_detector(std::unique_ptr<ClassDetectorModel> model,
                                                   std::vector<std::string> class_names,
                                                   const ClosedSetOptions& options) {
  return std::make_unique<ClosedSetDetector>(std::move(model), std::move(class_names), options);
}

}  // namespace maskmaker
