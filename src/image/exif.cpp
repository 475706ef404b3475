#include "image/exif.hpp"

#include <cstring>

#include <opencv2/core.hpp>

namespace maskmaker {

int jpeg_exif_orientation(std::span<const uint8_t> b) {
  size_t i = 2;
  while (i + 4 <= b.size() && b[i] == 0xFF) {
    uint8_t marker = b[i + 1];
    if (marker == 0xDA || marker == 0xD9) break;  // start of scan: no more metadata
    size_t len = (size_t(b[i + 2]) << 8) | b[i + 3];
    if (len < 2 || i + 2 + len > b.size()) break;
    if (marker == 0xE1 && len >= 16 && std::memcmp(&b[i + 4], "Exif\0\0", 6) == 0) {
      const uint8_t* tiff = &b[i + 10];
      size_t tiff_len = len - 8;
      bool le;
      if (std::memcmp(tiff, "II", 2) == 0) le = true;
      else if (std::memcmp(tiff, "MM", 2) == 0) le = false;
      else return 1;
      auto rd16 = [&](size_t o) -> uint32_t {
        return le ? uint32_t(tiff[o] | (tiff[o + 1] << 8)) : uint32_t((tiff[o] << 8) | tiff[o + 1]);
      };
      auto rd32 = [&](size_t o) -> uint32_t {
        return le ? (uint32_t(tiff[o]) | (uint32_t(tiff[o + 1]) << 8) | (uint32_t(tiff[o + 2]) << 16) | (uint32_t(tiff[o + 3]) << 24))
                  : ((uint32_t(tiff[o]) << 24) | (uint32_t(tiff[o + 1]) << 16) | (uint32_t(tiff[o + 2]) << 8) | tiff[o + 3]);
      };
      if (tiff_len < 8) return 1;
      size_t ifd = rd32(4);
      if (ifd + 2 > tiff_len) return 1;
      size_t count = rd16(ifd);
      for (size_t k = 0; k < count; ++k) {
        size_t e = ifd + 2 + 12 * k;
        if (e + 12 > tiff_len) return 1;
        if (rd16(e) == 0x0112) {
          uint32_t v = rd16(e + 8);
          return v >= 1 && v <= 8 ? int(v) : 1;
        }
      }
      return 1;
    }
    i += 2 + len;
  }
  return 1;
}

cv::Mat apply_exif_orientation(const cv::Mat& image, int orientation) {
  cv::Mat out;
  switch (orientation) {
    case 2: cv::flip(image, out, 1); break;
    case 3: cv::rotate(image, out, cv::ROTATE_180); break;
    case 4: cv::flip(image, out, 0); break;
    case 5: cv::transpose(image, out); break;
    case 6: cv::rotate(image, out, cv::ROTATE_90_CLOCKWISE); break;
    case 7: cv::transpose(image, out); cv::rotate(out, out, cv::ROTATE_180); break;
    case 8: cv::rotate(image, out, cv::ROTATE_90_COUNTERCLOCKWISE); break;
    default: out = image; break;
  }
  return out;
}

}  // namespace maskmaker
