#include "segment/sam.hpp"

#include <algorithm>
#include <cmath>

#include <opencv2/imgproc.hpp>

#include "image/geometry.hpp"

namespace maskmaker {

SamSegmenter::SamSegmenter(const std::string& encoder_path, const std::string& decoder_path,
                           const rt::SessionConfig& config)
    : encoder_(rt::open_session(encoder_path, config)), decoder_(rt::open_session(decoder_path, config)) {
  auto ein = rt::input_specs(*encoder_);
  auto eout = rt::output_specs(*encoder_);
  if (ein.size() != 1 || eout.empty() || ein[0].shape.size() != 4)
    throw Error(ErrorCode::ModelError, "segmenter encoder " + encoder_path + ": expected one [1,3,S,S] input");
  enc_in_ = ein[0].name;
  enc_out_ = eout[0].name;
  if (ein[0].shape[3] > 0) side_ = int(ein[0].shape[3]);
  // orig_im_size is optional: it only drives the graph's full-frame upsampling, which a decoder cut to
  // low_res_masks (scripts/make_int8_models.py) no longer has.
  const char* required[] = {"image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input"};
  for (auto& spec : rt::input_specs(*decoder_)) dec_inputs_.push_back(spec.name);
  for (const char* name : required) {
    if (std::find(dec_inputs_.begin(), dec_inputs_.end(), name) == dec_inputs_.end())
      throw Error(ErrorCode::ModelError, "segmenter decoder " + decoder_path + ": missing input '" + name +
                                             "' (expected the SAM ONNX decoder contract)");
  }
  for (auto& spec : rt::output_specs(*decoder_)) has_low_res_ |= spec.name == "low_res_masks";
  has_window_ = std::find(dec_inputs_.begin(), dec_inputs_.end(), "low_res_window") != dec_inputs_.end();
  if (!has_low_res_) throw Error(ErrorCode::ModelError, "segmenter decoder " + decoder_path + ": no low_res_masks output");
}

std::shared_ptr<const ImageEmbedding> SamSegmenter::encode(const cv::Mat& bgr) {
  auto emb = std::make_shared<ImageEmbedding>();
  emb->original = bgr.size();
  emb->scale = float(side_) / std::max(bgr.cols, bgr.rows);
  int w = std::clamp(int(std::lround(bgr.cols * emb->scale)), 1, side_);
  int h = std::clamp(int(std::lround(bgr.rows * emb->scale)), 1, side_);
  cv::Mat resized;
  cv::resize(bgr, resized, cv::Size(w, h), 0, 0, cv::INTER_LINEAR);
  // Normalised, zero-padded right and bottom (zero after normalisation, as SAM pads).
  const size_t plane = size_t(side_) * side_;
  std::vector<float> blob(3 * plane, 0.f);
  std::vector<float> packed(size_t(3) * w * h);
  pack_chw(resized, /*to_rgb=*/true, 1.f, {123.675f, 116.28f, 103.53f}, {58.395f, 57.12f, 57.375f}, packed.data());
  for (int c = 0; c < 3; ++c) {
    for (int y = 0; y < h; ++y) {
      std::copy_n(packed.data() + size_t(c) * w * h + size_t(y) * w, w, blob.data() + c * plane + size_t(y) * side_);
    }
  }
  std::array<int64_t, 4> shape{1, 3, side_, side_};
  Ort::Value input = Ort::Value::CreateTensor<float>(rt::cpu_memory(), blob.data(), blob.size(), shape.data(), 4);
  const char* in_names[] = {enc_in_.c_str()};
  const char* out_names[] = {enc_out_.c_str()};
  auto outputs = encoder_->Run(Ort::RunOptions{nullptr}, in_names, &input, 1, out_names, 1);
  auto info = outputs[0].GetTensorTypeAndShapeInfo();
  emb->shape = info.GetShape();
  const float* data = outputs[0].GetTensorData<float>();
  emb->data.assign(data, data + info.GetElementCount());
  return emb;
}

cv::Mat SamSegmenter::segment_box(const ImageEmbedding& emb, const Box& box, float* predicted_iou) {
  return segment_box(emb, box, {}, {}, predicted_iou);
}

cv::Mat SamSegmenter::segment_box(const ImageEmbedding& emb, const Box& box, const std::vector<cv::Point2f>& points,
                                  const std::vector<bool>& positive, float* predicted_iou) {
  const float s = emb.scale;
  std::vector<float> coords{box.x1 * s, box.y1 * s, box.x2 * s, box.y2 * s};
  std::vector<float> labels{2.f, 3.f};
  for (size_t i = 0; i < points.size() && i < positive.size(); ++i) {
    coords.push_back(points[i].x * s);
    coords.push_back(points[i].y * s);
    labels.push_back(positive[i] ? 1.f : 0.f);
  }
  std::vector<float> mask_input(256 * 256, 0.f);
  float has_mask = 0.f;
  // The graph upsamples to orig_im_size; we only read low_res_masks and upsample the box's region ourselves,
  // so ask for the smallest frame to keep the in-graph upsampling cheap.
  std::array<float, 2> orig_size{float(std::max(1, int(emb.original.height * s / 4))),
                                 float(std::max(1, int(emb.original.width * s / 4)))};

  // The region of the original image the mask is computed in: the box plus a margin (SAM masks rarely leave
  // their box).
  const cv::Size orig = emb.original;
  cv::Mat mask = cv::Mat::zeros(orig, CV_8UC1);
  const float margin = roi_margin_ * std::max(box.width(), box.height()) + 8.f;
  cv::Rect roi(cv::Point(std::max(0, int(std::floor(box.x1 - margin))), std::max(0, int(std::floor(box.y1 - margin)))),
               cv::Point(std::min(orig.width, int(std::ceil(box.x2 + margin))),
                         std::min(orig.height, int(std::ceil(box.y2 + margin)))));
  if (roi.empty()) return mask;

  // The low-res logits cover the padded encoder square at 4x the embedding grid. Output pixel x samples them at
  // (x + 0.5) * s * full_w / side - 0.5 (bilinear). A decoder with a low_res_window input upscales only the grid
  // cells around the region (one cell of slack, so no sample reaches the crop's edge) and returns just those.
  const int grid_h = emb.shape.size() == 4 ? int(emb.shape[2]) : 64, grid_w = emb.shape.size() == 4 ? int(emb.shape[3]) : 64;
  const float fx = s * float(4 * grid_w) / side_, fy = s * float(4 * grid_h) / side_;
  std::array<int64_t, 4> window{0, 0, grid_h, grid_w};  // top, left, bottom, right in grid cells
  if (has_window_ && use_window_) {
    // Low-res pixel p lies in grid cell p / 4.
    window[0] = std::clamp<int64_t>(int64_t(std::floor((roi.y * fy - 0.5f) / 4.f)) - 1, 0, grid_h - 1);
    window[1] = std::clamp<int64_t>(int64_t(std::floor((roi.x * fx - 0.5f) / 4.f)) - 1, 0, grid_w - 1);
    window[2] = std::clamp<int64_t>(int64_t(std::ceil(((roi.y + roi.height) * fy + 0.5f) / 4.f)) + 1, window[0] + 1, grid_h);
    window[3] = std::clamp<int64_t>(int64_t(std::ceil(((roi.x + roi.width) * fx + 0.5f) / 4.f)) + 1, window[1] + 1, grid_w);
  }
  std::array<int64_t, 1> four{4};

  const int64_t n_points = int64_t(labels.size());
  std::array<int64_t, 3> coord_shape{1, n_points, 2};
  std::array<int64_t, 2> label_shape{1, n_points};
  std::array<int64_t, 4> mask_shape{1, 1, 256, 256};
  std::array<int64_t, 1> one{1};
  std::array<int64_t, 1> two{2};
  auto& mem = rt::cpu_memory();
  std::vector<Ort::Value> inputs;
  std::vector<const char*> names;
  for (const auto& name : dec_inputs_) {
    names.push_back(name.c_str());
    if (name == "image_embeddings")
      inputs.push_back(Ort::Value::CreateTensor<float>(mem, const_cast<float*>(emb.data.data()), emb.data.size(),
                                                       emb.shape.data(), emb.shape.size()));
    else if (name == "point_coords")
      inputs.push_back(Ort::Value::CreateTensor<float>(mem, coords.data(), coords.size(), coord_shape.data(), 3));
    else if (name == "point_labels")
      inputs.push_back(Ort::Value::CreateTensor<float>(mem, labels.data(), labels.size(), label_shape.data(), 2));
    else if (name == "mask_input")
      inputs.push_back(Ort::Value::CreateTensor<float>(mem, mask_input.data(), mask_input.size(), mask_shape.data(), 4));
    else if (name == "has_mask_input")
      inputs.push_back(Ort::Value::CreateTensor<float>(mem, &has_mask, 1, one.data(), 1));
    else if (name == "orig_im_size")
      inputs.push_back(Ort::Value::CreateTensor<float>(mem, orig_size.data(), 2, two.data(), 1));
    else if (name == "low_res_window")
      inputs.push_back(Ort::Value::CreateTensor<int64_t>(mem, window.data(), 4, four.data(), 1));
    else
      throw Error(ErrorCode::ModelError, "segmenter decoder has an unexpected input '" + name + "'");
  }
  const char* out_names[] = {"iou_predictions", "low_res_masks"};
  auto outputs = decoder_->Run(Ort::RunOptions{nullptr}, names.data(), inputs.data(), inputs.size(), out_names, 2);
  if (predicted_iou) *predicted_iou = outputs[0].GetTensorData<float>()[0];
  auto lshape = outputs[1].GetTensorTypeAndShapeInfo().GetShape();
  const int lh = int(lshape[2]), lw = int(lshape[3]);
  const float off_y = has_window_ ? 4.f * float(window[0]) : 0.f, off_x = has_window_ ? 4.f * float(window[1]) : 0.f;
  if (has_window_ && (lh != 4 * (window[2] - window[0]) || lw != 4 * (window[3] - window[1])))
    throw Error(ErrorCode::ModelError, "segmenter decoder: low_res_masks does not match low_res_window");
  if (!has_window_ && (lh != 4 * grid_h || lw != 4 * grid_w))
    throw Error(ErrorCode::ModelError, "segmenter decoder: low_res_masks is not 4x the embedding grid");
  cv::Mat low(lh, lw, CV_32F, const_cast<float*>(outputs[1].GetTensorData<float>()));

  // SAM's post-processing (upsample to the padded square, crop the image part, resize to the original) done in
  // one step per pixel of the region, which is what the full-frame version computes there.
  cv::Mat map_x(1, roi.width, CV_32F), map_y(roi.height, 1, CV_32F);
  for (int x = 0; x < roi.width; ++x) map_x.at<float>(0, x) = (roi.x + x + 0.5f) * fx - 0.5f - off_x;
  for (int y = 0; y < roi.height; ++y) map_y.at<float>(y, 0) = (roi.y + y + 0.5f) * fy - 0.5f - off_y;
  cv::Mat mx, my;
  cv::repeat(map_x, roi.height, 1, mx);
  cv::repeat(map_y, 1, roi.width, my);
  cv::Mat logits;
  cv::remap(low, logits, mx, my, cv::INTER_LINEAR, cv::BORDER_REPLICATE);
  cv::Mat region = mask(roi);
  region.setTo(255, logits > 0.f);
  return mask;
}

}  // namespace maskmaker
