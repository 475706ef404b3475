// Maps free-text prompt phrases onto a closed-set model's class names: a detector's objects (COCO) or a region
// segmenter's regions (ADE20K: sky, wall, floor...).
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace maskmaker {

struct PhraseMatch {
  int class_id = -1;   // -1: nothing the detector knows
  std::string colour;  // a colour word found in the phrase ("white"), or ""
  // How near the phrase's head noun the match is: higher is nearer ("wall clock" matches clock at a higher rank
  // than wall). Compares matches of one phrase in two vocabularies.
  int rank = 0;
};

enum class Vocabulary { Objects, Regions };  // which synonym table applies

class PhraseMatcher {
 public:
  // Empty names are skipped (a class the caller does not want matched).
  explicit PhraseMatcher(std::vector<std::string> class_names, Vocabulary vocabulary = Vocabulary::Objects);
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
