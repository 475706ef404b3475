#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <unistd.h>

#include <opencv2/imgproc.hpp>
#include <spdlog/spdlog.h>

#include "image/content_key.hpp"
#include "image/geometry.hpp"
#include "maskmaker/maskmaker.hpp"
#include "pipeline/colour.hpp"
#include "runtime/lru_cache.hpp"
#include "pipeline/model_pack.hpp"
#include "text/phrase_matcher.hpp"

namespace fs = std::filesystem;

namespace maskmaker {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

std::string lower_trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  std::string out(s.substr(b, e - b));
  return out;
}

// An instance mask is a function of the pixels and the box: cached, so that re-running the same image and
// prompt with other grow/feather/invert settings (a slider in a UI) skips the decoder.
struct MaskKey {
  ContentKey image;
  std::array<float, 4> box{};
  bool operator==(const MaskKey&) const = default;
};
struct MaskKeyHash {
  size_t operator()(const MaskKey& k) const {
    size_t h = ContentKeyHash{}(k.image);
    for (float v : k.box) h = h * 1000003u ^ std::hash<float>{}(v);
    return h;
  }
};
struct CachedMask {
  cv::Rect region;  // where the mask's pixels are; zero elsewhere
  cv::Mat pixels;   // CV_8UC1 of region's size
};

// Drops connected components far smaller than the instance's main part (SAM leaves isolated specks that a
// grown mask would turn into dots), within the box region only, where the mask lives.
cv::Mat remove_specks(cv::Mat mask, const Box& box) {
  cv::Rect roi = cv::Rect(cv::Point(int(box.x1), int(box.y1)), cv::Point(int(std::ceil(box.x2)), int(std::ceil(box.y2))));
  const int pad = 8 + int(0.1f * std::max(box.width(), box.height()));
  roi = cv::Rect(roi.x - pad, roi.y - pad, roi.width + 2 * pad, roi.height + 2 * pad) & cv::Rect(0, 0, mask.cols, mask.rows);
  if (roi.empty()) return mask;
  cv::Mat region = mask(roi);
  cv::Mat labels, stats, centroids;
  int n = cv::connectedComponentsWithStats(region, labels, stats, centroids, 8, CV_32S);
  if (n <= 2) return mask;
  int largest = 0;
  for (int i = 1; i < n; ++i) largest = std::max(largest, stats.at<int>(i, cv::CC_STAT_AREA));
  const int min_area = std::max(16, largest / 50);
  std::vector<uint8_t> keep(size_t(n), 0);
  for (int i = 1; i < n; ++i) keep[size_t(i)] = stats.at<int>(i, cv::CC_STAT_AREA) >= min_area;
  for (int y = 0; y < region.rows; ++y) {
    uint8_t* m = region.ptr<uint8_t>(y);
    const int* l = labels.ptr<int>(y);
    for (int x = 0; x < region.cols; ++x) if (m[x] && !keep[size_t(l[x])]) m[x] = 0;
  }
  return mask;
}

// Region classes a phrase may name. The ones that are also COCO objects (person, car, chair, table, bed, sofa,
// armchair) are left out: the detector + segmenter path answers them with instances, and on the dev set it
// does better (docs/accuracy.md, "Regions").
std::vector<std::string> region_vocabulary() {
  std::vector<std::string> names = RegionSegmenter::class_names();
  for (auto& n : names) {
    if (n == "other" || n == "person" || n == "car" || n == "chair" || n == "table" || n == "bed" || n == "sofa" ||
        n == "armchair")
      n.clear();
  }
  return names;
}

class PipelineImpl final : public Pipeline {
 public:
  PipelineImpl(ModelPack pack, const PipelineOptions& options)
      : pack_(std::move(pack)),
        embeddings_(options.image_cache_entries),
        masks_(options.image_cache_entries == 0 ? 0 : kMaskCacheBytes),
        region_maps_(options.image_cache_entries == 0 ? 0 : options.image_cache_entries * kRegionMapBytes) {
    if (pack_.regions) {
      region_matcher_ = std::make_unique<PhraseMatcher>(region_vocabulary(), Vocabulary::Regions);
      if (auto labels = pack_.detector->labels(); !labels.empty())
        object_matcher_ = std::make_unique<PhraseMatcher>(std::move(labels));
    }
  }

