#include <algorithm>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "image/exif.hpp"
#include "maskmaker/maskmaker.hpp"
#include "test_support.hpp"

using namespace maskmaker;
namespace fs = std::filesystem;

namespace {
std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
double mean_abs_diff(const cv::Mat& a, const cv::Mat& b) {
  cv::Mat d;
  cv::absdiff(a, b, d);
  cv::Scalar m = cv::mean(d);
  return (m[0] + m[1] + m[2]) / 3.0;
}
}  // namespace

// Every sample decodes to 8-bit BGR of its oriented size (Pillow's exif_transpose sizes).
TEST(Decode, EverySampleDecodesWithOrientedSize) {
  const std::map<std::string, cv::Size> expected = {
      {"alpha_rgba.png", {200, 150}}, {"animated_chi.gif", {320, 240}}, {"animated_iss634.gif", {245, 245}},
      {"bus.jpg", {810, 1080}}, {"bus_gray_DERIVED.jpg", {810, 1080}}, {"darknet_dog_bicycle_truck.jpg", {768, 576}},
      {"darknet_horses.jpg", {773, 512}}, {"darknet_person_dog_horse.jpg", {640, 424}},
      {"exif_orient6_landscape.jpg", {1800, 1200}}, {"exif_orient6_portrait.jpg", {1200, 1800}},
      {"exif_orient8_landscape.jpg", {1800, 1200}}, {"exif_orient8_portrait.jpg", {1200, 1800}},
      {"flower.webp", {480, 360}}, {"gray_hopper.jpg", {128, 128}}, {"hopper.jpg", {128, 128}},
      {"hopper.webp", {128, 128}}, {"hopper_orient6.jpg", {128, 128}}, {"hopper_orient8.jpg", {128, 128}},
      {"large_4656x3492_pigeon_UPSCALED.jpg", {4656, 3492}}, {"phone_3264x1836_exif_orient6.jpg", {1836, 3264}},
      {"pigeon_3000px.jpg", {3000, 2250}}, {"sam_dog.jpg", {800, 534}}, {"sam_groceries.jpg", {800, 534}},
      {"sam_truck.jpg", {1800, 1200}}, {"tiny_4x4.png", {4, 4}}, {"tiny_8x8_exif_gps.jpg", {8, 8}},
      {"zidane.jpg", {1280, 720}}};
  size_t seen = 0;
  for (const auto& entry : fs::directory_iterator(shared_dir() + "/data/samples")) {
    std::string name = entry.path().filename().string();
    SCOPED_TRACE(name);
    auto it = expected.find(name);
    ASSERT_NE(it, expected.end()) << "new sample without an expected size";
    DecodedImage img = load_image_file(entry.path().string());
    EXPECT_EQ(img.bgr.type(), CV_8UC3);
    EXPECT_EQ(img.bgr.size(), it->second);
    ++seen;
  }
  EXPECT_EQ(seen, expected.size());
}

TEST(Decode, ExifOrientationMatchesUprightImage) {
  cv::Mat upright = load_image_file(sample("hopper.jpg")).bgr;
  for (const char* name : {"hopper_orient6.jpg", "hopper_orient8.jpg"}) {
    DecodedImage img = load_image_file(sample(name));
    EXPECT_EQ(img.exif_orientation, std::string(name).find('6') != std::string::npos ? 6 : 8);
    EXPECT_LT(mean_abs_diff(img.bgr, upright), 8.0) << name;  // JPEG noise only
    cv::Mat raw = cv::imread(sample(name), cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION);
    EXPECT_GT(mean_abs_diff(raw, upright), 40.0) << name;  // the stored pixels really are rotated
  }
  DecodedImage phone = load_image_file(sample("phone_3264x1836_exif_orient6.jpg"));
  EXPECT_EQ(phone.stored_width, 3264);
  EXPECT_EQ(phone.stored_height, 1836);
}

TEST(Decode, FormatsAndHeaderSizes) {
  EXPECT_EQ(load_image_file(sample("flower.webp")).format, ImageFormat::WebP);
  EXPECT_EQ(load_image_file(sample("animated_chi.gif")).format, ImageFormat::Gif);
  EXPECT_EQ(load_image_file(sample("alpha_rgba.png")).format, ImageFormat::Png);
  auto bytes = read_file(sample("large_4656x3492_pigeon_UPSCALED.jpg"));
  EXPECT_EQ(read_image_size(bytes), cv::Size(4656, 3492));
  // BMP round trip (OpenCV writes it).
  std::vector<uint8_t> bmp;
  cv::imencode(".bmp", load_image_file(sample("hopper.jpg")).bgr, bmp);
  DecodedImage b = decode_image(bmp);
  EXPECT_EQ(b.format, ImageFormat::Bmp);
  EXPECT_EQ(b.bgr.size(), cv::Size(128, 128));
}

