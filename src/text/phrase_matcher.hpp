// Maps free-text prompt phrases onto a closed-set detector's class names.
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace maskmaker {

struct PhraseMatch {
  int class_id = -1;   // -1: nothing the detector knows
  std::string colour;  // a colour word found in the phrase ("white"), or ""
};

class PhraseMatcher {
 public:
  explicit PhraseMatcher(std::vector<std::string> class_names);
  // Normalises case, punctuation, articles and plurals, applies synonyms, and prefers the head noun
  // ("the two white horses on the left" -> horse, colour white).
  PhraseMatch match(std::string_view phrase) const;

  // Exposed for tests.
  static std::vector<std::string> normalise_words(std::string_view phrase);
  static std::string singular(const std::string& word);

 private:
  int lookup(const std::string& words) const;
  std::vector<std::string> classes_;
  std::unordered_map<std::string, int> names_;  // normalised name or synonym -> class id
};

}  // namespace maskmaker
