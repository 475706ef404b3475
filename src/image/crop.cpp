// A crop around the mask for fixed-resolution inpainting models: geometry first (pure, unit-tested), then pixels.
#include <algorithm>
#include <cmath>

#include <opencv2/imgproc.hpp>

#include "maskmaker/maskmaker.hpp"

namespace maskmaker {
namespace {

constexpr double kMaxSide = double(1 << 30);

// The smallest multiple of m that is at least v (and at least m). The epsilon absorbs float noise in v = k * m.
int ceil_multiple(double v, int m) { return std::max(m, int(std::ceil(v / m - 1e-9)) * m); }

// Centres a side of `len` pixels on the span [lo, lo + span) and shifts it inside [0, limit); a side longer than
// the limit takes the whole of it.
void place(int lo, int span, int len, int limit, int& pos, int& out_len) {
  if (len >= limit) {
    pos = 0;
    out_len = limit;
    return;
  }
  // floor: the left margin is the larger half, so both margins are at least (len - span) / 2 rounded down.
  pos = std::clamp(int(std::floor(lo + (span - len) / 2.0)), 0, limit - len);
  out_len = len;
}

void invalid(const std::string& field, const std::string& rule) {
  throw Error(ErrorCode::InvalidArgument, "crop." + field + " must be " + rule, "crop." + field);
}

}  // namespace

void validate(const CropParams& p) {
  using L = CropLimits;
  if (p.padding < 0 || p.padding > L::max_padding) invalid("padding", "an integer between 0 and 4096");
  if (!(p.padding_fraction >= 0 && p.padding_fraction <= L::max_padding_fraction))
    invalid("padding_fraction", "a number between 0 and 2");
  if (p.multiple_of < 1 || p.multiple_of > L::max_multiple_of) invalid("multiple_of", "an integer between 1 and 1024");
  if (p.target_size < 0 || p.target_size > L::max_target_size) invalid("target_size", "an integer between 1 and 4096");
  if (p.target_size > 0 && p.target_size % p.multiple_of != 0)
    invalid("target_size", "a multiple of crop.multiple_of (" + std::to_string(p.multiple_of) + ")");
  if (p.min_size < 0 || p.min_size > L::max_min_size) invalid("min_size", "an integer between 0 and 8192");
  if (p.aspect_ratio != 0 && !(p.aspect_ratio >= L::min_aspect_ratio && p.aspect_ratio <= L::max_aspect_ratio))
    invalid("aspect_ratio", "a number between 0.1 and 10");
}

CropGeometry crop_geometry(const cv::Rect& mask_box, cv::Size image, const CropParams& p) {
  validate(p);
  CV_Assert(mask_box.width > 0 && mask_box.height > 0 && image.width > 0 && image.height > 0);
  const int m = p.multiple_of;
  // Whole pixels of padding, so that the box holds at least that much on every side (unless the image ends).
  double w = mask_box.width + 2.0 * std::ceil(p.padding + p.padding_fraction * mask_box.width - 1e-9);
  double h = mask_box.height + 2.0 * std::ceil(p.padding + p.padding_fraction * mask_box.height - 1e-9);
  w = std::max(w, double(p.min_size));
  h = std::max(h, double(p.min_size));
  if (p.aspect_ratio > 0) {
    if (w / h < p.aspect_ratio) w = h * p.aspect_ratio;
    else h = w / p.aspect_ratio;
  }
  w = std::ceil(w - 1e-9);
  h = std::ceil(h - 1e-9);
  // Only a very wide or tall image with extreme padding_fraction and aspect_ratio gets here; keep ints valid.
  if (w > kMaxSide || h > kMaxSide)
    throw Error(ErrorCode::InvalidArgument,
                "crop would be more than 2^30 pixels on a side; lower crop.padding_fraction, crop.min_size or "
                "crop.aspect_ratio", "crop");

  CropGeometry g;
  g.mask_box = mask_box;
  int box_w, box_h;
  if (p.target_size > 0) {
    // The crop image's sides are multiples (the longer one is target_size); the box grows to the image's aspect,
    // so that the resize scales both axes alike.
    const double s = double(p.target_size) / std::max(w, h);
    g.size = {ceil_multiple(w * s, m), ceil_multiple(h * s, m)};
    box_w = int(std::ceil(g.size.width / s - 1e-6));
    box_h = int(std::ceil(g.size.height / s - 1e-6));
  } else {
    g.size = {ceil_multiple(w, m), ceil_multiple(h, m)};
    box_w = g.size.width;
    box_h = g.size.height;
    // min_size and aspect_ratio can ask for more than the image holds: bound what a request makes us allocate.
    const int64_t limit = std::max(CropLimits::max_pixels,
                                   int64_t(ceil_multiple(image.width, m)) * ceil_multiple(image.height, m));
    if (int64_t(g.size.width) * g.size.height > limit)
      throw Error(ErrorCode::InvalidArgument,
                  "crop would be " + std::to_string(g.size.width) + " x " + std::to_string(g.size.height) +
                      " pixels, more than the image; set crop.target_size or lower crop.min_size or crop.aspect_ratio",
                  "crop");
  }
  place(mask_box.x, mask_box.width, box_w, image.width, g.box.x, g.box.width);
  place(mask_box.y, mask_box.height, box_h, image.height, g.box.y, g.box.height);
  g.scale_x = double(g.size.width) / g.box.width;
  g.scale_y = double(g.size.height) / g.box.height;
  return g;
}

std::optional<InpaintCrop> crop_for_inpainting(const cv::Mat& bgr, const cv::Mat& mask, const CropParams& params) {
  CV_Assert(bgr.type() == CV_8UC3 && mask.type() == CV_8UC1 && bgr.size() == mask.size());
  validate(params);
  if (cv::countNonZero(mask) == 0) return std::nullopt;
  InpaintCrop out;
  out.geometry = crop_geometry(cv::boundingRect(mask), bgr.size(), params);
  const CropGeometry& g = out.geometry;
  cv::Mat image_roi = bgr(g.box), mask_roi = mask(g.box);
  if (g.size == g.box.size()) {
    out.image = image_roi.clone();
    out.mask = mask_roi.clone();
    return out;
  }
  const int interpolation = g.scale_x < 1 && g.scale_y < 1 ? cv::INTER_AREA : cv::INTER_LINEAR;
  cv::resize(image_roi, out.image, g.size, 0, 0, interpolation);
  cv::resize(mask_roi, out.mask, g.size, 0, 0, interpolation);
  // A hard mask stays hard (most inpainting pipelines binarise anyway; a feathered one keeps its ramp).
  cv::Mat soft = (mask_roi > 0) & (mask_roi < 255);
  if (cv::countNonZero(soft) == 0) cv::threshold(out.mask, out.mask, 127, 255, cv::THRESH_BINARY);
  return out;
}

}  // namespace maskmaker