TEST(Decode, ClearErrors) {
  auto code_of = [](std::vector<uint8_t> bytes, const DecodeLimits& limits = {}) {
    try {
      decode_image(bytes, limits);
    } catch (const Error& e) {
      EXPECT_EQ(e.field(), "image");
      return e.code();
    }
    return ErrorCode::Internal;
  };
  EXPECT_EQ(code_of({}), ErrorCode::BadImage);
  EXPECT_EQ(code_of({'<', 'h', 't', 'm', 'l', '>'}), ErrorCode::UnsupportedImage);
  auto jpeg = read_file(sample("bus.jpg"));
  EXPECT_EQ(code_of(std::vector<uint8_t>(jpeg.begin(), jpeg.begin() + 100)), ErrorCode::BadImage);  // header cut
  DecodeLimits small;
  small.max_pixels = 500 * 1000;
  EXPECT_EQ(code_of(jpeg, small), ErrorCode::ImageTooLarge);
  // A PNG header declaring 30000 x 30000 is refused before any pixel is decoded.
  std::vector<uint8_t> bomb = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                               0, 0, 0x75, 0x30, 0, 0, 0x75, 0x30, 8, 2, 0, 0, 0, 0xe9, 0x45, 0x6f, 0xed};
  EXPECT_EQ(code_of(bomb), ErrorCode::ImageTooLarge);
  try {
    decode_image(bomb);
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "image is 30000x30000 = 900000000 pixels, over the limit of 50000000");
  }
}

// The size checked against the limit is libjpeg's own: a sniffer that read FF 00 as a marker segment stepped over
// a hidden SOF that libjpeg resynchronised onto (1.7 kB decoding to 8000x8000); now such a file is refused.
TEST(Decode, JpegSizeIsLibjpegsAndResynchronisingIsRefused) {
  cv::Mat im(16, 16, CV_8UC3, cv::Scalar(10, 200, 30));
  std::vector<uint8_t> honest;
  ASSERT_TRUE(cv::imencode(".jpg", im, honest));
  EXPECT_EQ(read_image_size(honest), cv::Size(16, 16));
  std::vector<uint8_t> hidden(honest.begin() + 2, honest.end() - 2);  // no SOI, no EOI
  const uint8_t sof0[] = {0xFF, 0xC0};
  auto sof = std::search(hidden.begin(), hidden.end(), std::begin(sof0), std::end(sof0));
  ASSERT_NE(sof, hidden.end());
  const size_t at = size_t(sof - hidden.begin());
  hidden[at + 5] = 0x1F; hidden[at + 6] = 0x40;  // height 8000
  hidden[at + 7] = 0x1F; hidden[at + 8] = 0x40;  // width 8000
  const size_t len = hidden.size() + 2;
  std::vector<uint8_t> lie = {0xFF, 0xD8, 0xFF, 0x00, uint8_t(len >> 8), uint8_t(len & 0xFF)};
  lie.insert(lie.end(), hidden.begin(), hidden.end());
  lie.insert(lie.end(), honest.begin() + 2, honest.end());
  EXPECT_EQ(read_image_size(lie), std::nullopt);
  try {
    decode_image(lie);
    ADD_FAILURE() << "decoded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::BadImage);
    EXPECT_STREQ(e.what(), "cannot read the jpeg image header");
  }
}

// BMP as OpenCV reads it: 32-bit signed sizes in a 40-byte header, 16-bit ones in the OS/2 12-byte header, and
// nothing else.
TEST(Decode, BmpHeaderVariants) {
  auto bmp = [](const std::vector<uint8_t>& info) {
    std::vector<uint8_t> b(64, 0);
    b[0] = 'B';
    b[1] = 'M';
    b[10] = uint8_t(14 + info.size());
    std::copy(info.begin(), info.end(), b.begin() + 14);
    return b;
  };
  // OS/2: width 0x1F40 (8000), height 16; a 32-bit read at 18 would see 16 * 65536 + 8000.
  EXPECT_EQ(read_image_size(bmp({12, 0, 0, 0, 0x40, 0x1F, 16, 0, 1, 0, 24, 0})), cv::Size(8000, 16));
  // Windows: width 20, height -30 (top-down).
  EXPECT_EQ(read_image_size(bmp({40, 0, 0, 0, 20, 0, 0, 0, 0xE2, 0xFF, 0xFF, 0xFF, 1, 0, 24, 0})), cv::Size(20, 30));
  EXPECT_EQ(read_image_size(bmp({8, 0, 0, 0, 20, 0, 0, 0, 30, 0, 0, 0})), std::nullopt);  // no such header
}

