// Unicode tables for the CLIP tokenizer (generated into clip_unicode_data.cpp by clip_unicode_gen.py).
#pragma once

#include <cstddef>
#include <cstdint>

namespace maskmaker::clip_unicode {

struct CodeRange {
  uint32_t lo, hi;  // inclusive
};
struct LowerEntry {
  uint32_t code;
  const char* utf8;  // what str.lower() (or html.unescape for charrefs) gives, UTF-8
};
struct EntityEntry {
  const char* name;  // HTML5 entity name, with or without the trailing ';'
  const char* utf8;
};

// Sorted by code point / name.
extern const CodeRange kLetters[];  // general category L*
extern const size_t kLettersCount;
extern const CodeRange kNumbers[];  // general category N*
extern const size_t kNumbersCount;
extern const CodeRange kCased[];  // lower, upper or title case (for the final-sigma rule)
extern const size_t kCasedCount;
extern const CodeRange kCaseIgnorable[];
extern const size_t kCaseIgnorableCount;
extern const LowerEntry kLower[];   // code points whose lower-case form differs
extern const size_t kLowerCount;
extern const EntityEntry kEntities[];
extern const size_t kEntitiesCount;
extern const LowerEntry kInvalidCharrefs[];
extern const size_t kInvalidCharrefsCount;
extern const uint32_t kInvalidCodepoints[];
extern const size_t kInvalidCodepointsCount;

}  // namespace maskmaker::clip_unicode
