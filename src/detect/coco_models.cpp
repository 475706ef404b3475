// YOLOX-Nano and PP-PicoDet-S: each model's pre- and post-processing beside it
// (see ../shared/models/README.md for the contracts).
#include <algorithm>
#include <cmath>

#include <opencv2/imgproc.hpp>

#include "detect/detector.hpp"
#include "image/geometry.hpp"

namespace maskmaker {
namespace {

cv::Size static_input_size(const rt::TensorSpec& spec, cv::Size fallback) {
  if (spec.shape.size() == 4 && spec.shape[2] > 0 && spec.shape[3] > 0)
    return cv::Size(int(spec.shape[3]), int(spec.shape[2]));
  return fallback;
}

class Yolox final : public ClassDetectorModel {
 public:
  Yolox(const std::string& path, const rt::SessionConfig& config) : session_(rt::open_session(path, config)) {
    auto in = rt::input_specs(*session_);
    auto out = rt::output_specs(*session_);
    if (in.size() != 1 || out.size() != 1)
      throw Error(ErrorCode::ModelError, "YOLOX model " + path + ": expected one input and one output");
    input_name_ = in[0].name;
    output_name_ = out[0].name;
    size_ = static_input_size(in[0], {416, 416});
  }

  std::vector<ClassBox> run(const cv::Mat& bgr, float conf) override {
    cv::Mat boxed;
    LetterboxInfo lb = letterbox(bgr, size_, /*centred=*/false, 114, boxed);
    std::vector<float> blob(size_t(3) * size_.area());
    pack_chw(boxed, /*to_rgb=*/false, 1.f, {0, 0, 0}, {1, 1, 1}, blob.data());
    std::array<int64_t, 4> shape{1, 3, size_.height, size_.width};
    Ort::Value input = Ort::Value::CreateTensor<float>(rt::cpu_memory(), blob.data(), blob.size(), shape.data(), 4);
    const char* in_names[] = {input_name_.c_str()};
    const char* out_names[] = {output_name_.c_str()};
    auto outputs = session_->Run(Ort::RunOptions{nullptr}, in_names, &input, 1, out_names, 1);
    auto oshape = outputs[0].GetTensorTypeAndShapeInfo().GetShape();
    const float* o = outputs[0].GetTensorData<float>();
    const int64_t rows = oshape[1], width = oshape[2];
    const int classes = int(width - 5);
    std::vector<ClassBox> found;
    int64_t row = 0;
    for (int stride : {8, 16, 32}) {
      int gw = size_.width / stride, gh = size_.height / stride;
      for (int gy = 0; gy < gh; ++gy) {
        for (int gx = 0; gx < gw; ++gx, ++row) {
          if (row >= rows) break;
          const float* r = o + row * width;
          float objectness = r[4];
          if (objectness < conf) continue;  // score = obj * cls <= obj
          float cx = (r[0] + gx) * stride, cy = (r[1] + gy) * stride;
          float w = std::exp(r[2]) * stride, h = std::exp(r[3]) * stride;
          Box b{cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2};
          for (int c = 0; c < classes; ++c) {
            float score = objectness * r[5 + c];
            if (score >= conf) found.push_back({unletterbox(b, lb), score, c});
          }
        }
      }
    }
    return found;
  }
  int num_classes() const override { return 80; }
  std::string name() const override { return "yolox-nano"; }

 private:
  std::unique_ptr<Ort::Session> session_;
  std::string input_name_, output_name_;
  cv::Size size_;
};

class Picodet final : public ClassDetectorModel {
 public:
  Picodet(const std::string& path, const rt::SessionConfig& config) : session_(rt::open_session(path, config)) {
    auto in = rt::input_specs(*session_);
    // Old exports also list weights as inputs; the image is the 4-D float input.
    for (auto& spec : in) {
      if (spec.shape.size() == 4) { input_name_ = spec.name; size_ = static_input_size(spec, {416, 416}); break; }
    }
    if (input_name_.empty()) throw Error(ErrorCode::ModelError, "PicoDet model " + path + ": no image input");
    for (auto& spec : rt::output_specs(*session_)) output_names_.push_back(spec.name);
    if (output_names_.size() != 8)
      throw Error(ErrorCode::ModelError, "PicoDet model " + path + ": expected 4 score and 4 box outputs");
  }

