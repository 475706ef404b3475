#include <gtest/gtest.h>

#include "image/geometry.hpp"

using namespace maskmaker;

TEST(Letterbox, TopLeftKeepsAspectAndPads) {
  cv::Mat img(200, 400, CV_8UC3, cv::Scalar(10, 20, 30));
  cv::Mat out;
  LetterboxInfo info = letterbox(img, {416, 416}, false, 114, out);
  EXPECT_FLOAT_EQ(info.scale, 416.f / 400.f);
  EXPECT_EQ(info.pad_x, 0);
  EXPECT_EQ(info.pad_y, 0);
  EXPECT_EQ(out.size(), cv::Size(416, 416));
  EXPECT_EQ(out.at<cv::Vec3b>(0, 0), cv::Vec3b(10, 20, 30));
  EXPECT_EQ(out.at<cv::Vec3b>(207, 415), cv::Vec3b(10, 20, 30));  // last resized row is 208 - 1
  EXPECT_EQ(out.at<cv::Vec3b>(208, 0), cv::Vec3b(114, 114, 114));
}

TEST(Letterbox, CentredPadsBothSides) {
  cv::Mat img(320, 640, CV_8UC3, cv::Scalar(1, 2, 3));
  cv::Mat out;
  LetterboxInfo info = letterbox(img, {640, 640}, true, 114, out);
  EXPECT_FLOAT_EQ(info.scale, 1.f);
  EXPECT_EQ(info.pad_x, 0);
  EXPECT_EQ(info.pad_y, 160);
  EXPECT_EQ(out.at<cv::Vec3b>(159, 10), cv::Vec3b(114, 114, 114));
  EXPECT_EQ(out.at<cv::Vec3b>(160, 10), cv::Vec3b(1, 2, 3));
  EXPECT_EQ(out.at<cv::Vec3b>(479, 10), cv::Vec3b(1, 2, 3));
  EXPECT_EQ(out.at<cv::Vec3b>(480, 10), cv::Vec3b(114, 114, 114));
  Box back = unletterbox(Box{100, 260, 200, 360}, info);
  EXPECT_FLOAT_EQ(back.x1, 100);
  EXPECT_FLOAT_EQ(back.y1, 100);
  EXPECT_FLOAT_EQ(back.x2, 200);
  EXPECT_FLOAT_EQ(back.y2, 200);
}

TEST(Letterbox, UnletterboxScalesAndClips) {
  cv::Mat img(1000, 500, CV_8UC3), out;
  LetterboxInfo info = letterbox(img, {416, 416}, false, 114, out);
  EXPECT_FLOAT_EQ(info.scale, 0.416f);
  Box b = unletterbox(Box{41.6f, 83.2f, 300.f, 500.f}, info);
  EXPECT_NEAR(b.x1, 100.f, 1e-3);
  EXPECT_NEAR(b.y1, 200.f, 1e-3);
  EXPECT_FLOAT_EQ(b.x2, 500.f);   // clipped to the width
  EXPECT_FLOAT_EQ(b.y2, 1000.f);  // clipped to the height
}

TEST(PackChw, RgbOrderMeanAndStd) {
  cv::Mat img(1, 2, CV_8UC3);
  img.at<cv::Vec3b>(0, 0) = {10, 20, 30};   // B G R
  img.at<cv::Vec3b>(0, 1) = {40, 50, 60};
  std::vector<float> out(6);
  pack_chw(img, true, 1.f, {1, 2, 3}, {2, 2, 2}, out.data());
  EXPECT_FLOAT_EQ(out[0], (30 - 1) / 2.f);  // R plane
  EXPECT_FLOAT_EQ(out[1], (60 - 1) / 2.f);
  EXPECT_FLOAT_EQ(out[2], (20 - 2) / 2.f);  // G plane
  EXPECT_FLOAT_EQ(out[4], (10 - 3) / 2.f);  // B plane
  pack_chw(img, false, 0.5f, {0, 0, 0}, {1, 1, 1}, out.data());
  EXPECT_FLOAT_EQ(out[0], 5.f);   // B first
  EXPECT_FLOAT_EQ(out[5], 30.f);  // R last
}

TEST(Nms, KeepsBestAndSuppressesOverlaps) {
  std::vector<Box> boxes = {{0, 0, 10, 10}, {1, 1, 11, 11}, {20, 20, 30, 30}, {0, 0, 10, 5}};
  std::vector<float> scores = {0.9f, 0.95f, 0.5f, 0.8f};
  // IoU(0,1) = 81 / 119 = 0.68; IoU(1,3) = 36 / 114 = 0.32; IoU(0,3) = 0.5
  auto kept = nms(boxes, scores, 0.45f);
  ASSERT_EQ(kept.size(), 3u);
  EXPECT_EQ(kept[0], 1u);
  EXPECT_EQ(kept[1], 3u);
  EXPECT_EQ(kept[2], 2u);
  EXPECT_EQ(nms(boxes, scores, 0.2f).size(), 2u);   // 3 overlaps 1 at 0.32 > 0.2
  EXPECT_EQ(nms(boxes, scores, 1.0f).size(), 4u);   // nothing suppressed
  EXPECT_NEAR(iou(boxes[0], boxes[1]), 81.f / 119.f, 1e-6);
  EXPECT_FLOAT_EQ(iou(boxes[0], boxes[2]), 0.f);
}

#include "runtime/lru_cache.hpp"

TEST(LruCache, EvictsLeastRecentlyUsedByTotalCost) {
  maskmaker::LruCache<int, std::string> cache(10);
  cache.put(1, "a", 4);
  cache.put(2, "b", 4);
  ASSERT_TRUE(cache.get(1).has_value());  // 1 is now the most recent
  cache.put(3, "c", 4);                   // 12 > 10: the least recent (2) goes
  EXPECT_FALSE(cache.get(2).has_value());
  EXPECT_EQ(*cache.get(1), "a");
  EXPECT_EQ(*cache.get(3), "c");
  EXPECT_EQ(cache.total_cost(), 8u);
  cache.put(4, "too big", 11);            // larger than the whole budget: not kept, nothing evicted
  EXPECT_FALSE(cache.get(4).has_value());
  EXPECT_EQ(cache.size(), 2u);
  cache.put(1, "a2", 9);                  // re-put with a new cost: the other entry must go
  EXPECT_EQ(*cache.get(1), "a2");
  EXPECT_FALSE(cache.get(3).has_value());
  EXPECT_EQ(cache.total_cost(), 9u);
  maskmaker::LruCache<int, int> counted(2);  // default cost 1: bounded by entries
  counted.put(1, 1);
  counted.put(2, 2);
  counted.put(3, 3);
  EXPECT_EQ(counted.size(), 2u);
  EXPECT_FALSE(counted.get(1).has_value());
}