  MaskResult run(const cv::Mat& bgr, std::string_view prompt, const MaskParams& params,
                 std::string_view cache_scope) override {
    validate(params);
    if (bgr.empty() || bgr.type() != CV_8UC3) throw Error(ErrorCode::BadImage, "image is empty or not 8-bit colour", "image");
    MaskResult result;
    result.width = bgr.cols;
    result.height = bgr.rows;
    result.phrases = split_prompt(prompt);
    if (result.phrases.empty()) throw Error(ErrorCode::InvalidArgument, "prompt is empty: give one or more phrases separated by commas", "prompt");
    if (result.phrases.size() > kMaxPhrases)
      throw Error(ErrorCode::InvalidArgument, "prompt has " + std::to_string(result.phrases.size()) +
                                                  " phrases; at most " + std::to_string(kMaxPhrases) + " are allowed", "prompt");
    std::vector<std::string> queries = result.phrases;
    const size_t n_positive = queries.size();
    for (const auto& neg : params.negative_phrases) {
      std::string n = lower_trim(neg);
      if (!n.empty()) queries.push_back(n);
    }

    // Phrases naming a region (sky, wall...) go to the region segmenter, the others to the detector.
    std::vector<int> region_class(queries.size(), -1);
    std::vector<std::string> object_queries;
    std::vector<size_t> object_index;  // object_queries[i] is queries[object_index[i]]
    for (size_t q = 0; q < queries.size(); ++q) {
      region_class[q] = region_for(queries[q]);
      if (region_class[q] >= 0) continue;
      object_queries.push_back(queries[q]);
      object_index.push_back(q);
    }

    // Detect, then NMS per phrase.
    auto t = Clock::now();
    // One content key (SHA-256 of the pixels and the caller's scope) keys every per-image cache: the detector's
    // boxes, the segmenter's embedding, the region map and the instance masks.
    const ContentKey key = content_key(bgr, cache_scope);
    DetectorOutput det;
    if (!object_queries.empty()) det = pack_.detector->detect(bgr, object_queries, params.confidence_thresh, key);
    for (auto& c : det.candidates) c.phrase = object_index[c.phrase];
    {
      std::vector<std::string> hints(queries.size());
      for (size_t i = 0; i < det.colour_hints.size() && i < object_index.size(); ++i)
        hints[object_index[i]] = std::move(det.colour_hints[i]);
      det.colour_hints = std::move(hints);
    }
    for (const auto& u : det.unmatched) {
      if (std::find(result.phrases.begin(), result.phrases.end(), u) != result.phrases.end())
        result.unmatched.push_back(u);
    }
    std::vector<Candidate> kept;
    for (size_t p = 0; p < queries.size(); ++p) {
      std::vector<Box> boxes;
      std::vector<float> scores;
      std::vector<const Candidate*> refs;
      for (const auto& c : det.candidates) {
        if (c.phrase != p) continue;
        boxes.push_back(c.box);
        scores.push_back(c.score);
        refs.push_back(&c);
      }
      for (size_t i : nms(boxes, scores, params.iou_thresh)) kept.push_back(*refs[i]);
    }
    std::stable_sort(kept.begin(), kept.end(), [](const Candidate& a, const Candidate& b) { return a.score > b.score; });
    {
      size_t positives = 0;
      std::vector<Candidate> capped;
      for (auto& c : kept) {
        bool positive = c.phrase < n_positive;
        if (positive && positives >= size_t(params.max_detections)) continue;
        positives += positive;
        capped.push_back(std::move(c));
      }
      kept.swap(capped);
    }
    result.times.detect_ms = ms_since(t);

    cv::Mat union_mask = cv::Mat::zeros(bgr.size(), CV_8UC1);
    std::vector<Instance> region_positives, region_negatives;
    // The segmenter's embedding of this photo, once made (region refinement and object masks share it).
    std::shared_ptr<const ImageEmbedding> embedding;
    if (std::any_of(region_class.begin(), region_class.end(), [](int c) { return c >= 0; })) {
      t = Clock::now();
      std::shared_ptr<const RegionMap> map;
      if (auto cached = region_maps_.get(key)) {
        map = *cached;
        result.image_cache_hit = true;
      } else {
        map = pack_.regions->run(bgr);
        region_maps_.put(key, map, map->bytes());
      }
      result.times.encode_ms += ms_since(t);
      t = Clock::now();
      double encode_in_regions = 0;
      // max_detections bounds every positive instance, objects (capped above) and regions alike.
      size_t positives = size_t(std::count_if(kept.begin(), kept.end(), [&](const Candidate& c) { return c.phrase < n_positive; }));
      for (size_t q = 0; q < queries.size(); ++q) {
        if (region_class[q] < 0) continue;
        if (q < n_positive && positives >= size_t(params.max_detections)) continue;
        RegionMask rm = pack_.regions->mask(*map, RegionSegmenter::expand(region_class[q], *map), bgr);
        if (pack_.regions->options().sam_refine && cv::countNonZero(rm.mask) > 0) {
          // SAM draws the region's edges (RegionOptions::sam_refine), from the photo's cached embedding.
          if (!embedding) {
            if (auto cached = embeddings_.get(key)) {
              embedding = *cached;
            } else {
              const auto te = Clock::now();
              embedding = pack_.segmenter->encode(bgr);
              embeddings_.put(key, embedding);
              encode_in_regions += ms_since(te);
            }
          }
          rm.mask = pack_.regions->refine(rm.mask, *pack_.segmenter, *embedding);
        }
        Instance inst;
        inst.phrase = q < n_positive ? result.phrases[q] : queries[q];
        inst.label = RegionSegmenter::class_names()[size_t(region_class[q])];
        inst.score = rm.agreement;
        inst.mask = std::move(rm.mask);
        inst.area = cv::countNonZero(inst.mask);
        if (inst.area == 0) continue;  // the region is not in the photo
        cv::Rect r = cv::boundingRect(inst.mask);
        inst.box = Box{float(r.x), float(r.y), float(r.x + r.width), float(r.y + r.height)};
        inst.negative = q >= n_positive;
        positives += !inst.negative;
        (inst.negative ? region_negatives : region_positives).push_back(std::move(inst));
      }
      result.times.encode_ms += encode_in_regions;
      result.times.segment_ms += ms_since(t) - encode_in_regions;
    }
    if (!kept.empty()) {
      t = Clock::now();
      // Masks already made for these boxes on these pixels; the embedding is needed only for the others.
      std::vector<std::shared_ptr<const CachedMask>> known(kept.size());
      bool all_known = true;
      for (size_t i = 0; i < kept.size(); ++i) {
        if (auto hit = masks_.get(mask_key(key, kept[i].box))) known[i] = *hit;
        all_known &= known[i] != nullptr;
      }
      if (all_known) {
        result.image_cache_hit = true;
      } else if (embedding) {
        // made above for the region phrases
      } else if (auto cached = embeddings_.get(key)) {
        embedding = *cached;
        result.image_cache_hit = true;
      } else {
        embedding = pack_.segmenter->encode(bgr);
        embeddings_.put(key, embedding);
      }
      result.times.encode_ms += ms_since(t);

      t = Clock::now();
      std::vector<Instance> positives, negatives;
      for (size_t i = 0; i < kept.size(); ++i) {
        const Candidate& c = kept[i];
        Instance inst;
        inst.phrase = c.phrase < n_positive ? result.phrases[c.phrase] : queries[c.phrase];
        inst.label = c.label;
        inst.score = c.score;
        inst.box = c.box;
        if (known[i]) {
          inst.mask = cv::Mat::zeros(bgr.size(), CV_8UC1);
          if (!known[i]->region.empty()) known[i]->pixels.copyTo(inst.mask(known[i]->region));
        } else {
          inst.mask = remove_specks(pack_.segmenter->segment_box(*embedding, c.box), c.box);
          auto entry = std::make_shared<CachedMask>();
          entry->region = cv::boundingRect(inst.mask);
          entry->pixels = inst.mask(entry->region).clone();
          masks_.put(mask_key(key, c.box), entry, entry->pixels.total() + 64);
        }
        inst.area = cv::countNonZero(inst.mask);
        inst.negative = c.phrase >= n_positive;
        (inst.negative ? negatives : positives).push_back(std::move(inst));
      }
      result.times.segment_ms += ms_since(t);

      t = Clock::now();
      apply_colour_hints(bgr, det.colour_hints, result.phrases, positives);
      result.instances = std::move(positives);
      result.instances.insert(result.instances.end(), std::make_move_iterator(region_positives.begin()),
                              std::make_move_iterator(region_positives.end()));
      for (auto& n : negatives) result.instances.push_back(std::move(n));
    } else {
      t = Clock::now();
      result.instances = std::move(region_positives);
    }
    for (auto& n : region_negatives) result.instances.push_back(std::move(n));
    for (const auto& inst : result.instances) {
      if (!inst.negative) cv::bitwise_or(union_mask, inst.mask, union_mask);
    }
    cv::Mat mask = grow_mask(union_mask, params.grow_mask);
    // Negatives are cut after growing, so that the grown border cannot bring them back.
    for (const auto& inst : result.instances) {
      if (inst.negative) mask.setTo(0, inst.mask);
    }
    if (params.feather > 0) mask = feather_mask(mask, params.feather);
    if (params.invert_mask) mask = invert_mask(mask);
    result.mask = mask;
    result.times.post_ms = ms_since(t);
    return result;
  }

