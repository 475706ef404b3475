// Slicing in the closed-set detector: which crop boxes survive beside the whole image's, on a scripted model.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "detect/detector.hpp"
#include "pipeline/model_pack.hpp"
#include "test_support.hpp"

using namespace maskmaker;

namespace {

// Answers each run from a script given the picture it sees (whole image or crop), in the picture's own
// coordinates, as the real models do.
class ScriptedModel final : public ClassDetectorModel {
 public:
  explicit ScriptedModel(std::function<std::vector<ClassBox>(const cv::Mat&)> script) : script_(std::move(script)) {}
  std::vector<ClassBox> run(const cv::Mat& bgr, float conf) override {
    std::vector<ClassBox> out;
    for (auto& b : script_(bgr)) if (b.score >= conf) out.push_back(b);
    return out;
  }
  int num_classes() const override { return 80; }
  std::string name() const override { return "scripted"; }

 private:
  std::function<std::vector<ClassBox>(const cv::Mat&)> script_;
};

constexpr int kBus = 5, kTruck = 7, kPerson = 0;

// A 400x400 photo whose top-left pixel is marked; 2x2 crops of 250x250 (overlap 1.25) at x, y in {0, 150}.
// The whole image sees a bus over the left side; the top-left crop (the only crop with the marked pixel at its
// origin) sees the bus's front as a truck, and a person standing in front of it.
bool top_left_crop(const cv::Mat& m) { return m.size() == cv::Size(250, 250) && m.at<cv::Vec3b>(0, 0)[2] == 255; }

std::unique_ptr<Detector> detector(float tile_inside, float bus_score) {
  auto model = std::make_unique<ScriptedModel>([=](const cv::Mat& m) -> std::vector<ClassBox> {
    if (m.size() == cv::Size(400, 400)) return {{Box{20, 40, 230, 380}, bus_score, kBus}};
    if (top_left_crop(m)) return {{Box{25, 50, 225, 240}, 0.6f, kTruck}, {Box{100, 100, 120, 150}, 0.5f, kPerson}};
    return {};
  });
  ClosedSetOptions o;
  o.tile_grid = 2;
  o.tile_overlap = 1.25f;
  o.tile_inside = tile_inside;
  return make_closed_set_detector(std::move(model), coco80_names(), o);
}

size_t count_label(const DetectorOutput& out, const std::string& label) {
  size_t n = 0;
  for (const auto& c : out.candidates) n += c.label == label;
  return n;
}

cv::Mat photo() {
  cv::Mat m(400, 400, CV_8UC3, cv::Scalar(90, 90, 90));
  m.at<cv::Vec3b>(0, 0) = cv::Vec3b(0, 0, 255);
  return m;
}
const std::vector<std::string> kPhrases{"truck", "person", "bus"};

}  // namespace

TEST(Slicing, CropBoxInsideAWholeImageBoxOfAnotherClassIsKeptWhenOff) {
  auto out = detector(0.f, 0.8f)->detect(photo(), kPhrases, 0.3f);
  EXPECT_EQ(count_label(out, "truck"), 1u);
  EXPECT_EQ(count_label(out, "bus"), 1u);
  EXPECT_EQ(count_label(out, "person"), 1u);
}

TEST(Slicing, CropBoxThatIsPartOfALargerObjectOfAnotherClassIsDropped) {
  auto out = detector(0.7f, 0.8f)->detect(photo(), kPhrases, 0.3f);
  EXPECT_EQ(count_label(out, "truck"), 0u);
  EXPECT_EQ(count_label(out, "bus"), 1u);
  // The person is inside the bus's box too, but small beside it: kept.
  EXPECT_EQ(count_label(out, "person"), 1u);
}

TEST(Slicing, CropBoxScoringAboveTheWholeImageBoxIsKept) {
  auto out = detector(0.7f, 0.5f)->detect(photo(), kPhrases, 0.3f);
  EXPECT_EQ(count_label(out, "truck"), 1u);
}

TEST(Slicing, CropThatSeesAllOfTheWholeImageBoxKeepsItsCall) {
  // A bus box wholly inside the top-left crop (0..250): the crop saw the whole object and called it otherwise.
  auto model = std::make_unique<ScriptedModel>([](const cv::Mat& m) -> std::vector<ClassBox> {
    if (m.size() == cv::Size(400, 400)) return {{Box{20, 20, 200, 200}, 0.8f, kBus}};
    if (top_left_crop(m)) return {{Box{25, 25, 195, 195}, 0.6f, kTruck}};
    return {};
  });
  ClosedSetOptions o;
  o.tile_grid = 2;
  o.tile_inside = 0.7f;
  auto out = make_closed_set_detector(std::move(model), coco80_names(), o)->detect(photo(), kPhrases, 0.3f);
  EXPECT_EQ(count_label(out, "truck"), 1u);
}

TEST(Slicing, PackOptionsAreShares) {
  nlohmann::json manifest = {{"detector", {{"kind", "picodet"}, {"path", shared_dir() + "/models/detector/picodet_s_416_coco_stripped.onnx"},
                                           {"tile_grid", 2}, {"tile_inside", 1.5}}}};
  rt::SessionConfig cpu{1, "cpu"};
  try {
    make_detector(manifest, "/tmp", cpu, false);
    FAIL() << "tile_inside 1.5 was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::ModelError);
    EXPECT_NE(std::string(e.what()).find("tile_inside and tile_inside_area are shares"), std::string::npos) << e.what();
  }
  manifest["detector"]["tile_inside"] = 0.7;
  manifest["detector"]["tile_inside_area"] = -0.1;
  EXPECT_THROW(make_detector(manifest, "/tmp", cpu, false), Error);
}
