#include "text/clip_tokenizer.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

#include <zlib.h>

#include "maskmaker/maskmaker.hpp"
#include "text/clip_unicode.hpp"

namespace maskmaker {
namespace {

namespace cu = clip_unicode;
using Text = std::u32string;

// ---------------------------------------------------------------- UTF-8
Text decode_utf8(std::string_view s) {
  Text out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    char32_t cp = 0;
    size_t len = 0;
    if (c < 0x80) { cp = c; len = 1; }
    else if ((c & 0xE0) == 0xC0) { cp = c & 0x1F; len = 2; }
    else if ((c & 0xF0) == 0xE0) { cp = c & 0x0F; len = 3; }
    else if ((c & 0xF8) == 0xF0) { cp = c & 0x07; len = 4; }
    bool ok = len > 0 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) ok = false;
      else cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid too.
    if (ok && ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
               (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF))
      ok = false;
    if (!ok) { out.push_back(0xFFFD); ++i; continue; }
    out.push_back(cp);
    i += len;
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) out += char(cp);
  else if (cp < 0x800) { out += char(0xC0 | (cp >> 6)); out += char(0x80 | (cp & 0x3F)); }
  else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12)); out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18)); out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F));
  }
}

std::string encode_utf8(const Text& t) {
  std::string out;
  out.reserve(t.size());
  for (char32_t cp : t) append_utf8(out, cp);
  return out;
}

// ---------------------------------------------------------------- character classes
bool in_ranges(const cu::CodeRange* ranges, size_t n, char32_t cp) {
  const cu::CodeRange* end = ranges + n;
  const cu::CodeRange* it = std::upper_bound(ranges, end, uint32_t(cp),
                                             [](uint32_t v, const cu::CodeRange& r) { return v < r.lo; });
  return it != ranges && cp <= (it - 1)->hi;
}
bool is_letter(char32_t cp) { return in_ranges(cu::kLetters, cu::kLettersCount, cp); }
bool is_number(char32_t cp) { return in_ranges(cu::kNumbers, cu::kNumbersCount, cp); }
bool is_cased(char32_t cp) { return in_ranges(cu::kCased, cu::kCasedCount, cp); }
bool is_case_ignorable(char32_t cp) { return in_ranges(cu::kCaseIgnorable, cu::kCaseIgnorableCount, cp); }

// The regex module's \s (Unicode White_Space).
bool is_regex_space(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}
// Python's str.isspace(), which str.strip() uses: \s plus the four information separators.
bool is_py_space(char32_t cp) { return is_regex_space(cp) || (cp >= 0x1C && cp <= 0x1F); }

const cu::LowerEntry* find_code(const cu::LowerEntry* table, size_t n, char32_t cp) {
  const cu::LowerEntry* end = table + n;
  const cu::LowerEntry* it =
      std::lower_bound(table, end, uint32_t(cp), [](const cu::LowerEntry& e, uint32_t v) { return e.code < v; });
  return it != end && it->code == cp ? it : nullptr;
}

const char* find_entity(const std::string& name) {
  const cu::EntityEntry* end = cu::kEntities + cu::kEntitiesCount;
  const cu::EntityEntry* it = std::lower_bound(
      cu::kEntities, end, name, [](const cu::EntityEntry& e, const std::string& v) { return std::strcmp(e.name, v.c_str()) < 0; });
  return it != end && name == it->name ? it->utf8 : nullptr;
}

Text strip_py(const Text& t) {
  size_t b = 0, e = t.size();
  while (b < e && is_py_space(t[b])) ++b;
  while (e > b && is_py_space(t[e - 1])) --e;
  return t.substr(b, e - b);
}

