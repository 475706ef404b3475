// Bounds the service applies to one request whatever it asks for.
#include <gtest/gtest.h>

#include "service/mask_service.hpp"

using namespace maskmaker;
using namespace maskmaker::service;

TEST(InstanceBudget, LargePhotosGetFewerInstancesSmallOnesAreUntouched) {
  MaskParams p;
  p.max_detections = 100;
  bound_instances_by_pixels(p, 640 * 480);
  EXPECT_EQ(p.max_detections, 100);  // a usual photo: what was asked

  p.max_detections = 1000;  // the native API's maximum, on a 50 MP photo: 10 masks of 50 MP, not 1000
  bound_instances_by_pixels(p, 50'000'000);
  EXPECT_EQ(p.max_detections, int(kInstanceMaskPixelBudget / 50'000'000));
  EXPECT_LE(int64_t(p.max_detections) * 50'000'000, kInstanceMaskPixelBudget);

  p.max_detections = 100;  // larger than the whole budget: one instance still answers
  bound_instances_by_pixels(p, size_t(kInstanceMaskPixelBudget) * 2);
  EXPECT_EQ(p.max_detections, 1);

  p.max_detections = 0;  // 0 stays 0 (no instance asked)
  bound_instances_by_pixels(p, 640 * 480);
  EXPECT_EQ(p.max_detections, 0);
}