  std::vector<ClassBox> run(const cv::Mat& bgr, float conf) override {
    cv::Mat resized;
    cv::resize(bgr, resized, size_, 0, 0, cv::INTER_LINEAR);  // stretched, no letterbox
    std::vector<float> blob(size_t(3) * size_.area());
    pack_chw(resized, /*to_rgb=*/true, 1.f / 255.f, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f},
             blob.data());
    std::array<int64_t, 4> shape{1, 3, size_.height, size_.width};
    Ort::Value input = Ort::Value::CreateTensor<float>(rt::cpu_memory(), blob.data(), blob.size(), shape.data(), 4);
    const char* in_names[] = {input_name_.c_str()};
    std::vector<const char*> out_names;
    for (auto& n : output_names_) out_names.push_back(n.c_str());
    auto outputs = session_->Run(Ort::RunOptions{nullptr}, in_names, &input, 1, out_names.data(), out_names.size());

    // Pair score and box outputs by their anchor count; the level's stride follows from it.
    struct Level { const float* scores = nullptr; const float* dists = nullptr; int64_t n = 0; int classes = 0; int bins = 0; };
    std::vector<Level> levels;
    auto level_for = [&](int64_t n) -> Level& {
      for (auto& l : levels) if (l.n == n) return l;
      levels.push_back(Level{nullptr, nullptr, n});
      return levels.back();
    };
    for (auto& v : outputs) {
      auto s = v.GetTensorTypeAndShapeInfo().GetShape();
      int64_t n = s[1], last = s[2];
      Level& l = level_for(n);
      if (last == 4 * 8) { l.dists = v.GetTensorData<float>(); l.bins = 8; }
      else { l.scores = v.GetTensorData<float>(); l.classes = int(last); }
    }
    std::sort(levels.begin(), levels.end(), [](const Level& a, const Level& b) { return a.n > b.n; });
    const float sx = float(bgr.cols) / size_.width, sy = float(bgr.rows) / size_.height;
    std::vector<ClassBox> found;
    int stride = 8;
    for (auto& l : levels) {
      if (!l.scores || !l.dists) throw Error(ErrorCode::ModelError, "PicoDet outputs do not pair up");
      int gw = (size_.width + stride - 1) / stride;
      for (int64_t k = 0; k < l.n; ++k) {
        const float* sc = l.scores + k * l.classes;
        float best = *std::max_element(sc, sc + l.classes);
        if (best < conf) continue;
        float cx = (float(k % gw) + 0.5f) * stride, cy = (float(k / gw) + 0.5f) * stride;
        float side[4];
        for (int e = 0; e < 4; ++e) {
          const float* bins = l.dists + k * 32 + e * 8;
          float m = *std::max_element(bins, bins + 8), sum = 0, acc = 0;
          for (int i = 0; i < 8; ++i) { float p = std::exp(bins[i] - m); sum += p; acc += p * i; }
          side[e] = acc / sum * stride;
        }
        Box b{(cx - side[0]) * sx, (cy - side[1]) * sy, (cx + side[2]) * sx, (cy + side[3]) * sy};
        b = clip_box(b, bgr.size());
        for (int c = 0; c < l.classes; ++c) {
          if (sc[c] >= conf) found.push_back({b, sc[c], c});
        }
      }
      stride *= 2;
    }
    return found;
  }
  int num_classes() const override { return 80; }
  std::string name() const override { return "picodet-s-416"; }

 private:
  std::unique_ptr<Ort::Session> session_;
  std::string input_name_;
  std::vector<std::string> output_names_;
  cv::Size size_;
};

}  // namespace

std::unique_ptr<ClassDetectorModel> make_yolox(const std::string& path, const rt::SessionConfig& config) {
  return std::make_unique<Yolox>(path, config);
}
std::unique_ptr<ClassDetectorModel> make_picodet(const std::string& path, const rt::SessionConfig& config) {
  return std::make_unique<Picodet>(path, config);
}

const std::vector<std::string>& coco80_names() {
  static const std::vector<std::string> names = {
      "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
      "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
      "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
      "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
      "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
      "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
      "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
      "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
      "teddy bear", "hair drier", "toothbrush"};
  return names;
}

}  // namespace maskmaker
