// Mask post-processing. Grow, erode and feather use an exact Euclidean distance transform: linear time
// whatever the radius, and a perfectly round kernel (a 201-px elliptic dilate would cost seconds on big photos).
#include <cmath>

#include <opencv2/imgproc.hpp>

#include "maskmaker/maskmaker.hpp"

namespace maskmaker {
namespace {

// For every pixel, the Euclidean distance to the nearest pixel where `zero_where` is 0.
cv::Mat distance_to_zero(const cv::Mat& zero_where) {
  cv::Mat dist;
  cv::distanceTransform(zero_where, dist, cv::DIST_L2, cv::DIST_MASK_PRECISE, CV_32F);
  return dist;
}

}  // namespace

cv::Mat grow_mask(const cv::Mat& mask, int pixels) {
  CV_Assert(mask.type() == CV_8UC1);
  if (pixels == 0 || cv::countNonZero(mask) == 0) return mask.clone();
  cv::Mat out;
  if (pixels > 0) {
    cv::Mat background = mask == 0;  // 255 where background; the distance of each to the nearest foreground
    cv::Mat dist = distance_to_zero(background);
    out = dist <= float(pixels) + 1e-3f;
  } else {
    cv::Mat dist = distance_to_zero(mask);  // distance of each foreground pixel to the nearest background
    out = dist > float(-pixels) + 1e-3f;
  }
  return out;
}

cv::Mat feather_mask(const cv::Mat& mask, int pixels) {
  CV_Assert(mask.type() == CV_8UC1);
  if (pixels <= 0 || cv::countNonZero(mask) == 0) return mask.clone();
  cv::Mat binary = mask > 127;
  cv::Mat dist = distance_to_zero(binary == 0);
  // Inside stays 255; outside falls linearly to 0 over `pixels`: d = 1 .. pixels gets 255 * (1 - d / (pixels + 1)).
  cv::Mat ramp;
  dist.convertTo(ramp, CV_32F, -255.0 / (pixels + 1), 255.0);
  cv::Mat out;
  ramp.convertTo(out, CV_8U);  // saturates below 0
  out.setTo(255, binary);
  return out;
}

cv::Mat invert_mask(const cv::Mat& mask) {
  cv::Mat out;
  cv::bitwise_not(mask, out);
  return out;
}

}  // namespace maskmaker
