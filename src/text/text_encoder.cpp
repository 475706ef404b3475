#include "text/text_encoder.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <unordered_map>

#include "maskmaker/maskmaker.hpp"

namespace maskmaker {

void l2_normalise(std::vector<float>& v) {
  double sum = 0;
  for (float x : v) sum += double(x) * x;
  if (sum <= 0) return;
  const float inv = float(1.0 / std::sqrt(sum));
  for (float& x : v) x *= inv;
}

ClipTextEncoder::ClipTextEncoder(const std::string& model_path, std::shared_ptr<const ClipTokenizer> tokenizer,
                                 const rt::SessionConfig& config, size_t cache_entries)
    : path_(model_path), tokenizer_(std::move(tokenizer)), session_(rt::open_session(model_path, config)),
      cache_(cache_entries) {
  if (!tokenizer_) throw Error(ErrorCode::ModelError, "text encoder " + path_ + ": no tokenizer");
  auto in = rt::input_specs(*session_);
  auto out = rt::output_specs(*session_);
  if (in.size() != 1 || out.empty())
    throw Error(ErrorCode::ModelError, "text encoder " + path_ + ": expected one input (token ids) and an output");
  const auto& ids = in[0];
  if (ids.shape.size() != 2 || (ids.shape[1] > 0 && size_t(ids.shape[1]) != ClipTokenizer::kContextLength))
    throw Error(ErrorCode::ModelError, "text encoder " + path_ + ": input '" + ids.name + "' should be [N,77]");
  if (ids.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64) int64_ids_ = true;
  else if (ids.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32)
    throw Error(ErrorCode::ModelError, "text encoder " + path_ + ": input '" + ids.name + "' should be int32 or int64");
  input_name_ = ids.name;
  fixed_batch_ = ids.shape[0] > 0 ? ids.shape[0] : -1;
  const auto& o = out[0];
  if (o.shape.size() != 2 || o.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
    throw Error(ErrorCode::ModelError, "text encoder " + path_ + ": output '" + o.name + "' should be float [N,D]");
  output_name_ = o.name;
  if (o.shape[1] > 0) {
    dim_ = size_t(o.shape[1]);
  } else {
    dim_ = run({" "}).at(0).size();  // dynamic width: ask the model once
  }
}

std::vector<Embedding> ClipTextEncoder::run(const std::vector<std::string>& phrases) {
  std::vector<Embedding> result;
  const size_t L = ClipTokenizer::kContextLength;
  const size_t chunk = fixed_batch_ > 0 ? size_t(fixed_batch_) : std::max<size_t>(phrases.size(), 1);
  for (size_t begin = 0; begin < phrases.size(); begin += chunk) {
    const size_t n = std::min(chunk, phrases.size() - begin);
    const size_t rows = fixed_batch_ > 0 ? chunk : n;  // a fixed batch is filled up with blank rows
    std::vector<int64_t> ids64;
    std::vector<int32_t> ids32;
    std::vector<int32_t> blank = tokenizer_->tokenize(" ");
    for (size_t r = 0; r < rows; ++r) {
      std::vector<int32_t> t = r < n ? tokenizer_->tokenize(phrases[begin + r]) : blank;
      if (int64_ids_) ids64.insert(ids64.end(), t.begin(), t.end());
      else ids32.insert(ids32.end(), t.begin(), t.end());
    }
    std::array<int64_t, 2> shape{int64_t(rows), int64_t(L)};
    Ort::Value input = int64_ids_
        ? Ort::Value::CreateTensor<int64_t>(rt::cpu_memory(), ids64.data(), ids64.size(), shape.data(), 2)
        : Ort::Value::CreateTensor<int32_t>(rt::cpu_memory(), ids32.data(), ids32.size(), shape.data(), 2);
    const char* in_names[] = {input_name_.c_str()};
    const char* out_names[] = {output_name_.c_str()};
    std::vector<Ort::Value> outputs;
    try {
      outputs = session_->Run(Ort::RunOptions{nullptr}, in_names, &input, 1, out_names, 1);
    } catch (const Ort::Exception& e) {
      throw Error(ErrorCode::ModelError, "text encoder " + path_ + " failed: " + e.what());
    }
    ++batches_;
    auto oshape = outputs[0].GetTensorTypeAndShapeInfo().GetShape();
    if (oshape.size() != 2 || oshape[0] != int64_t(rows) || oshape[1] <= 0 || (dim_ && size_t(oshape[1]) != dim_))
      throw Error(ErrorCode::ModelError, "text encoder " + path_ + ": unexpected output shape");
    const float* data = outputs[0].GetTensorData<float>();
    const size_t d = size_t(oshape[1]);
    for (size_t r = 0; r < n; ++r) {
      Embedding e(data + r * d, data + (r + 1) * d);
      l2_normalise(e);
      result.push_back(std::move(e));
    }
  }
  return result;
}

std::vector<Embedding> ClipTextEncoder::embed(const std::vector<std::string>& phrases) {
  std::vector<Embedding> out(phrases.size());
  std::vector<std::string> missing;               // distinct phrases to run
  std::unordered_map<std::string, size_t> where;  // phrase -> index in `missing`
  std::vector<size_t> pending;                    // indices into `out` waiting for a run
  for (size_t i = 0; i < phrases.size(); ++i) {
    if (auto hit = cache_.get(phrases[i])) { out[i] = std::move(*hit); continue; }
    if (where.emplace(phrases[i], missing.size()).second) missing.push_back(phrases[i]);
    pending.push_back(i);
  }
  if (missing.empty()) return out;
  std::vector<Embedding> computed = run(missing);
  for (size_t k = 0; k < missing.size(); ++k) cache_.put(missing[k], computed[k]);
  for (size_t i : pending) out[i] = computed[where.at(phrases[i])];
  return out;
}

}  // namespace maskmaker
