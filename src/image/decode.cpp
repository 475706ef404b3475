// Image decoding: format sniffing, size checks from each decoder's own header parse (so a pixel bomb is refused
// before any allocation), EXIF orientation, alpha and bit-depth normalisation to 8-bit BGR.
#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

#include <jpeglib.h>
#include <jerror.h>  // JWRN_EXTRANEOUS_DATA, JERR_IMAGE_TOO_BIG
#include <png.h>
#include <tiffio.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <webp/decode.h>

#include "image/exif.hpp"
#include "image/gif.hpp"
#include "maskmaker/maskmaker.hpp"


namespace maskmaker {
namespace {

uint16_t le16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
int32_t le32s(const uint8_t* p) { return int32_t(uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24)); }

// Every size below comes from the header parse of the library that decodes the pixels (OpenCV links the same
// libjpeg, libpng, libtiff and libwebp; GIF is ours through giflib; BMP is OpenCV's own reader, mirrored), so a
// file cannot show a small size to this check and a large one to the decoder. A hand-written sniffer did: it read
// an FF 00 pair as a marker with a length and stepped over a hidden SOF that libjpeg resynchronised onto, and kept
// the last of duplicate TIFF size tags where libtiff keeps the first.

// libjpeg: errors longjmp out; a warning that it skipped bytes to find a marker means the file shows different
// headers to different readers, and is refused.
struct JpegErrors {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  bool resynchronised = false;
};

void jpeg_fail(j_common_ptr c) { std::longjmp(reinterpret_cast<JpegErrors*>(c->err)->jump, 1); }

void jpeg_message(j_common_ptr c, int level) {
  if (level < 0 && c->err->msg_code == JWRN_EXTRANEOUS_DATA) reinterpret_cast<JpegErrors*>(c->err)->resynchronised = true;
}

std::optional<cv::Size> jpeg_size(std::span<const uint8_t> b) {
  jpeg_decompress_struct cinfo;
  std::memset(&cinfo, 0, sizeof cinfo);
  JpegErrors errors;
  cinfo.err = jpeg_std_error(&errors.pub);
  errors.pub.error_exit = jpeg_fail;
  errors.pub.emit_message = jpeg_message;
  if (setjmp(errors.jump)) {  // no C++ object with a destructor lives between here and the longjmps
    // Over libjpeg's own cap (65500 a side): the size it read is reported, so the pixel limit names it.
    const bool too_big = errors.pub.msg_code == JERR_IMAGE_TOO_BIG && !errors.resynchronised;
    const cv::Size declared(int(std::min<JDIMENSION>(cinfo.image_width, INT32_MAX)),
                            int(std::min<JDIMENSION>(cinfo.image_height, INT32_MAX)));
    jpeg_destroy_decompress(&cinfo);
    if (!too_big) return std::nullopt;
    return declared;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, b.data(), static_cast<unsigned long>(b.size()));
  const bool ok = jpeg_read_header(&cinfo, TRUE) == JPEG_HEADER_OK && !errors.resynchronised &&
                  cinfo.image_width <= INT32_MAX && cinfo.image_height <= INT32_MAX;
  const cv::Size size(int(cinfo.image_width), int(cinfo.image_height));
  jpeg_destroy_decompress(&cinfo);
  if (!ok) return std::nullopt;
  return size;
}

// libpng: png_read_info reads the signature, IHDR (checked: CRC, depth, colour type) and the chunks before IDAT.
struct PngSource {
  std::span<const uint8_t> bytes;
  size_t pos = 0;
  bool past_ihdr = false;  // libpng asked for bytes after IHDR: it read, checked (CRC, fields) and kept it
};
constexpr size_t kPngIhdrEnd = 8 + 8 + 13 + 4;  // signature, chunk length and type, IHDR data, CRC

void png_read_memory(png_structp png, png_bytep out, size_t n) {
  auto* src = static_cast<PngSource*>(png_get_io_ptr(png));
  if (src->pos >= kPngIhdrEnd) src->past_ihdr = true;
  if (n > src->bytes.size() - src->pos) png_error(png, "truncated");
  std::memcpy(out, src->bytes.data() + src->pos, n);
  src->pos += n;
}

void png_quiet(png_structp, png_const_charp) {}

std::optional<cv::Size> png_size(std::span<const uint8_t> b) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, png_quiet);
  if (!png) return std::nullopt;
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    return std::nullopt;
  }
  PngSource src{b};
  if (setjmp(png_jmpbuf(png))) {
    // A fault after IHDR (a truncated file, a bad later chunk) is the decoder's to report; the size libpng
    // accepted is the one it would allocate for, so the pixel limit still applies to it.
    const bool sized = src.past_ihdr;
    const cv::Size size(int(png_get_image_width(png, info)), int(png_get_image_height(png, info)));
    png_destroy_read_struct(&png, &info, nullptr);
    if (!sized) return std::nullopt;
    return size;
  }
  png_set_read_fn(png, &src, png_read_memory);
  // libpng's own default (1,000,000 a side) would turn an honest 30000x30000 into "cannot read the header"; the
  // pixel limit is the caller's.
  png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
  png_read_info(png, info);
  const cv::Size size(int(png_get_image_width(png, info)), int(png_get_image_height(png, info)));
  png_destroy_read_struct(&png, &info, nullptr);
  return size;
}

