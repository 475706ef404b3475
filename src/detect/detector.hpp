// The detector interface that closed-set (COCO) and open-vocabulary (YOLO-World) packs both fit.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "image/content_key.hpp"
#include "maskmaker/maskmaker.hpp"
#include "runtime/ort_runtime.hpp"

namespace maskmaker {

struct Candidate {
  Box box;            // original-image pixels
  float score = 0;
  size_t phrase = 0;  // index into the phrases passed to detect()
  std::string label;  // detector's own name for it
};

struct DetectorOutput {
  std::vector<Candidate> candidates;       // every box scoring >= the threshold, before NMS
  std::vector<std::string> unmatched;      // phrases this detector cannot look for
  std::vector<std::string> colour_hints;   // per phrase: a colour word to rank instances by ("" = none)
};

class Detector {
 public:
  virtual ~Detector() = default;
  // image_key: bgr's content_key() (scope included), or empty. Detectors whose raw output does not depend on the phrases (the
  // closed-set ones) cache it per key, so the same image with another prompt skips the model.
  virtual DetectorOutput detect(const cv::Mat& bgr, const std::vector<std::string>& phrases, float conf_thresh,
                                const ContentKey& image_key = {}) = 0;
  virtual std::vector<std::string> labels() const { return {}; }  // closed-set class names
  virtual std::string name() const = 0;
  // Text-embedding cache counters (open-vocabulary detectors); 0 for closed-set ones.
  virtual uint64_t text_cache_hits() const { return 0; }
  virtual uint64_t text_cache_misses() const { return 0; }
  // Per-image detection cache counters (closed-set detectors).
  virtual uint64_t detection_cache_hits() const { return 0; }
  virtual uint64_t detection_cache_misses() const { return 0; }
};

// ---- closed-set models: an image in, class-scored boxes out.
struct ClassBox {
  Box box;
  float score = 0;
  int class_id = 0;
};

class ClassDetectorModel {
 public:
  virtual ~ClassDetectorModel() = default;
  // Every (box, class) scoring >= conf_thresh, in original-image pixels.
  virtual std::vector<ClassBox> run(const cv::Mat& bgr, float conf_thresh) = 0;
  virtual int num_classes() const = 0;
  virtual std::string name() const = 0;
};

std::unique_ptr<ClassDetectorModel> make_yolox(const std::string& path, const rt::SessionConfig& config);
std::unique_ptr<ClassDetectorModel> make_picodet(const std::string& path, const rt::SessionConfig& config);

struct ClosedSetOptions {
  // Slicing: besides the full image, run the detector on a grid x grid of overlapping crops (each side
  // `tile_overlap` x 1/grid of the image) so that small objects are seen at a higher resolution. 0/1 = off.
  int tile_grid = 0;
  float tile_overlap = 1.25f;
  int min_tile_side = 0;  // images whose shorter side is below this are not sliced
  // A crop that sees part of a large object may call that part something else (the front of a bus a truck).
  // A crop box is dropped when at least `tile_inside` of its area lies inside a whole-image box of another
  // class that scores at least as high, that the crop cuts (under 90 % of it inside the crop) and whose area
  // is at most 1 / `tile_inside_area` of the crop box's (a small object on a large one is kept). 0 = off.
  float tile_inside = 0.f;
  float tile_inside_area = 0.5f;
};

// Maps prompt phrases onto the model's classes (see text/phrase_matcher.hpp) and keeps their boxes.
std::unique_ptr<Detector> make_closed_set_detector(std::unique_ptr<ClassDetectorModel> model,
                                                   std::vector<std::string> class_names,
                                                   const ClosedSetOptions& options);

// The 80 COCO class names in the order both bundled detectors use.
const std::vector<std::string>& coco80_names();

}  // namespace maskmaker