// ---------------------------------------------------------------- html.unescape
bool is_digit(char32_t c) { return c >= '0' && c <= '9'; }
bool is_hex(char32_t c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// What the numeric reference &#NUM; stands for, as Python's html module decides.
Text numeric_charref(uint64_t num) {
  if (num < 0x100)
    if (const cu::LowerEntry* e = find_code(cu::kInvalidCharrefs, cu::kInvalidCharrefsCount, char32_t(num)))
      return decode_utf8(e->utf8);
  if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return Text(1, 0xFFFD);
  if (std::binary_search(cu::kInvalidCodepoints, cu::kInvalidCodepoints + cu::kInvalidCodepointsCount, uint32_t(num)))
    return Text();
  return Text(1, char32_t(num));
}

Text unescape(const Text& s) {
  if (s.find(U'&') == Text::npos) return s;
  Text out;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] != U'&') { out.push_back(s[i++]); continue; }
    size_t j = i + 1;
    // &#123; or &#x7b; (the ';' is optional)
    if (j < s.size() && s[j] == U'#') {
      bool hex = j + 1 < s.size() && (s[j + 1] == U'x' || s[j + 1] == U'X') && j + 2 < s.size() && is_hex(s[j + 2]);
      bool dec = j + 1 < s.size() && is_digit(s[j + 1]);
      if (hex || dec) {
        size_t k = hex ? j + 2 : j + 1;
        uint64_t num = 0;
        const uint64_t cap = uint64_t(1) << 40;  // anything past U+10FFFF gives U+FFFD; saturate
        while (k < s.size() && (hex ? is_hex(s[k]) : is_digit(s[k]))) {
          char32_t c = s[k];
          unsigned d = is_digit(c) ? unsigned(c - '0') : unsigned((c | 0x20) - 'a' + 10);
          num = std::min(cap, num * (hex ? 16 : 10) + d);
          ++k;
        }
        if (k < s.size() && s[k] == U';') ++k;
        out += numeric_charref(num);
        i = k;
        continue;
      }
      out.push_back(s[i++]);  // "&#" with no digits: left as it is
      continue;
    }
    // &name; : up to 32 characters other than tab, newline, form feed, space, <, &, #, ;
    size_t k = j;
    auto name_char = [](char32_t c) {
      return c != U'\t' && c != U'\n' && c != U'\f' && c != U' ' && c != U'<' && c != U'&' && c != U'#' && c != U';';
    };
    while (k < s.size() && k - j < 32 && name_char(s[k])) ++k;
    if (k == j) { out.push_back(s[i++]); continue; }
    if (k < s.size() && s[k] == U';') ++k;
    Text name_text = s.substr(j, k - j);
    std::string name = encode_utf8(name_text);
    if (const char* v = find_entity(name)) {
      out += decode_utf8(v);
    } else {
      // The longest prefix (at least two characters) that is an entity, the rest kept.
      bool found = false;
      for (size_t x = name_text.size() - 1; x > 1; --x) {
        if (const char* v = find_entity(encode_utf8(name_text.substr(0, x)))) {
          out += decode_utf8(v);
          out += name_text.substr(x);
          found = true;
          break;
        }
      }
      if (!found) { out.push_back(U'&'); out += name_text; }
    }
    i = k;
  }
  return out;
}

// ---------------------------------------------------------------- str.lower()
Text lower_text(const Text& t) {
  Text out;
  out.reserve(t.size());
  for (size_t i = 0; i < t.size(); ++i) {
    char32_t cp = t[i];
    if (cp < 0x80) { out.push_back(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp); continue; }
    if (cp == 0x3A3) {
      // Final_Sigma: preceded by a cased letter and not followed by one (case-ignorable characters skipped).
      size_t b = i;
      while (b > 0 && is_case_ignorable(t[b - 1])) --b;
      bool before = b > 0 && is_cased(t[b - 1]);
      size_t a = i + 1;
      while (a < t.size() && is_case_ignorable(t[a])) ++a;
      bool after = a < t.size() && is_cased(t[a]);
      out.push_back(before && !after ? 0x3C2 : 0x3C3);
      continue;
    }
    if (const cu::LowerEntry* e = find_code(cu::kLower, cu::kLowerCount, cp)) out += decode_utf8(e->utf8);
    else out.push_back(cp);
  }
  return out;
}

Text clean_text(std::string_view text) {
  // basic_clean: (ftfy left out) html.unescape twice, strip.
  Text t = strip_py(unescape(unescape(decode_utf8(text))));
  // whitespace_clean: runs of \s become one space, strip.
  Text collapsed;
  collapsed.reserve(t.size());
  for (size_t i = 0; i < t.size();) {
    if (is_regex_space(t[i])) {
      while (i < t.size() && is_regex_space(t[i])) ++i;
      collapsed.push_back(U' ');
    } else {
      collapsed.push_back(t[i++]);
    }
  }
  return lower_text(strip_py(collapsed));
}

// ---------------------------------------------------------------- the split pattern
// <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+  (ignoring case)
const Text kSot = U"<|startoftext|>";
const Text kEot = U"<|endoftext|>";

bool case_eq(char32_t text, char32_t pattern) {
  // The pattern letters are s t r v m l d e; under the regex module's simple case folding 'ſ' (U+017F) is an s
  // and the Kelvin sign is a k (not in the pattern). The text is already lower-cased.
  if (text == pattern) return true;
  return pattern == U's' && text == 0x17F;
}

