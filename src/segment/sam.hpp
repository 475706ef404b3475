// SAM-family box-prompted segmenter: one image encoding, one decoder call per box.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "maskmaker/maskmaker.hpp"
#include "runtime/ort_runtime.hpp"

namespace maskmaker {

struct ImageEmbedding {
  std::vector<float> data;  // [1, C, h, w]
  std::vector<int64_t> shape;
  cv::Size original;        // image size the embedding was made from
  float scale = 1.f;        // original -> encoder frame (longest side = encoder input side)
};

class SamSegmenter {
 public:
  SamSegmenter(const std::string& encoder_path, const std::string& decoder_path, const rt::SessionConfig& config);

  std::shared_ptr<const ImageEmbedding> encode(const cv::Mat& bgr);
  // The object's mask inside `box` (original pixels): CV_8UC1 0/255 of the original size.
  // `predicted_iou` receives the decoder's own quality estimate. Boxes run one at a time, each with every
  // core: on this decoder that beats several single-threaded calls side by side (docs/performance.md).
  cv::Mat segment_box(const ImageEmbedding& embedding, const Box& box, float* predicted_iou = nullptr);
  // The same with points added to the box: `positive[i]` says whether points[i] (original pixels) is in the
  // object (SAM label 1) or out of it (label 0).
  cv::Mat segment_box(const ImageEmbedding& embedding, const Box& box, const std::vector<cv::Point2f>& points,
                      const std::vector<bool>& positive, float* predicted_iou = nullptr);

  int input_side() const { return side_; }
  // Masks are computed within the box grown by this share of its longer side (SAM masks rarely leave their box).
  void set_roi_margin(float share) { roi_margin_ = share; }
  // A decoder with a low_res_window input (scripts/make_int8_models.py) upscales only the box's region; false
  // asks it for the whole frame (tests compare the two).
  void set_use_window(bool use) { use_window_ = use; }
  bool has_window() const { return has_window_; }

 private:
  std::unique_ptr<Ort::Session> encoder_, decoder_;
  std::string enc_in_, enc_out_;
  int side_ = 1024;
  bool has_low_res_ = false;
  bool has_window_ = false, use_window_ = true;
  float roi_margin_ = 0.1f;
  std::vector<std::string> dec_inputs_;
};

}  // namespace maskmaker
