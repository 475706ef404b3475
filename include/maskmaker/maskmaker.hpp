// maskmaker public API: (image, prompt, parameters) -> inpainting mask.
// The HTTP server and the command-line tool are thin layers over this header.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <opencv2/core.hpp>

namespace maskmaker {

// Every failure the library reports carries one of these; front ends map them to HTTP statuses or exit codes.
enum class ErrorCode {
  InvalidArgument,   // a parameter is missing, mistyped or out of range
  UnsupportedImage,  // not an image format we decode
  BadImage,          // looks like a supported format but does not decode
  ImageTooLarge,     // more pixels than the configured limit
  PayloadTooLarge,   // bytes over a size limit (body, fetched image)
  ForbiddenUrl,      // URL scheme or resolved address refused
  FetchFailed,       // image URL could not be fetched
  Timeout,           // a deadline passed
  NotReady,          // models still loading
  Overloaded,        // queue full
  StorageUnavailable,  // a database is busy, full, read-only or failing: retry later (503)
  Unauthorized,      // missing/unknown key
  Forbidden,         // key disabled / not allowed
  NoCredits,         // key out of credits
  RateLimited,       // key over its rate
  NotFound,          // unknown resource
  ModelError,        // a model file is missing, corrupt or has an unexpected contract
  Internal,
};

const char* error_code_name(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message, std::string field = {})
      : std::runtime_error(message), code_(code), field_(std::move(field)) {}
  ErrorCode code() const { return code_; }
  // The request field the error is about, when there is one ("confidence_thresh").
  const std::string& field() const { return field_; }

 private:
  ErrorCode code_;
  std::string field_;
};

// ---------------------------------------------------------------- images
enum class ImageFormat { Jpeg, Png, WebP, Bmp, Gif, Tiff, Unknown };
const char* image_format_name(ImageFormat f);

struct DecodeLimits {
  int64_t max_pixels = 50'000'000;  // width * height, checked from the header before decoding
};

struct DecodedImage {
  cv::Mat bgr;  // CV_8UC3, EXIF orientation applied, alpha dropped
  ImageFormat format = ImageFormat::Unknown;
  int stored_width = 0, stored_height = 0;  // before EXIF rotation
  int exif_orientation = 1;
};

// Sniffs the format from the magic bytes.
ImageFormat sniff_image_format(std::span<const uint8_t> bytes);
// Width and height read from the header (stored orientation), without decoding pixels; nullopt if unreadable.
std::optional<cv::Size> read_image_size(std::span<const uint8_t> bytes);
// The checks decode_image makes from the header before decoding (empty, unknown format, unreadable header, zero
// or too many pixels), with its errors; returns the format. For callers that decode later (asynchronous jobs).
ImageFormat check_image_header(std::span<const uint8_t> bytes, const DecodeLimits& limits = {});
DecodedImage decode_image(std::span<const uint8_t> bytes, const DecodeLimits& limits = {});
DecodedImage load_image_file(const std::string& path, const DecodeLimits& limits = {});

std::vector<uint8_t> encode_png(const cv::Mat& image, int compression = 1);
std::vector<uint8_t> encode_jpeg(const cv::Mat& bgr, int quality = 90);

// ---------------------------------------------------------------- parameters and results
struct MaskParams {
  float confidence_thresh = 0.5f;  // [0, 1]
  float iou_thresh = 0.2f;         // [0, 1], NMS per phrase
  int grow_mask = 10;              // pixels; negative erodes (native API only)
  bool invert_mask = false;
  int max_detections = 100;        // after NMS, highest scores first
  std::vector<std::string> negative_phrases;  // instances of these are subtracted from the mask
  int feather = 0;                 // soft edge width in pixels (0 = hard 0/255 mask)
};
// Throws Error(InvalidArgument) naming the field when a value is out of range.
void validate(const MaskParams& params);

struct Box {
  float x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  float width() const { return x2 - x1; }
  float height() const { return y2 - y1; }
  float area() const { return width() > 0 && height() > 0 ? width() * height() : 0.f; }
};
float iou(const Box& a, const Box& b);

struct Instance {
  std::string phrase;  // the prompt phrase this instance answers
  std::string label;   // what the detector called it (a class name for closed-set packs)
  float score = 0;
  Box box;             // original-image pixels
  cv::Mat mask;        // CV_8UC1, 0/255, original size
  int64_t area = 0;    // mask pixels
  bool negative = false;  // found by negative_prompt (subtracted)
};

struct StageTimes {
  double decode_ms = 0, detect_ms = 0, encode_ms = 0, segment_ms = 0, post_ms = 0, output_ms = 0;
  double total_ms() const { return decode_ms + detect_ms + encode_ms + segment_ms + post_ms + output_ms; }
};

struct MaskResult {
  int width = 0, height = 0;
  cv::Mat mask;  // CV_8UC1 union mask after grow/feather/invert: 255 = inpaint
  std::vector<Instance> instances;     // kept positive instances, best first
  std::vector<std::string> phrases;    // the parsed phrases
  std::vector<std::string> unmatched;  // phrases the detector cannot look for
  StageTimes times;
  bool image_cache_hit = false;
};

// Splits on commas, trims, drops empties, merges duplicates (case-insensitive); order kept.
std::vector<std::string> split_prompt(std::string_view prompt);

// ---------------------------------------------------------------- the pipeline
struct PipelineOptions {
  std::string models_dir;   // folder with pack.json; empty = default search (MASKMAKER_MODELS, then beside the binary)
  std::string device = "cpu";  // cpu | cuda
  int threads = 0;          // intra-op threads per session; 0 = hardware concurrency
  size_t image_cache_entries = 16;  // image embeddings kept (about 4 MiB each); 0 also disables the mask cache
  bool verify_checksums = true;
};

struct CacheStats {
  uint64_t image_hits = 0, image_misses = 0, text_hits = 0, text_misses = 0;
  uint64_t detection_hits = 0, detection_misses = 0;  // closed-set detector output per image
  uint64_t mask_hits = 0, mask_misses = 0;            // instance masks per (image, box)
};

class Pipeline {
 public:
  // Loads every model of the pack once; throws Error(ModelError) with the file and the reason.
  static std::unique_ptr<Pipeline> load(const PipelineOptions& options);
  virtual ~Pipeline() = default;

  // Thread-safe; sessions are shared.
  virtual MaskResult run(const cv::Mat& bgr, std::string_view prompt, const MaskParams& params) = 0;
  MaskResult run(const DecodedImage& image, std::string_view prompt, const MaskParams& params);

  virtual std::string pack_name() const = 0;
  virtual std::string pack_dir() const = 0;
  virtual std::vector<std::string> detector_labels() const = 0;  // empty for open-vocabulary packs
  virtual CacheStats cache_stats() const = 0;
};

// Where the default pack is looked for when PipelineOptions::models_dir is empty.
std::string default_models_dir();

// The annotated image: each instance's mask at 50 % in a colour per phrase, its box and "phrase score".
cv::Mat annotate(const cv::Mat& bgr, const MaskResult& result);
// RGBA image with the mask as alpha.
cv::Mat cutout(const cv::Mat& bgr, const cv::Mat& mask);

// Post-processing (exposed for tests and the native API).
cv::Mat grow_mask(const cv::Mat& mask, int pixels);  // round kernel; negative erodes
cv::Mat feather_mask(const cv::Mat& mask, int pixels);  // linear ramp outward over `pixels`
cv::Mat invert_mask(const cv::Mat& mask);

std::string version();

}  // namespace maskmaker