  std::string pack_name() const override { return pack_.name; }
  std::string pack_dir() const override { return pack_.dir; }
  std::vector<std::string> detector_labels() const override { return pack_.detector->labels(); }
  CacheStats cache_stats() const override {
    CacheStats s;
    s.image_hits = embeddings_.hits();
    s.image_misses = embeddings_.misses();
    s.text_hits = pack_.detector->text_cache_hits();
    s.text_misses = pack_.detector->text_cache_misses();
    s.detection_hits = pack_.detector->detection_cache_hits();
    s.detection_misses = pack_.detector->detection_cache_misses();
    s.mask_hits = masks_.hits();
    s.mask_misses = masks_.misses();
    return s;
  }

 private:

  // "white horse": keep the instances whose mask is mostly white, best first; if none is, keep them all.
  static void apply_colour_hints(const cv::Mat& bgr, const std::vector<std::string>& hints,
                                 const std::vector<std::string>& phrases, std::vector<Instance>& instances) {
    cv::Mat hsv;
    for (size_t p = 0; p < phrases.size() && p < hints.size(); ++p) {
      if (hints[p].empty()) continue;
      if (hsv.empty()) cv::cvtColor(bgr, hsv, cv::COLOR_BGR2HSV);
      std::vector<float> fraction(instances.size(), -1.f);
      float best = 0.f;
      for (size_t i = 0; i < instances.size(); ++i) {
        if (instances[i].phrase != phrases[p]) continue;
        fraction[i] = colour_fraction(hsv, instances[i].mask, hints[p]);
        best = std::max(best, fraction[i]);
      }
      if (best < kMinColourShare) continue;
      std::vector<Instance> kept;
      for (size_t i = 0; i < instances.size(); ++i) {
        if (fraction[i] >= 0.f && fraction[i] < std::max(kMinColourShare, 0.5f * best)) continue;
        kept.push_back(std::move(instances[i]));
      }
      instances.swap(kept);
    }
  }
  static constexpr float kMinColourShare = 0.15f;