size_t match_at(const Text& t, size_t i) {
  auto literal = [&](const Text& lit) {
    if (i + lit.size() > t.size()) return false;
    for (size_t k = 0; k < lit.size(); ++k)
      if (!case_eq(t[i + k], lit[k])) return false;
    return true;
  };
  if (literal(kSot)) return kSot.size();
  if (literal(kEot)) return kEot.size();
  if (t[i] == U'\'') {
    for (const Text& c : {Text(U"'s"), Text(U"'t"), Text(U"'re"), Text(U"'ve"), Text(U"'m"), Text(U"'ll"), Text(U"'d")})
      if (literal(c)) return c.size();
  }
  if (is_letter(t[i])) {
    size_t k = i;
    while (k < t.size() && is_letter(t[k])) ++k;
    return k - i;
  }
  if (is_number(t[i])) return 1;
  if (!is_regex_space(t[i])) {
    size_t k = i;
    while (k < t.size() && !is_regex_space(t[k]) && !is_letter(t[k]) && !is_number(t[k])) ++k;
    return k - i;
  }
  return 0;
}

std::vector<Text> split_text(const Text& t) {
  std::vector<Text> out;
  size_t i = 0;
  while (i < t.size()) {
    size_t n = match_at(t, i);
    if (n == 0) { ++i; continue; }
    out.push_back(t.substr(i, n));
    i += n;
  }
  return out;
}

// ---------------------------------------------------------------- the vocabulary file
std::string read_vocab_file(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");  // reads plain files too
  if (!f) throw Error(ErrorCode::ModelError, "cannot open the CLIP vocabulary " + path);
  std::string data;
  char buffer[1 << 16];
  for (;;) {
    int n = gzread(f, buffer, sizeof(buffer));
    if (n < 0) {
      int errnum = 0;
      std::string msg = gzerror(f, &errnum);
      gzclose(f);
      throw Error(ErrorCode::ModelError, "cannot read the CLIP vocabulary " + path + ": " + msg);
    }
    if (n == 0) break;
    data.append(buffer, size_t(n));
  }
  gzclose(f);
  return data;
}

// The reference's bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the others are moved to
// U+0100 and up, in byte order. Returned in the vocabulary's order (printable ones first).
std::vector<std::pair<int, char32_t>> byte_mapping() {
  std::vector<std::pair<int, char32_t>> out;
  std::vector<bool> printable(256, false);
  for (int b = '!'; b <= '~'; ++b) printable[size_t(b)] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) printable[size_t(b)] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) printable[size_t(b)] = true;
  for (int b = 0; b < 256; ++b)
    if (printable[size_t(b)]) out.emplace_back(b, char32_t(b));
  char32_t next = 256;
  for (int b = 0; b < 256; ++b)
    if (!printable[size_t(b)]) out.emplace_back(b, next++);
  return out;
}

}  // namespace

ClipTokenizer::ClipTokenizer(const std::string& vocab_path) {
  std::string data = read_vocab_file(vocab_path);
  // Line 0 is a version header; the reference uses the next 49152 - 256 - 2 lines as merges.
  constexpr size_t kMerges = 49152 - 256 - 2;
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < data.size() && lines.size() < kMerges + 1) {
    size_t nl = data.find('\n', start);
    if (nl == std::string::npos) nl = data.size();
    lines.emplace_back(data.data() + start, nl - start);
    start = nl + 1;
  }
  if (lines.size() < kMerges + 1)
    throw Error(ErrorCode::ModelError, "CLIP vocabulary " + vocab_path + " has " + std::to_string(lines.size()) +
                                           " lines; expected at least " + std::to_string(kMerges + 1));

  for (const auto& [byte, cp] : byte_mapping()) {
    std::string s;
    append_utf8(s, cp);
    byte_encoder_[byte] = s;
    decoder_.push_back(s);
  }
  for (size_t i = 0; i < 256; ++i) decoder_.push_back(decoder_[i] + "</w>");
  ranks_.reserve(kMerges * 2);
  for (size_t i = 1; i <= kMerges; ++i) {
    std::string_view line = lines[i];
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    size_t space = line.find(' ');
    if (space == std::string_view::npos || line.find(' ', space + 1) != std::string_view::npos)
      throw Error(ErrorCode::ModelError, "CLIP vocabulary " + vocab_path + ": line " + std::to_string(i + 1) +
                                             " is not a merge pair");
    ranks_.emplace(std::string(line), int32_t(i - 1));
    decoder_.push_back(std::string(line.substr(0, space)) + std::string(line.substr(space + 1)));
  }
  decoder_.push_back("<|startoftext|>");
  decoder_.push_back("<|endoftext|>");
  encoder_.reserve(decoder_.size() * 2);
  for (size_t i = 0; i < decoder_.size(); ++i) encoder_.emplace(decoder_[i], int32_t(i));
  if (decoder_.size() != size_t(kEndToken) + 1 || encoder_.at("<|startoftext|>") != kStartToken)
    throw Error(ErrorCode::ModelError, "CLIP vocabulary " + vocab_path + " does not give 49408 distinct tokens");
}