// libtiff, from memory, first directory (the page OpenCV decodes); its messages go nowhere.
struct TiffSource {
  std::span<const uint8_t> bytes;
  toff_t pos = 0;
};

tmsize_t tiff_read(thandle_t h, void* out, tmsize_t n) {
  auto* src = static_cast<TiffSource*>(h);
  if (n < 0 || src->pos >= src->bytes.size()) return 0;
  const size_t take = std::min<size_t>(size_t(n), src->bytes.size() - size_t(src->pos));
  std::memcpy(out, src->bytes.data() + src->pos, take);
  src->pos += take;
  return tmsize_t(take);
}
tmsize_t tiff_write(thandle_t, void*, tmsize_t) { return 0; }
toff_t tiff_seek(thandle_t h, toff_t off, int whence) {
  auto* src = static_cast<TiffSource*>(h);
  const toff_t base = whence == SEEK_CUR ? src->pos : whence == SEEK_END ? toff_t(src->bytes.size()) : 0;
  src->pos = base + off;
  return src->pos;
}
int tiff_close(thandle_t) { return 0; }
toff_t tiff_size(thandle_t h) { return static_cast<TiffSource*>(h)->bytes.size(); }
int tiff_map(thandle_t, void**, toff_t*) { return 0; }
void tiff_unmap(thandle_t, void*, toff_t) {}
int tiff_quiet(TIFF*, void*, const char*, const char*, va_list) { return 1; }

std::optional<cv::Size> tiff_size(std::span<const uint8_t> b) {
  TiffSource src{b};
  TIFFOpenOptions* opts = TIFFOpenOptionsAlloc();
  if (!opts) return std::nullopt;
  TIFFOpenOptionsSetErrorHandlerExtR(opts, tiff_quiet, nullptr);
  TIFFOpenOptionsSetWarningHandlerExtR(opts, tiff_quiet, nullptr);
  TIFFOpenOptionsSetMaxSingleMemAlloc(opts, 64 << 20);  // the directory itself; pixels are bounded by the caller
  TIFF* tif = TIFFClientOpenExt("image", "rm", &src, tiff_read, tiff_write, tiff_seek, tiff_close, tiff_size, tiff_map,
                                tiff_unmap, opts);
  TIFFOpenOptionsFree(opts);
  if (!tif) return std::nullopt;
  uint32_t w = 0, h = 0;
  const bool ok = TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &w) == 1 && TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &h) == 1;
  TIFFClose(tif);
  if (!ok) return std::nullopt;
  return cv::Size(int(std::min<uint32_t>(w, INT32_MAX)), int(std::min<uint32_t>(h, INT32_MAX)));
}

// OpenCV's BMP reader (grfmt_bmp.cpp): a 40+ byte info header has 32-bit signed sizes (negative height = rows
// top-down), the 12-byte OS/2 core header 16-bit ones; any other header size is refused.
std::optional<cv::Size> bmp_size(std::span<const uint8_t> b) {
  if (b.size() < 26) return std::nullopt;
  const int32_t header = le32s(&b[14]);
  if (header >= 36) {
    const int32_t w = le32s(&b[18]), h = le32s(&b[22]);
    if (w < 0 || h == INT32_MIN) return std::nullopt;
    return cv::Size(w, std::abs(h));
  }
  if (header == 12) return cv::Size(le16(&b[18]), le16(&b[20]));
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
    case ImageFormat::Png: return png_size(b);
    case ImageFormat::Gif: return gif_screen_size(b);
    case ImageFormat::Bmp: return bmp_size(b);
    case ImageFormat::WebP: {
      int w = 0, h = 0;
      if (!WebPGetInfo(b.data(), b.size(), &w, &h)) return std::nullopt;
      return cv::Size(w, h);
    }
    case ImageFormat::Tiff: return tiff_size(b);
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
  const std::optional<cv::Size> size = read_image_size(bytes);  // checked just above: present

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
  if (decoded.size() != *size) {  // the decoder disagrees with its own header: never trust either
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