  // The region class a phrase names, or -1 when the object path answers it: a phrase whose head noun is a
  // region ("brick wall") goes to the regions, one whose head noun is an object ("wall clock") or that names
  // both equally ("plant") to the detector.
  int region_for(const std::string& phrase) const {
    if (!region_matcher_) return -1;
    PhraseMatch region = region_matcher_->match(phrase);
    if (region.class_id < 0) return -1;
    if (object_matcher_) {
      PhraseMatch object = object_matcher_->match(phrase);
      if (object.class_id >= 0 && object.rank >= region.rank) return -1;
    }
    return region.class_id;
  }

  static MaskKey mask_key(const ContentKey& image, const Box& box) { return {image, {box.x1, box.y1, box.x2, box.y2}}; }
  static constexpr size_t kMaskCacheBytes = size_t(64) << 20;  // instance masks, cropped to their bounding box

  ModelPack pack_;
  LruCache<ContentKey, std::shared_ptr<const ImageEmbedding>, ContentKeyHash> embeddings_;
  LruCache<MaskKey, std::shared_ptr<const CachedMask>, MaskKeyHash> masks_;
  static constexpr size_t kRegionMapBytes = size_t(2) * 512 * 512 + 64;  // two class maps per photo
  LruCache<ContentKey, std::shared_ptr<const RegionMap>, ContentKeyHash> region_maps_;
  std::unique_ptr<PhraseMatcher> region_matcher_, object_matcher_;
};

}  // namespace

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidArgument: return "invalid_argument";
    case ErrorCode::UnsupportedImage: return "unsupported_image";
    case ErrorCode::BadImage: return "bad_image";
    case ErrorCode::ImageTooLarge: return "image_too_large";
    case ErrorCode::PayloadTooLarge: return "payload_too_large";
    case ErrorCode::ForbiddenUrl: return "forbidden_url";
    case ErrorCode::FetchFailed: return "fetch_failed";
    case ErrorCode::Timeout: return "timeout";
    case ErrorCode::NotReady: return "not_ready";
    case ErrorCode::Overloaded: return "overloaded";
    case ErrorCode::StorageUnavailable: return "storage_unavailable";
    case ErrorCode::Unauthorized: return "unauthorized";
    case ErrorCode::Forbidden: return "forbidden";
    case ErrorCode::NoCredits: return "no_credits";
    case ErrorCode::RateLimited: return "rate_limited";
    case ErrorCode::NotFound: return "not_found";
    case ErrorCode::ModelError: return "model_error";
    default: return "internal";
  }
}

