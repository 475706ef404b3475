// The crop for inpainting: geometry (padding, multiples, borders, aspect, target size), validation, pixels.
#include <gtest/gtest.h>
#include <opencv2/imgproc.hpp>

#include "maskmaker/maskmaker.hpp"

using namespace maskmaker;

namespace {

CropParams params(int padding, int multiple_of, int target_size = 0) {
  CropParams p;
  p.padding = padding;
  p.multiple_of = multiple_of;
  p.target_size = target_size;
  return p;
}

bool contains(const cv::Rect& outer, const cv::Rect& inner) { return (outer & inner) == inner; }

std::string message_of(const CropParams& p) {
  try {
    validate(p);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    return std::string(e.what()) + " [" + e.field() + "]";
  }
  return "";
}

}  // namespace

TEST(CropGeometry, PaddedBoxRoundedUpToTheMultipleAndCentred) {
  // Mask box 100 x 50 at (300, 200) in 1000 x 800: padded 164 x 114, rounded up to 192 x 128.
  CropGeometry g = crop_geometry({300, 200, 100, 50}, {1000, 800}, params(32, 64));
  EXPECT_EQ(g.size, cv::Size(192, 128));
  EXPECT_EQ(g.box, cv::Rect(254, 161, 192, 128));  // centred: margins 46 / 46 and 39 / 39
  EXPECT_TRUE(contains(g.box, {300 - 32, 200 - 32, 100 + 64, 50 + 64}));
  EXPECT_DOUBLE_EQ(g.scale_x, 1.0);
  EXPECT_DOUBLE_EQ(g.scale_y, 1.0);
}

TEST(CropGeometry, OddMarginsStillHoldThePadding) {
  for (int mw = 1; mw < 40; ++mw) {
    for (int m : {1, 3, 8, 64}) {
      CropGeometry g = crop_geometry({500, 400, mw, 7}, {2000, 2000}, params(5, m));
      EXPECT_TRUE(contains(g.box, {495, 395, mw + 10, 17})) << mw << " " << m;
      EXPECT_EQ(g.box.width % m, 0);
      EXPECT_EQ(g.box.height % m, 0);
    }
  }
}

TEST(CropGeometry, ShiftedInsideAtTheBordersRatherThanShrunk) {
  // A mask in the top-left corner: the box keeps its size and starts at 0.
  CropGeometry g = crop_geometry({3, 5, 40, 40}, {640, 480}, params(32, 64));
  EXPECT_EQ(g.box, cv::Rect(0, 0, 128, 128));
  // Bottom-right corner.
  g = crop_geometry({600, 450, 40, 30}, {640, 480}, params(32, 64));
  EXPECT_EQ(g.box, cv::Rect(640 - 128, 480 - 128, 128, 128));
  EXPECT_TRUE(contains(g.box, {600, 450, 40, 30}));
}

TEST(CropGeometry, LargerThanTheImageTakesTheWholeSideAndStretches) {
  // 4 x 4 image, multiple 64: the box is the whole image, the crop image 64 x 64.
  CropGeometry g = crop_geometry({1, 1, 2, 2}, {4, 4}, params(0, 64));
  EXPECT_EQ(g.box, cv::Rect(0, 0, 4, 4));
  EXPECT_EQ(g.size, cv::Size(64, 64));
  EXPECT_DOUBLE_EQ(g.scale_x, 16.0);
  // Only the axis that does not fit stretches.
  g = crop_geometry({10, 100, 280, 50}, {300, 1000}, params(16, 64));
  EXPECT_EQ(g.box.x, 0);
  EXPECT_EQ(g.box.width, 300);
  EXPECT_EQ(g.size, cv::Size(320, 128));
  EXPECT_DOUBLE_EQ(g.scale_y, 1.0);
  EXPECT_NEAR(g.scale_x, 320.0 / 300, 1e-12);
}

TEST(CropGeometry, TargetSizeIsTheLongerSideAndScalesBothAxesAlike) {
  CropGeometry g = crop_geometry({1000, 800, 400, 200}, {3000, 2250}, params(32, 64, 1024));
  EXPECT_EQ(g.size.width, 1024);
  EXPECT_EQ(g.size.height % 64, 0);
  EXPECT_TRUE(contains(g.box, {968, 768, 464, 264}));
  // The box grows to the crop image's aspect (up to a pixel of rounding).
  EXPECT_NEAR(g.scale_x, g.scale_y, 0.01 * g.scale_x);
  EXPECT_NEAR(g.scale_x, 1024.0 / g.box.width, 1e-12);
  // Upscaling a small crop.
  g = crop_geometry({50, 50, 20, 10}, {640, 480}, params(4, 8, 512));
  EXPECT_EQ(g.size.width, 512);
  EXPECT_GT(g.scale_x, 10.0);
}

TEST(CropGeometry, PaddingFractionMinSizeAndAspect) {
  CropParams p = params(0, 1);
  p.padding_fraction = 0.5;  // half the box on each side: 100 x 40 -> 200 x 80
  CropGeometry g = crop_geometry({400, 400, 100, 40}, {2000, 2000}, p);
  EXPECT_EQ(g.box.size(), cv::Size(200, 80));
  EXPECT_EQ(g.box, cv::Rect(350, 380, 200, 80));
  p.padding_fraction = 0;
  p.min_size = 300;
  g = crop_geometry({400, 400, 100, 40}, {2000, 2000}, p);
  EXPECT_EQ(g.box.size(), cv::Size(300, 300));
  p.min_size = 0;
  p.aspect_ratio = 1.0;
  g = crop_geometry({400, 400, 100, 40}, {2000, 2000}, p);
  EXPECT_EQ(g.box.size(), cv::Size(100, 100));
  p.aspect_ratio = 16.0 / 9;
  p.multiple_of = 8;
  g = crop_geometry({400, 400, 100, 100}, {2000, 2000}, p);
  EXPECT_EQ(g.box.size(), cv::Size(184, 104));  // 177.8 x 100 rounded up to multiples of 8
}

