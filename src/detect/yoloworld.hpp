// YOLO-World v2 (wkentaro/yolo-world-onnx export contract) as a Detector: any phrase, via CLIP text embeddings.
//   `images` f32 [1,3,S,S] RGB/255, centred letterbox padded 114, + `text_features` f32 [1,N,D] (the phrases'
//   L2-normalised embeddings plus one blank " " class) -> `scores` [1,A,N] (sigmoided), `boxes` [1,A,4] xyxy in
//   the S x S frame. When the export fixes N, the classes are padded with blank embeddings (and phrases beyond
//   N - 1 run in further passes); padding columns are ignored.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "detect/detector.hpp"
#include "image/geometry.hpp"
#include "text/text_encoder.hpp"

namespace maskmaker {

struct YoloWorldOptions {
  std::string blank_phrase = " ";          // the extra class the export expects beside the phrases
  size_t max_candidates_per_phrase = 3000;  // best-scoring kept when a very low threshold lets more through
};

class YoloWorldDetector final : public Detector {
 public:
  YoloWorldDetector(const std::string& model_path, std::shared_ptr<TextEmbedder> text,
                    const rt::SessionConfig& config, YoloWorldOptions options = {});

  DetectorOutput detect(const cv::Mat& bgr, const std::vector<std::string>& phrases, float conf_thresh,
                        const ContentKey& image_key = {}) override;
  std::string name() const override { return "yolo-world"; }
  uint64_t text_cache_hits() const override { return text_->cache_hits(); }
  uint64_t text_cache_misses() const override { return text_->cache_misses(); }

  // The detection itself, on given class embeddings (one per phrase; the blank class is added here).
  std::vector<Candidate> detect_embeddings(const cv::Mat& bgr, const std::vector<Embedding>& classes,
                                           float conf_thresh);

  // The image input: centred letterbox to `size` padded with 114, RGB, / 255, planar CHW into `blob`.
  static LetterboxInfo prepare_image(const cv::Mat& bgr, cv::Size size, std::vector<float>& blob);

  TextEmbedder& text_encoder() { return *text_; }
  cv::Size input_size() const { return size_; }
  int64_t fixed_classes() const { return fixed_classes_; }  // -1 when the export takes any N

 private:
  std::string path_;
  std::shared_ptr<TextEmbedder> text_;
  std::unique_ptr<Ort::Session> session_;
  YoloWorldOptions options_;
  std::string image_name_, text_name_, scores_name_, boxes_name_;
  cv::Size size_{640, 640};
  int64_t fixed_classes_ = -1;
  size_t dim_ = 512;
};

// The detector of an open-vocabulary pack: YOLO-World + CLIP text encoder (+ its BPE vocabulary).
std::unique_ptr<YoloWorldDetector> make_yoloworld_detector(const std::string& model_path,
                                                           const std::string& text_model_path,
                                                           const std::string& vocab_path,
                                                           const rt::SessionConfig& config,
                                                           size_t text_cache_entries = 1024);

}  // namespace maskmaker
