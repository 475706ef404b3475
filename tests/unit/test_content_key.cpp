#include <gtest/gtest.h>
#include <opencv2/core.hpp>

#include "image/content_key.hpp"

using namespace maskmaker;

TEST(ContentKey, PixelsSizeTypeAndScopeAllCount) {
  cv::Mat a(32, 48, CV_8UC3);
  cv::randu(a, 0, 256);
  const ContentKey base = content_key(a);
  EXPECT_FALSE(base.empty());
  EXPECT_EQ(content_key(a.clone()), base);                // same pixels, same key
  EXPECT_EQ(content_key(a, ""), base);                    // the default scope is the empty one
  cv::Mat b = a.clone();
  b.at<cv::Vec3b>(31, 47)[2] ^= 1;                        // one bit of one pixel
  EXPECT_NE(content_key(b), base);
  EXPECT_NE(content_key(a, "17"), base);                  // another tenant
  EXPECT_NE(content_key(a, "17"), content_key(a, "18"));
  EXPECT_EQ(content_key(a, "17"), content_key(a.clone(), "17"));
  // The same bytes read as another shape or type are another image.
  EXPECT_NE(content_key(a.reshape(3, 48)), base);
  EXPECT_NE(content_key(a.reshape(1, 32)), base);
  // A view (not continuous) keys by its pixels, like its copy.
  cv::Mat big(64, 64, CV_8UC3);
  cv::randu(big, 0, 256);
  cv::Mat view = big(cv::Rect(5, 7, 20, 10));
  ASSERT_FALSE(view.isContinuous());
  EXPECT_EQ(content_key(view), content_key(view.clone()));
  // The scope is length-prefixed: moving bytes between the scope and nothing else cannot collide.
  EXPECT_NE(content_key(a, std::string_view("a\0", 2)), content_key(a, "a"));
}

TEST(ContentKey, HashUsesTheDigest) {
  cv::Mat a(4, 4, CV_8UC3, cv::Scalar(1, 2, 3));
  const ContentKey k = content_key(a);
  EXPECT_EQ(ContentKeyHash{}(k), ContentKeyHash{}(content_key(a.clone())));
  EXPECT_TRUE(ContentKey{}.empty());
}
