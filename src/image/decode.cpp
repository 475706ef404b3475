// Image decoding: format sniffing, header-only size checks (so a pixel bomb is refused before any
// allocation), EXIF orientation, alpha and bit-depth normalisation to 8-bit BGR.
#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <webp/decode.h>

#include "image/exif.hpp"
#include "image/gif.hpp"
#include "maskmaker/maskmaker.hpp"


namespace maskmaker {
namespace {

uint32_t be32(const uint8_t* p) { return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3]; }
uint16_t be16(const uint8_t* p) { return uint16_t((p[0] << 8) | p[1]); }
uint16_t le16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
int32_t le32s(const uint8_t* p) { return int32_t(uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24)); }

std::optional<cv::Size> jpeg_size(std::span<const uint8_t> b) {
  size_t i = 2;
  while (i + 4 <= b.size()) {
    if (b[i] != 0xFF) return std::nullopt;
    uint8_t marker = b[i + 1];
    if (marker == 0xFF) { ++i; continue; }  // fill byte
    if (marker == 0xD8 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) { i += 2; continue; }
    uint16_t len = be16(&b[i + 2]);
    if (len < 2) return std::nullopt;
    bool sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (sof) {
      if (i + 9 > b.size()) return std::nullopt;
      return cv::Size(be16(&b[i + 7]), be16(&b[i + 5]));
    }
    i += 2 + len;
  }
  return std::nullopt;
}

// A JPEG's scans after its headers: whether the data ends (an EOI marker after the first scan) and how many scans
// (SOS markers) it holds. libjpeg decodes a truncated file without an error (the missing rows come out grey), and
// it accepts any number of repeated progressive scans (a warning only), each costing a pass over every block: a
// few hundred kB of 26-byte scans on a 7000x7000 image took minutes. Markers cannot occur inside entropy-coded
// data (0xFF is stuffed as FF 00), so counting them is exact.
struct JpegScans {
  bool complete = false;
  size_t scans = 0;
};

JpegScans jpeg_scans(std::span<const uint8_t> b) {
  JpegScans out;
  size_t i = 2;
  while (i + 4 <= b.size()) {
    if (b[i] != 0xFF) { out.complete = true; return out; }  // not a marker where one must be: libjpeg will judge
    uint8_t marker = b[i + 1];
    if (marker == 0xFF) { ++i; continue; }
    if (marker == 0xD8 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) { i += 2; continue; }
    if (marker == 0xD9) { out.complete = true; return out; }  // EOI before any scan: libjpeg reports "no image"
    if (marker == 0xDA) {
      out.scans = 1;
      for (size_t k = i + 2; k + 1 < b.size(); ++k) {
        if (b[k] != 0xFF) continue;
        if (b[k + 1] == 0xDA) ++out.scans;
        if (b[k + 1] == 0xD9) { out.complete = true; break; }
      }
      return out;
    }
    i += 2 + ((size_t(b[i + 2]) << 8) | b[i + 3]);
  }
  return out;  // the headers themselves end early
}
constexpr size_t kMaxJpegScans = 100;  // encoders write 1 (baseline) to ~20 (optimised progressive scripts)

}  // namespace

const char* image_format_name(ImageFormat f) {
  switch (f) {
    case ImageFormat::Jpeg: return "jpeg";
    case ImageFormat::Png: return "png";
    case ImageFormat::WebP: return "webp";
    case ImageFormat::Bmp: return "bmp";
    case ImageFormat::Gif: return "gif";
    case ImageFormat::Tiff: return "tiff";
    default: return "unknown";
  }
}

ImageFormat sniff_image_format(std::span<const uint8_t> b) {
  auto starts = [&](const char* magic, size_t n, size_t at = 0) {
    return b.size() >= at + n && std::memcmp(b.data() + at, magic, n) == 0;
  };
  if (starts("\xFF\xD8\xFF", 3)) return ImageFormat::Jpeg;
  if (starts("\x89PNG\r\n\x1a\n", 8)) return ImageFormat::Png;
  if (starts("GIF87a", 6) || starts("GIF89a", 6)) return ImageFormat::Gif;
  if (starts("RIFF", 4) && starts("WEBP", 4, 8)) return ImageFormat::WebP;
  if (starts("BM", 2) && b.size() >= 26) return ImageFormat::Bmp;
  if (starts("II*\0", 4) || starts("MM\0*", 4)) return ImageFormat::Tiff;
  return ImageFormat::Unknown;
}