TEST(Exif, MalformedBlocksFallBackToUpright) {
  // SOI, APP1 "Exif" with a TIFF header whose IFD offset points past the end.
  std::vector<uint8_t> bad = {0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x10, 'E', 'x', 'i', 'f', 0, 0,
                              'I',  'I',  42,   0,    0xFF, 0xFF, 0xFF, 0x7F, 0xFF, 0xD9};
  EXPECT_EQ(jpeg_exif_orientation(bad), 1);
  std::vector<uint8_t> truncated = {0xFF, 0xD8, 0xFF, 0xE1, 0x40, 0x00, 'E', 'x'};
  EXPECT_EQ(jpeg_exif_orientation(truncated), 1);
  EXPECT_EQ(jpeg_exif_orientation(read_file(sample("exif_orient8_portrait.jpg"))), 8);
}

TEST(MaskOps, GrowIsRoundAndExact) {
  cv::Mat m = cv::Mat::zeros(101, 101, CV_8UC1);
  m.at<uint8_t>(50, 50) = 255;
  cv::Mat g = grow_mask(m, 10);
  EXPECT_EQ(g.at<uint8_t>(50, 60), 255);  // distance 10
  EXPECT_EQ(g.at<uint8_t>(50, 61), 0);    // distance 11
  EXPECT_EQ(g.at<uint8_t>(57, 57), 255);  // distance 9.9
  EXPECT_EQ(g.at<uint8_t>(58, 58), 0);    // distance 11.3: round, not square
  EXPECT_EQ(cv::countNonZero(g), 317);    // lattice points within radius 10
  EXPECT_EQ(cv::countNonZero(grow_mask(m, 0)), 1);
  cv::Mat square = cv::Mat::zeros(50, 50, CV_8UC1);
  square(cv::Rect(10, 10, 30, 30)).setTo(255);
  EXPECT_EQ(cv::countNonZero(grow_mask(square, -5)), 20 * 20);  // erosion
  EXPECT_EQ(cv::countNonZero(grow_mask(cv::Mat::zeros(5, 5, CV_8UC1), 10)), 0);
}

TEST(MaskOps, InvertAndFeather) {
  cv::Mat m = cv::Mat::zeros(20, 40, CV_8UC1);
  m(cv::Rect(0, 0, 10, 20)).setTo(255);
  cv::Mat inv = invert_mask(m);
  EXPECT_EQ(cv::countNonZero(inv), 30 * 20);
  cv::Mat f = feather_mask(m, 4);
  EXPECT_EQ(f.at<uint8_t>(5, 9), 255);
  // Monotone ramp over 4 px outside: 204, 153, 102, 51, then 0.
  EXPECT_EQ(f.at<uint8_t>(5, 10), 204);
  EXPECT_EQ(f.at<uint8_t>(5, 11), 153);
  EXPECT_EQ(f.at<uint8_t>(5, 12), 102);
  EXPECT_EQ(f.at<uint8_t>(5, 13), 51);
  EXPECT_EQ(f.at<uint8_t>(5, 14), 0);
}

TEST(Prompt, SplitTrimsMergesAndDropsEmpty) {
  EXPECT_EQ(split_prompt("dog, bicycle"), (std::vector<std::string>{"dog", "bicycle"}));
  EXPECT_EQ(split_prompt("  White   Horse ,, white horse, ,Dog "), (std::vector<std::string>{"white horse", "dog"}));
  EXPECT_TRUE(split_prompt(" , ,, ").empty());
  EXPECT_TRUE(split_prompt("").empty());
}

TEST(Params, RangesAreChecked) {
  MaskParams p;
  EXPECT_NO_THROW(validate(p));
  p.confidence_thresh = 1.5f;
  try {
    validate(p);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.field(), "confidence_thresh");
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
  }
  p = MaskParams{};
  p.grow_mask = 101;
  EXPECT_THROW(validate(p), Error);
}
