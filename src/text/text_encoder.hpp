// Text embeddings for open-vocabulary detection: phrase -> L2-normalised vector.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/lru_cache.hpp"
#include "runtime/ort_runtime.hpp"
#include "text/clip_tokenizer.hpp"

namespace maskmaker {

using Embedding = std::vector<float>;

class TextEmbedder {
 public:
  virtual ~TextEmbedder() = default;
  // One L2-normalised vector of dim() floats per phrase, in order. Thread-safe.
  virtual std::vector<Embedding> embed(const std::vector<std::string>& phrases) = 0;
  virtual size_t dim() const = 0;
  virtual uint64_t cache_hits() const { return 0; }
  virtual uint64_t cache_misses() const { return 0; }
};

// The CLIP text tower (clip-as-service ViT-B-32 textual.onnx contract): `input` [N,77] token ids, int32 or
// int64 as the model declares -> [N,D], not normalised. The phrases of a call that are not cached run as one
// batch (in chunks when the model fixes the batch size); results are normalised and cached per phrase.
class ClipTextEncoder final : public TextEmbedder {
 public:
  ClipTextEncoder(const std::string& model_path, std::shared_ptr<const ClipTokenizer> tokenizer,
                  const rt::SessionConfig& config, size_t cache_entries = 1024);

  std::vector<Embedding> embed(const std::vector<std::string>& phrases) override;
  size_t dim() const override { return dim_; }
  uint64_t cache_hits() const override { return cache_.hits(); }
  uint64_t cache_misses() const override { return cache_.misses(); }
  size_t cache_size() const { return cache_.size(); }
  uint64_t batches_run() const { return batches_; }  // model runs so far (for tests and metrics)
  const ClipTokenizer& tokenizer() const { return *tokenizer_; }

 private:
  std::vector<Embedding> run(const std::vector<std::string>& phrases);

  std::string path_;
  std::shared_ptr<const ClipTokenizer> tokenizer_;
  std::unique_ptr<Ort::Session> session_;
  std::string input_name_, output_name_;
  bool int64_ids_ = false;
  int64_t fixed_batch_ = -1;  // > 0 when the export fixes N
  size_t dim_ = 0;
  LruCache<std::string, Embedding> cache_;
  std::atomic<uint64_t> batches_{0};
};

// Scales v to unit length (left as it is when its norm is 0).
void l2_normalise(std::vector<float>& v);

}  // namespace maskmaker