std::optional<cv::Size> read_image_size(std::span<const uint8_t> b) {
  switch (sniff_image_format(b)) {
    case ImageFormat::Jpeg: return jpeg_size(b);
    case ImageFormat::Png:
      if (b.size() < 24 || std::memcmp(b.data() + 12, "IHDR", 4) != 0) return std::nullopt;
      if (be32(&b[16]) > INT32_MAX || be32(&b[20]) > INT32_MAX) return std::nullopt;
      return cv::Size(int(be32(&b[16])), int(be32(&b[20])));
    case ImageFormat::Gif:
      if (b.size() < 10) return std::nullopt;
      return cv::Size(le16(&b[6]), le16(&b[8]));
    case ImageFormat::Bmp: {
      int32_t w = le32s(&b[18]), h = le32s(&b[22]);
      if (w < 0 || h == INT32_MIN) return std::nullopt;
      return cv::Size(w, std::abs(h));
    }
    case ImageFormat::WebP: {
      int w = 0, h = 0;
      if (!WebPGetInfo(b.data(), b.size(), &w, &h)) return std::nullopt;
      return cv::Size(w, h);
    }
    case ImageFormat::Tiff: {
      int w = 0, h = 0, comp = 0;
      // TIFF headers put the size in an IFD; stb does not read TIFF, so read the first IFD here.
      (void)comp;
      bool le = b[0] == 'I';
      auto rd16 = [&](size_t o) -> uint32_t { return le ? le16(&b[o]) : be16(&b[o]); };
      auto rd32 = [&](size_t o) -> uint32_t { return le ? uint32_t(le32s(&b[o])) : be32(&b[o]); };
      if (b.size() < 8) return std::nullopt;
      size_t ifd = rd32(4);
      if (ifd + 2 > b.size()) return std::nullopt;
      size_t n = rd16(ifd);
      for (size_t k = 0; k < n; ++k) {
        size_t e = ifd + 2 + 12 * k;
        if (e + 12 > b.size()) return std::nullopt;
        uint32_t tag = rd16(e), type = rd16(e + 2);
        uint32_t value = type == 3 ? rd16(e + 8) : rd32(e + 8);
        if (tag == 256) w = int(std::min<uint32_t>(value, INT32_MAX));
        if (tag == 257) h = int(std::min<uint32_t>(value, INT32_MAX));
      }
      if (w <= 0 && h <= 0) return std::nullopt;
      return cv::Size(w, h);
    }
    default: return std::nullopt;
  }
}

ImageFormat check_image_header(std::span<const uint8_t> bytes, const DecodeLimits& limits) {
  if (bytes.empty()) throw Error(ErrorCode::BadImage, "image is empty (0 bytes)", "image");
  const ImageFormat format = sniff_image_format(bytes);
  if (format == ImageFormat::Unknown) {
    throw Error(ErrorCode::UnsupportedImage,
                "unsupported image format: expected JPEG, PNG, WebP, BMP, GIF or TIFF", "image");
  }
  const char* fmt = image_format_name(format);
  auto size = read_image_size(bytes);
  if (!size) throw Error(ErrorCode::BadImage, std::string("cannot read the ") + fmt + " image header", "image");
  if (size->width <= 0 || size->height <= 0) {
    throw Error(ErrorCode::BadImage, "image has zero width or height (" + std::to_string(size->width) + "x" +
                                         std::to_string(size->height) + ")", "image");
  }
  int64_t pixels = int64_t(size->width) * size->height;
  if (pixels > limits.max_pixels) {
    throw Error(ErrorCode::ImageTooLarge,
                "image is " + std::to_string(size->width) + "x" + std::to_string(size->height) + " = " +
                    std::to_string(pixels) + " pixels, over the limit of " + std::to_string(limits.max_pixels),
                "image");
  }
  return format;
}

DecodedImage decode_image(std::span<const uint8_t> bytes, const DecodeLimits& limits) {
  DecodedImage out;
  out.format = check_image_header(bytes, limits);
  const char* fmt = image_format_name(out.format);

  if (out.format == ImageFormat::Jpeg) {
    JpegScans scans = jpeg_scans(bytes);
    if (!scans.complete)
      throw Error(ErrorCode::BadImage, "the jpeg image is truncated (it has no end-of-image marker) and cannot be decoded",
                  "image");
    if (scans.scans > kMaxJpegScans)
      throw Error(ErrorCode::BadImage, "the jpeg image has " + std::to_string(scans.scans) + " scans; at most " +
                                           std::to_string(kMaxJpegScans) + " are decoded", "image");
  }
  cv::Mat decoded;
  if (out.format == ImageFormat::Gif) {
    decoded = decode_gif_first_frame(bytes, limits.max_pixels);
  } else {
    cv::Mat buffer(1, int(bytes.size()), CV_8UC1, const_cast<uint8_t*>(bytes.data()));
    try {
      decoded = cv::imdecode(buffer, cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION);
    } catch (const cv::Exception&) {
      decoded.release();
    }
  }
  if (decoded.empty()) {
    throw Error(ErrorCode::BadImage, std::string("the ") + fmt + " image is corrupt or truncated and cannot be decoded",
                "image");
  }
  if (decoded.depth() != CV_8U) decoded.convertTo(decoded, CV_8U, 1.0 / 257.0);
  out.stored_width = decoded.cols;
  out.stored_height = decoded.rows;
  out.exif_orientation = out.format == ImageFormat::Jpeg ? jpeg_exif_orientation(bytes) : 1;
  out.bgr = apply_exif_orientation(decoded, out.exif_orientation);
  return out;
}

DecodedImage load_image_file(const std::string& path, const DecodeLimits& limits) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::InvalidArgument, "cannot open " + path);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return decode_image(bytes, limits);
}

std::vector<uint8_t> encode_png(const cv::Mat& image, int compression) {
  std::vector<uint8_t> out;
  cv::imencode(".png", image, out, {cv::IMWRITE_PNG_COMPRESSION, compression});
  return out;
}

std::vector<uint8_t> encode_jpeg(const cv::Mat& bgr, int quality) {
  std::vector<uint8_t> out;
  cv::imencode(".jpg", bgr, out, {cv::IMWRITE_JPEG_QUALITY, quality});
  return out;
}

}  // namespace maskmaker
