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

#include "maskmaker/params.hpp"

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
  StorageUnavailable,  // the keys/jobs database is busy, full, read-only, failing I/O or unreachable (retry later)
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
  // Seconds a client should wait before retrying (Retry-After), when the error says so (rate limits).
  int retry_after() const { return retry_after_; }
  Error& with_retry_after(int seconds) { retry_after_ = seconds; return *this; }

 private:
  ErrorCode code_;
  std::string field_;
  int retry_after_ = 0;
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
// Defaults, ranges and help are in the parameter table (params.hpp).
struct MaskParams {
  float confidence_thresh = float(param_default("confidence_thresh"));
  float iou_thresh = float(param_default("iou_thresh"));  // NMS per phrase
  int grow_mask = int(param_default("grow_mask"));        // pixels; negative erodes (native API only)
  bool invert_mask = param_default("invert_mask") != 0;
  int max_detections = int(param_default("max_detections"));  // after NMS, highest scores first
  std::vector<std::string> negative_phrases;  // instances of these are subtracted from the mask
  int feather = int(param_default("feather"));  // soft edge width in pixels (0 = hard 0/255 mask)
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

  // Thread-safe; sessions are shared. cache_scope is mixed into the keys of the per-image caches (embeddings,
  // detector boxes, masks): entries are shared only between calls with the same scope. The server passes the API
  // key's id, so that a fast (cached) answer never tells one tenant that another sent the same image.
  virtual MaskResult run(const cv::Mat& bgr, std::string_view prompt, const MaskParams& params,
                         std::string_view cache_scope = {}) = 0;
  MaskResult run(const DecodedImage& image, std::string_view prompt, const MaskParams& params,
                 std::string_view cache_scope = {});

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

// ---------------------------------------------------------------- crop for inpainting
// Inpainting models work at a fixed resolution: crop a region around the mask with context, resize it, inpaint it,
// paste it back. The crop box is the mask's bounding box (pixels > 0) grown by the padding on every side, to
// min_size and to aspect_ratio, then to the size whose resize to the crop image gives sides that are multiples of
// multiple_of (target_size: the longer side of the crop image; 0: the box's own size, scale 1), centred on the mask
// and shifted inside the image. Only a box larger than the image on an axis is clamped to the whole side, and the
// crop image is then stretched on that axis (scale_x != scale_y) so that its size stays as asked.
struct CropLimits {
  static constexpr int max_padding = 4096;
  static constexpr double max_padding_fraction = 2.0;
  static constexpr int max_multiple_of = 1024;
  static constexpr int max_target_size = 4096;
  static constexpr int max_min_size = 8192;
  static constexpr double min_aspect_ratio = 0.1, max_aspect_ratio = 10.0;
  // Without target_size a crop image is at most this many pixels, or the image's (rounded up to the multiple).
  static constexpr int64_t max_pixels = int64_t(4096) * 4096;
};

struct CropParams {
  int padding = 32;             // px of context on every side of the mask's bounding box
  double padding_fraction = 0;  // plus this fraction of the box's width (left, right) and height (top, bottom)
  int multiple_of = 8;          // the crop image's sides are multiples of this
  int target_size = 0;          // the crop image's longer side (a multiple of multiple_of); 0 = the box's size
  int min_size = 0;             // each side of the box at least this (original px)
  double aspect_ratio = 0;      // width / height of the crop; 0 = the padded box's own
};
// Throws Error(InvalidArgument) with the field ("crop.multiple_of") when a value is out of range.
void validate(const CropParams& params);

struct CropGeometry {
  cv::Rect mask_box;  // the mask's bounding box
  cv::Rect box;       // the crop in original pixels, inside the image
  cv::Size size;      // the crop image's size
  double scale_x = 1, scale_y = 1;  // size / box
};
// Pure geometry (tests, front ends). Throws Error(InvalidArgument, field "crop") when the crop image would be
// larger than CropLimits::max_pixels and the image's own size.
CropGeometry crop_geometry(const cv::Rect& mask_box, cv::Size image, const CropParams& params);

struct InpaintCrop {
  CropGeometry geometry;
  cv::Mat image;  // CV_8UC3, geometry.size
  cv::Mat mask;   // CV_8UC1, geometry.size; a binary (0/255) mask stays binary after the resize
};
// nullopt when the mask is empty (nothing to inpaint).
std::optional<InpaintCrop> crop_for_inpainting(const cv::Mat& bgr, const cv::Mat& mask, const CropParams& params);

std::string version();

}  // namespace maskmaker
