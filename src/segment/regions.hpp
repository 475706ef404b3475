// Region ("stuff") segmenter: a semantic segmenter that labels every pixel with one of a few region classes
// (sky, wall, floor, road, grass...), for phrases that name a region rather than an object. One run per image
// gives every class; masks per class are made from the cached class map.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "runtime/ort_runtime.hpp"
#include "segment/sam.hpp"

namespace maskmaker {

// The class maps of one photo at the model's resolution: the photo as is and mirrored (mirrored back), so
// that a region both runs agree on can be told from one that only one run sees.
struct RegionMap {
  cv::Mat ids, ids_flipped;  // CV_8UC1, model side x model side, one class id per pixel
  cv::Size original;         // the photo's size
  size_t bytes() const { return ids.total() + ids_flipped.total() + 64; }
};

struct RegionMask {
  cv::Mat mask;            // CV_8UC1 0/255 at the photo's size; empty (all zero) when the region is absent
  float agreement = 0.f;   // IoU of the region in the two runs (photo and mirrored photo): the region's score
  float area_share = 0.f;  // share of the photo the mask covers
};

struct RegionOptions {
  // A region is kept only when the two runs agree on it (IoU >= min_agreement) and it covers at least
  // min_area of the photo: a plain argmax always labels something, and the two rules drop what it guesses.
  float min_agreement = 0.3f;
  float min_area = 0.003f;
  // Edge refinement at the photo's resolution: the two runs' mean, upsampled bilinearly, then a guided filter
  // led by the photo, radius = this many map pixels (0 = off), regulariser eps (grey levels 0-1, squared).
  // Dev set (docs/accuracy.md): bilinear only 0.353; radius 2, eps 0.001: 0.359; 4, 0.01: 0.360; 8, 0.01: 0.362.
  float guided_radius = 8.f;
  float guided_eps = 0.01f;
  float min_component = 0.001f;  // drop connected parts smaller than this share of the photo (specks)
  // SAM refinement (refine()): each of the sam_max_components largest parts covering >= sam_min_component of
  // the photo prompts the SAM decoder with its box and its innermost point; where SAM's mask and the part agree
  // (IoU >= sam_min_iou) the part becomes SAM's mask within the part grown by sam_grow of the photo's long side
  // (SAM draws the edges; the region's extent stays the class map's). Dev set (docs/accuracy.md): 0.386 -> 0.400.
  bool sam_refine = true;
  float sam_min_component = 0.01f;
  int sam_max_components = 4;
  float sam_min_iou = 0.5f;
  float sam_grow = 0.02f;
};

class RegionSegmenter {
 public:
  RegionSegmenter(const std::string& path, const rt::SessionConfig& config, RegionOptions options = {});

  // Runs the model on the photo (stretched to the model's square input) and on its mirror image.
  std::shared_ptr<const RegionMap> run(const cv::Mat& bgr);
  // The mask of the union of `classes` at the photo's size (bgr is the photo the map was made from: it guides
  // the edges).
  RegionMask mask(const RegionMap& map, const std::vector<int>& classes, const cv::Mat& bgr) const;

  // The mask refined by the SAM decoder (see RegionOptions::sam_refine); `embedding` is the photo's.
  cv::Mat refine(const cv::Mat& mask, SamSegmenter& sam, const ImageEmbedding& embedding) const;

  const RegionOptions& options() const { return options_; }
  void set_options(const RegionOptions& o) { options_ = o; }
  int side() const { return side_; }

  // Class names in the model's order (ADE20K top 31; 0 = "other").
  static const std::vector<std::string>& class_names();
  // Classes a region class also takes in when asked for: ADE20K splits what people (and COCO) call one thing
  // ("building" and "house"; "sea" and "water"; "tree" and the bushes beside it).
  // Some depend on the photo (`map`): "building" takes in the wall class on a photo with no sign of an interior.
  static std::vector<int> expand(int class_id, const RegionMap& map);
  // Share of the two maps' pixels that floor, ceiling, bed, cabinet and rug must reach for a photo to count
  // as an interior.
  static constexpr double kIndoorShare = 0.05;

 private:
  cv::Mat infer(const cv::Mat& rgb_square);
  std::unique_ptr<Ort::Session> session_;
  std::string in_name_, out_name_;
  int side_ = 512;
  RegionOptions options_;
};

}  // namespace maskmaker
