#include <gtest/gtest.h>

#include "detect/detector.hpp"
#include "text/phrase_matcher.hpp"

using namespace maskmaker;

namespace {
std::string matched(const PhraseMatcher& m, const std::string& phrase) {
  PhraseMatch r = m.match(phrase);
  return r.class_id < 0 ? "" : coco80_names()[size_t(r.class_id)];
}
}  // namespace

TEST(PhraseMatcher, ExactNamesCaseAndArticles) {
  PhraseMatcher m(coco80_names());
  EXPECT_EQ(matched(m, "bus"), "bus");
  EXPECT_EQ(matched(m, "The Bus"), "bus");
  EXPECT_EQ(matched(m, "a sports ball"), "sports ball");
  EXPECT_EQ(matched(m, "dining table"), "dining table");
  EXPECT_EQ(matched(m, "TV"), "tv");
  EXPECT_EQ(matched(m, "hair drier"), "hair drier");
}

TEST(PhraseMatcher, Plurals) {
  PhraseMatcher m(coco80_names());
  EXPECT_EQ(matched(m, "horses"), "horse");
  EXPECT_EQ(matched(m, "buses"), "bus");
  EXPECT_EQ(matched(m, "two dogs"), "dog");
  EXPECT_EQ(matched(m, "knives"), "knife");
  EXPECT_EQ(matched(m, "people"), "person");
  EXPECT_EQ(matched(m, "children"), "person");
  EXPECT_EQ(matched(m, "skis"), "skis");
  EXPECT_EQ(matched(m, "ski"), "skis");
  EXPECT_EQ(matched(m, "hot dogs"), "hot dog");
  EXPECT_EQ(matched(m, "wine glasses"), "wine glass");
  EXPECT_EQ(matched(m, "benches"), "bench");
}

TEST(PhraseMatcher, Synonyms) {
  PhraseMatcher m(coco80_names());
  for (const char* p : {"man", "woman", "child", "men", "women", "kids"}) EXPECT_EQ(matched(m, p), "person") << p;
  EXPECT_EQ(matched(m, "puppy"), "dog");
  EXPECT_EQ(matched(m, "sofa"), "couch");
  EXPECT_EQ(matched(m, "television"), "tv");
  EXPECT_EQ(matched(m, "motorbike"), "motorcycle");
  EXPECT_EQ(matched(m, "plane"), "airplane");
  EXPECT_EQ(matched(m, "cellphone"), "cell phone");
  EXPECT_EQ(matched(m, "hotdog"), "hot dog");
  EXPECT_EQ(matched(m, "fridge"), "refrigerator");
}

TEST(PhraseMatcher, HeadNounAndColour) {
  PhraseMatcher m(coco80_names());
  PhraseMatch r = m.match("white horse");
  EXPECT_EQ(coco80_names()[size_t(r.class_id)], "horse");
  EXPECT_EQ(r.colour, "white");
  EXPECT_EQ(m.match("Red car").colour, "red");
  EXPECT_EQ(m.match("grey cat").colour, "gray");
  EXPECT_EQ(m.match("dog").colour, "");
  EXPECT_EQ(matched(m, "the dog on the sofa"), "dog");
  EXPECT_EQ(matched(m, "man riding a horse"), "person");
  EXPECT_EQ(matched(m, "big brown teddy bear"), "teddy bear");
  EXPECT_EQ(matched(m, "a photo of a cat"), "cat");
  EXPECT_EQ(matched(m, "red sports car"), "car");
}

TEST(PhraseMatcher, UnknownPhrasesMatchNothing) {
  PhraseMatcher m(coco80_names());
  for (const char* p : {"unicorn", "tree", "sky", "", "   ", "the", "42", "ünïcödé"}) EXPECT_EQ(m.match(p).class_id, -1) << p;
}

TEST(PhraseMatcher, Singular) {
  EXPECT_EQ(PhraseMatcher::singular("ponies"), "pony");
  EXPECT_EQ(PhraseMatcher::singular("boxes"), "box");
  EXPECT_EQ(PhraseMatcher::singular("glass"), "glass");
  EXPECT_EQ(PhraseMatcher::singular("bus"), "bus");
  EXPECT_EQ(PhraseMatcher::singular("cats"), "cat");
}