TEST(CropGeometry, RefusesAHugeCropWithoutTargetSize) {
  CropParams p = params(0, 8);
  p.min_size = 8192;
  try {
    crop_geometry({1, 1, 2, 2}, {640, 480}, p);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.field(), "crop");
    EXPECT_STREQ(e.what(), "crop would be 8192 x 8192 pixels, more than the image; set crop.target_size or lower "
                           "crop.min_size or crop.aspect_ratio");
  }
  // A 50-megapixel line with the most padding and the narrowest aspect: refused, not an int overflow.
  CropParams extreme = params(4096, 8, 4096);
  extreme.padding_fraction = 2;
  extreme.aspect_ratio = 0.1;
  EXPECT_THROW(crop_geometry({0, 0, 50'000'000, 1}, {50'000'000, 1}, extreme), Error);
  p.target_size = 1024;  // with a target size the crop image is bounded by it
  CropGeometry g = crop_geometry({1, 1, 2, 2}, {640, 480}, p);
  EXPECT_EQ(g.size, cv::Size(1024, 1024));
  EXPECT_EQ(g.box, cv::Rect(0, 0, 640, 480));
}

TEST(CropGeometry, ValidationNamesTheField) {
  CropParams p;
  EXPECT_EQ(message_of(p), "");
  p.padding = -1;
  EXPECT_EQ(message_of(p), "crop.padding must be an integer between 0 and 4096 [crop.padding]");
  p = {};
  p.padding_fraction = 2.5;
  EXPECT_EQ(message_of(p), "crop.padding_fraction must be a number between 0 and 2 [crop.padding_fraction]");
  p = {};
  p.multiple_of = 0;
  EXPECT_EQ(message_of(p), "crop.multiple_of must be an integer between 1 and 1024 [crop.multiple_of]");
  p = {};
  p.target_size = 5000;
  EXPECT_EQ(message_of(p), "crop.target_size must be an integer between 1 and 4096 [crop.target_size]");
  p.target_size = 1000;
  p.multiple_of = 64;
  EXPECT_EQ(message_of(p), "crop.target_size must be a multiple of crop.multiple_of (64) [crop.target_size]");
  p = {};
  p.min_size = 9000;
  EXPECT_EQ(message_of(p), "crop.min_size must be an integer between 0 and 8192 [crop.min_size]");
  p = {};
  p.aspect_ratio = 20;
  EXPECT_EQ(message_of(p), "crop.aspect_ratio must be a number between 0.1 and 10 [crop.aspect_ratio]");
}

TEST(CropPixels, CropIsTheImageAndMaskCutAtTheBox) {
  cv::Mat bgr(300, 400, CV_8UC3);
  cv::randu(bgr, 0, 256);
  cv::Mat mask(300, 400, CV_8UC1, cv::Scalar(0));
  cv::circle(mask, {200, 150}, 30, cv::Scalar(255), cv::FILLED);
  auto crop = crop_for_inpainting(bgr, mask, params(10, 8));
  ASSERT_TRUE(crop);
  const CropGeometry& g = crop->geometry;
  EXPECT_EQ(g.mask_box, cv::Rect(170, 120, 61, 61));
  EXPECT_EQ(g.box.size(), cv::Size(88, 88));
  EXPECT_EQ(cv::norm(crop->image, bgr(g.box), cv::NORM_INF), 0);
  EXPECT_EQ(cv::norm(crop->mask, mask(g.box), cv::NORM_INF), 0);
  EXPECT_EQ(cv::countNonZero(crop->mask), cv::countNonZero(mask));
}

TEST(CropPixels, ResizedHardMaskStaysBinaryAndOverlapsTheCut) {
  cv::Mat bgr(600, 800, CV_8UC3, cv::Scalar(20, 40, 60));
  cv::Mat mask(600, 800, CV_8UC1, cv::Scalar(0));
  cv::ellipse(mask, {400, 300}, {120, 70}, 20, 0, 360, cv::Scalar(255), cv::FILLED);
  auto crop = crop_for_inpainting(bgr, mask, params(16, 64, 512));
  ASSERT_TRUE(crop);
  EXPECT_EQ(crop->mask.size(), crop->geometry.size);
  cv::Mat soft = (crop->mask > 0) & (crop->mask < 255);
  EXPECT_EQ(cv::countNonZero(soft), 0);
  cv::Mat back;
  cv::resize(crop->mask, back, crop->geometry.box.size(), 0, 0, cv::INTER_NEAREST);
  cv::Mat cut = mask(crop->geometry.box) > 127, inter = cut & (back > 127), uni = cut | (back > 127);
  EXPECT_GT(double(cv::countNonZero(inter)) / cv::countNonZero(uni), 0.97);
}

TEST(CropPixels, EmptyMaskGivesNoCrop) {
  cv::Mat bgr(50, 50, CV_8UC3, cv::Scalar(1, 2, 3));
  cv::Mat mask(50, 50, CV_8UC1, cv::Scalar(0));
  EXPECT_FALSE(crop_for_inpainting(bgr, mask, CropParams{}));
}
