// decode_image on arbitrary bytes: format sniffing, header-only size checks, EXIF orientation, the giflib
// first-frame reader and OpenCV's decoders. Only maskmaker::Error (bad/unsupported/too large) may escape; an
// image that decodes is 8-bit BGR, non-empty, within the pixel limit.
#include <cstddef>
#include <cstdint>
#include <span>

#include <opencv2/core.hpp>

#include "image/exif.hpp"
#include "maskmaker/maskmaker.hpp"

using namespace maskmaker;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  cv::setNumThreads(0);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> bytes(data, size);
  (void)sniff_image_format(bytes);
  (void)read_image_size(bytes);
  int orientation = jpeg_exif_orientation(bytes);
  if (orientation < 1 || orientation > 8) __builtin_trap();
  DecodeLimits limits;
  limits.max_pixels = 4'000'000;  // keeps each run fast; the check itself is what is fuzzed
  try {
    DecodedImage img = decode_image(bytes, limits);
    if (img.bgr.empty() || img.bgr.type() != CV_8UC3) __builtin_trap();
    if (int64_t(img.bgr.cols) * img.bgr.rows > limits.max_pixels) __builtin_trap();
  } catch (const Error& e) {
    if (e.code() != ErrorCode::BadImage && e.code() != ErrorCode::UnsupportedImage &&
        e.code() != ErrorCode::ImageTooLarge)
      __builtin_trap();
  }
  return 0;
}
