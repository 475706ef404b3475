// Pre- and post-processing shared by the detectors: letterbox, tensor packing, box mapping, NMS.
#pragma once

#include <array>
#include <vector>

#include <opencv2/core.hpp>

#include "maskmaker/maskmaker.hpp"

namespace maskmaker {

struct LetterboxInfo {
  float scale = 1.f;  // resized = original * scale
  int pad_x = 0, pad_y = 0;  // offset of the resized image inside the target
  cv::Size original, target;
};

// Resizes keeping the aspect ratio so that the image fits `target`, placed top-left or centred, rest = pad.
LetterboxInfo letterbox(const cv::Mat& bgr, cv::Size target, bool centred, uint8_t pad, cv::Mat& out);
// Maps a box from the letterboxed frame back to the original image, clipped to it.
Box unletterbox(const Box& box, const LetterboxInfo& info);
Box clip_box(const Box& box, cv::Size size);

// Packs an 8-bit 3-channel image into planar float CHW: value = (pixel * scale - mean[c]) / std[c],
// channel order BGR or RGB. `dst` must hold 3 * rows * cols floats.
void pack_chw(const cv::Mat& bgr, bool to_rgb, float scale, const std::array<float, 3>& mean,
              const std::array<float, 3>& stdev, float* dst);

// Greedy NMS: indices of kept boxes, highest score first; a box is dropped when its IoU with a kept one > thresh.
std::vector<size_t> nms(const std::vector<Box>& boxes, const std::vector<float>& scores, float iou_thresh);

}  // namespace maskmaker