const std::string& ClipTokenizer::token_text(int32_t id) const {
  static const std::string empty;
  return id >= 0 && size_t(id) < decoder_.size() ? decoder_[size_t(id)] : empty;
}

std::vector<int32_t> ClipTokenizer::bpe_ids(const std::string& word) const {
  {
    std::lock_guard lock(cache_mutex_);
    if (auto it = cache_.find(word); it != cache_.end()) return it->second;
  }
  // Symbols: one byte stand-in each (UTF-8 of one code point), the last marked as the word's end.
  std::vector<std::string> symbols;
  for (unsigned char b : word) symbols.push_back(byte_encoder_[b]);
  if (symbols.empty()) return {};
  symbols.back() += "</w>";
  std::string key;
  while (symbols.size() > 1) {
    int32_t best = std::numeric_limits<int32_t>::max();
    size_t best_at = 0;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      key.assign(symbols[i]).append(" ").append(symbols[i + 1]);
      auto it = ranks_.find(key);
      if (it != ranks_.end() && it->second < best) { best = it->second; best_at = i; }
    }
    if (best == std::numeric_limits<int32_t>::max()) break;
    // Merge every occurrence of the best pair, left to right, without overlaps.
    const std::string first = symbols[best_at], second = symbols[best_at + 1];
    std::vector<std::string> merged;
    merged.reserve(symbols.size());
    for (size_t i = 0; i < symbols.size();) {
      if (i + 1 < symbols.size() && symbols[i] == first && symbols[i + 1] == second) {
        merged.push_back(first + second);
        i += 2;
      } else {
        merged.push_back(symbols[i++]);
      }
    }
    symbols.swap(merged);
  }
  std::vector<int32_t> ids;
  ids.reserve(symbols.size());
  for (const auto& s : symbols) {
    auto it = encoder_.find(s);
    if (it == encoder_.end()) throw Error(ErrorCode::Internal, "CLIP tokenizer: '" + s + "' is not in the vocabulary");
    ids.push_back(it->second);
  }
  std::lock_guard lock(cache_mutex_);
  if (cache_.size() >= 20000) cache_.clear();  // bounded; words repeat a lot within a workload
  cache_.emplace(word, ids);
  return ids;
}

std::vector<int32_t> ClipTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  for (const Text& piece : split_text(clean_text(text))) {
    if (piece == kSot) { ids.push_back(kStartToken); continue; }
    if (piece == kEot) { ids.push_back(kEndToken); continue; }
    for (int32_t id : bpe_ids(encode_utf8(piece))) ids.push_back(id);
  }
  return ids;
}

std::vector<int32_t> ClipTokenizer::tokenize(std::string_view text) const {
  std::vector<int32_t> ids = encode(text);
  std::vector<int32_t> out;
  out.reserve(kContextLength);
  out.push_back(kStartToken);
  out.insert(out.end(), ids.begin(), ids.end());
  out.push_back(kEndToken);
  if (out.size() > kContextLength) {
    out.resize(kContextLength);
    out.back() = kEndToken;
  }
  out.resize(kContextLength, 0);
  return out;
}

std::string ClipTokenizer::clean(std::string_view text) { return encode_utf8(clean_text(text)); }
std::string ClipTokenizer::html_unescape(std::string_view text) { return encode_utf8(unescape(decode_utf8(text))); }
std::string ClipTokenizer::lower(std::string_view text) { return encode_utf8(lower_text(decode_utf8(text))); }

std::vector<std::string> ClipTokenizer::split_words(std::string_view cleaned) {
  std::vector<std::string> out;
  for (const Text& piece : split_text(decode_utf8(cleaned))) out.push_back(encode_utf8(piece));
  return out;
}

}  // namespace maskmaker
