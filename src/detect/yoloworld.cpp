#include "detect/yoloworld.hpp"

#include <algorithm>
#include <array>
#include <numeric>

#include "image/geometry.hpp"

namespace maskmaker {
namespace {

const rt::TensorSpec* find_spec(const std::vector<rt::TensorSpec>& specs, const std::string& name) {
  for (const auto& s : specs)
    if (s.name == name) return &s;
  return nullptr;
}

}  // namespace

YoloWorldDetector::YoloWorldDetector(const std::string& model_path, std::shared_ptr<TextEmbedder> text,
                                     const rt::SessionConfig& config, YoloWorldOptions options)
    : path_(model_path), text_(std::move(text)), session_(rt::open_session(model_path, config)),
      options_(std::move(options)) {
  auto fail = [&](const std::string& why) { throw Error(ErrorCode::ModelError, "YOLO-World model " + path_ + ": " + why); };
  if (!text_) fail("no text encoder");
  auto in = rt::input_specs(*session_);
  auto out = rt::output_specs(*session_);
  // Inputs: the 4-D image and the 3-D text features (by name when the export uses the usual ones).
  const rt::TensorSpec* image = find_spec(in, "images");
  const rt::TensorSpec* feats = find_spec(in, "text_features");
  for (const auto& s : in) {
    if (!image && s.shape.size() == 4) image = &s;
    if (!feats && s.shape.size() == 3) feats = &s;
  }
  if (in.size() != 2 || !image || !feats || image == feats)
    fail("expected inputs 'images' [1,3,H,W] and 'text_features' [1,N,D]");
  if (image->type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || feats->type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
    fail("inputs must be float32");
  if (image->shape[1] > 0 && image->shape[1] != 3) fail("'" + image->name + "' must have 3 channels");
  image_name_ = image->name;
  text_name_ = feats->name;
  if (image->shape[2] > 0 && image->shape[3] > 0) size_ = cv::Size(int(image->shape[3]), int(image->shape[2]));
  fixed_classes_ = feats->shape[1] > 0 ? feats->shape[1] : -1;
  if (fixed_classes_ == 1) fail("a fixed class count of 1 leaves no room beside the blank class");
  dim_ = feats->shape[2] > 0 ? size_t(feats->shape[2]) : text_->dim();
  if (text_->dim() != dim_)
    fail("text features are " + std::to_string(dim_) + " wide but the text encoder gives " +
         std::to_string(text_->dim()));
  // Outputs: scores [1,A,N] and boxes [1,A,4].
  const rt::TensorSpec* scores = find_spec(out, "scores");
  const rt::TensorSpec* boxes = find_spec(out, "boxes");
  for (const auto& s : out) {
    if (s.shape.size() != 3) continue;
    if (!boxes && s.shape[2] == 4 && &s != scores) boxes = &s;
  }
  for (const auto& s : out)
    if (!scores && s.shape.size() == 3 && &s != boxes) scores = &s;
  if (!scores || !boxes || scores == boxes) fail("expected outputs 'scores' [1,A,N] and 'boxes' [1,A,4]");
  scores_name_ = scores->name;
  boxes_name_ = boxes->name;
}

LetterboxInfo YoloWorldDetector::prepare_image(const cv::Mat& bgr, cv::Size size, std::vector<float>& blob) {
  cv::Mat boxed;
  LetterboxInfo lb = letterbox(bgr, size, /*centred=*/true, 114, boxed);
  blob.resize(size_t(3) * size_t(size.area()));
  pack_chw(boxed, /*to_rgb=*/true, 1.f / 255.f, {0, 0, 0}, {1, 1, 1}, blob.data());
  return lb;
}

std::vector<Candidate> YoloWorldDetector::detect_embeddings(const cv::Mat& bgr, const std::vector<Embedding>& classes,
                                                            float conf) {
  std::vector<Candidate> found;
  if (classes.empty()) return found;
  for (const auto& e : classes)
    if (e.size() != dim_) throw Error(ErrorCode::Internal, "YOLO-World: a class embedding has the wrong width");

  std::vector<float> blob;
  LetterboxInfo lb = prepare_image(bgr, size_, blob);
  std::array<int64_t, 4> image_shape{1, 3, size_.height, size_.width};
  const Embedding blank = text_->embed({options_.blank_phrase}).at(0);

  // Phrases per pass: all of them (dynamic N) or N - 1 (fixed N, one slot for the blank class).
  const size_t per_pass = fixed_classes_ > 0 ? size_t(fixed_classes_ - 1) : classes.size();
  for (size_t begin = 0; begin < classes.size(); begin += per_pass) {
    const size_t n = std::min(per_pass, classes.size() - begin);
    const size_t columns = fixed_classes_ > 0 ? size_t(fixed_classes_) : n + 1;
    std::vector<float> feats;
    feats.reserve(columns * dim_);
    for (size_t c = 0; c < columns; ++c) {
      const Embedding& e = c < n ? classes[begin + c] : blank;
      feats.insert(feats.end(), e.begin(), e.end());
    }
    std::array<int64_t, 3> feats_shape{1, int64_t(columns), int64_t(dim_)};
    std::array<Ort::Value, 2> inputs{
        Ort::Value::CreateTensor<float>(rt::cpu_memory(), blob.data(), blob.size(), image_shape.data(), 4),
        Ort::Value::CreateTensor<float>(rt::cpu_memory(), feats.data(), feats.size(), feats_shape.data(), 3)};
    const char* in_names[] = {image_name_.c_str(), text_name_.c_str()};
    const char* out_names[] = {scores_name_.c_str(), boxes_name_.c_str()};
    std::vector<Ort::Value> outputs;
    try {
      outputs = session_->Run(Ort::RunOptions{nullptr}, in_names, inputs.data(), 2, out_names, 2);
    } catch (const Ort::Exception& e) {
      throw Error(ErrorCode::ModelError, "YOLO-World model " + path_ + " failed: " + e.what());
    }
    auto sshape = outputs[0].GetTensorTypeAndShapeInfo().GetShape();
    auto bshape = outputs[1].GetTensorTypeAndShapeInfo().GetShape();
    if (sshape.size() != 3 || bshape.size() != 3 || sshape[0] != 1 || bshape[0] != 1 || bshape[2] != 4 ||
        sshape[1] != bshape[1] || sshape[2] != int64_t(columns))
      throw Error(ErrorCode::ModelError, "YOLO-World model " + path_ + ": outputs are not [1,A," +
                                             std::to_string(columns) + "] and [1,A,4]");
    const float* s = outputs[0].GetTensorData<float>();
    const float* b = outputs[1].GetTensorData<float>();
    const int64_t anchors = sshape[1];
    std::vector<std::vector<std::pair<float, int64_t>>> hits(n);  // per phrase: (score, anchor)
    for (int64_t a = 0; a < anchors; ++a) {
      const float* row = s + a * int64_t(columns);
      for (size_t c = 0; c < n; ++c)  // the blank and padding columns are ignored
        if (row[c] >= conf) hits[c].emplace_back(row[c], a);
    }
    for (size_t c = 0; c < n; ++c) {
      auto& h = hits[c];
      if (h.size() > options_.max_candidates_per_phrase) {
        std::partial_sort(h.begin(), h.begin() + std::ptrdiff_t(options_.max_candidates_per_phrase), h.end(),
                          [](const auto& x, const auto& y) { return x.first > y.first; });
        h.resize(options_.max_candidates_per_phrase);
      }
      for (const auto& [score, a] : h) {
        const float* r = b + a * 4;
        Box box = unletterbox(Box{r[0], r[1], r[2], r[3]}, lb);
        if (box.area() <= 0.f) continue;  // entirely in the padding
        found.push_back(Candidate{box, score, begin + c, {}});
      }
    }
  }
  return found;
}

DetectorOutput YoloWorldDetector::detect(const cv::Mat& bgr, const std::vector<std::string>& phrases, float conf,
                                         const ContentKey& /*image_key: the output depends on the phrases*/) {
  DetectorOutput out;
  out.colour_hints.assign(phrases.size(), std::string());  // colours are part of what CLIP reads
  if (phrases.empty()) return out;
  std::vector<Embedding> classes = text_->embed(phrases);
  out.candidates = detect_embeddings(bgr, classes, conf);
  for (auto& c : out.candidates) c.label = phrases[c.phrase];
  return out;
}

std::unique_ptr<YoloWorldDetector> make_yoloworld_detector(const std::string& model_path,
                                                           const std::string& text_model_path,
                                                           const std::string& vocab_path,
                                                           const rt::SessionConfig& config,
                                                           size_t text_cache_entries) {
  auto tokenizer = std::make_shared<const ClipTokenizer>(vocab_path);
  auto text = std::make_shared<ClipTextEncoder>(text_model_path, tokenizer, config, text_cache_entries);
  return std::make_unique<YoloWorldDetector>(model_path, std::move(text), config);
}

}  // namespace maskmaker