std::vector<std::string> split_prompt(std::string_view prompt) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= prompt.size()) {
    size_t comma = prompt.find(',', start);
    if (comma == std::string_view::npos) comma = prompt.size();
    std::string phrase = lower_trim(prompt.substr(start, comma - start));
    // Collapse inner whitespace runs; merge duplicates case-insensitively.
    std::string clean;
    bool space = false;
    for (char ch : phrase) {
      if (std::isspace(static_cast<unsigned char>(ch))) { space = true; continue; }
      if (space && !clean.empty()) clean += ' ';
      space = false;
      clean += char(std::tolower(static_cast<unsigned char>(ch)));
    }
    if (!clean.empty() && std::find(out.begin(), out.end(), clean) == out.end()) out.push_back(clean);
    start = comma + 1;
  }
  return out;
}

MaskResult Pipeline::run(const DecodedImage& image, std::string_view prompt, const MaskParams& params,
                         std::string_view cache_scope) {
  return run(image.bgr, prompt, params, cache_scope);
}

std::string default_models_dir() {
  if (const char* env = std::getenv("MASKMAKER_MODELS"); env && *env) return env;
  // Beside the binary: <prefix>/bin/maskmaker -> <prefix>/share/maskmaker/models/default, or the source tree's
  // models/default for a binary in build/.
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (fs::path candidate : {exe.parent_path().parent_path() / "models" / "default",
                               exe.parent_path().parent_path() / "share" / "maskmaker" / "models" / "default"}) {
      if (fs::exists(candidate / "pack.json")) return candidate.lexically_normal().string();
    }
  }
  return "models/default";
}

std::unique_ptr<Pipeline> Pipeline::load(const PipelineOptions& options) {
  std::string dir = options.models_dir.empty() ? default_models_dir() : options.models_dir;
  rt::SessionConfig config{options.threads, options.device};
  auto t = Clock::now();
  ModelPack pack = load_model_pack(dir, config, options.verify_checksums);
  spdlog::info("model pack '{}' loaded from {} in {:.0f} ms (detector {})", pack.name, pack.dir, ms_since(t),
               pack.detector->name());
  return std::make_unique<PipelineImpl>(std::move(pack), options);
}

std::string version() { return "0.1.0"; }

}  // namespace maskmaker
