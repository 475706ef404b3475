// The CLIP byte-level BPE tokenizer (behaves as openai/CLIP's simple_tokenizer with ftfy left out):
// HTML entities unescaped (twice), whitespace collapsed and trimmed, lower-cased, split into words,
// contractions, single digits and punctuation runs, each piece BPE-encoded over the 49,408-entry vocabulary.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace maskmaker {

class ClipTokenizer {
 public:
  static constexpr int32_t kStartToken = 49406;  // <|startoftext|>
  static constexpr int32_t kEndToken = 49407;    // <|endoftext|>
  static constexpr size_t kContextLength = 77;

  // Reads bpe_simple_vocab_16e6.txt.gz (gzip, or the plain text). Throws Error(ModelError) naming the file.
  explicit ClipTokenizer(const std::string& vocab_path);

  // BPE token ids of the text, without start/end tokens and without truncation.
  std::vector<int32_t> encode(std::string_view text) const;
  // The model input: start token, ids, end token, zero-padded to 77. Longer input is cut to 77 entries and
  // its last entry set to the end token.
  std::vector<int32_t> tokenize(std::string_view text) const;

  size_t vocab_size() const { return decoder_.size(); }
  // The vocabulary entry of an id ("horse</w>"), for tests and diagnostics; "" when out of range.
  const std::string& token_text(int32_t id) const;

  // The normalisation steps, exposed for tests. Input and output are UTF-8 (invalid bytes become U+FFFD).
  static std::string clean(std::string_view text);                    // unescape, whitespace, lower-case
  static std::string html_unescape(std::string_view text);            // Python's html.unescape
  static std::string lower(std::string_view text);                    // Python's str.lower()
  static std::vector<std::string> split_words(std::string_view cleaned);  // the reference regex's findall

 private:
  std::vector<int32_t> bpe_ids(const std::string& word) const;  // cached

  std::unordered_map<std::string, int32_t> encoder_;
  std::vector<std::string> decoder_;
  std::unordered_map<std::string, int32_t> ranks_;  // "first second" -> merge rank
  std::string byte_encoder_[256];                   // byte -> its printable stand-in (UTF-8)

  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace maskmaker
