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

namespace {
// The region segmenter's classes (segment/regions.cpp), as the pipeline gives them to the matcher.
const std::vector<std::string>& region_names() {
  static const std::vector<std::string> names = {
      "",     "wall",  "building", "sky",    "floor", "tree",  "ceiling", "road",  "",     "windowpane", "grass",
      "cabinet", "sidewalk", "", "earth", "door", "",  "mountain", "plant", "curtain", "", "",  "water",
      "painting", "", "shelf", "house", "sea", "mirror", "rug", "field", ""};
  return names;
}
std::string region(const PhraseMatcher& m, const std::string& phrase) {
  PhraseMatch r = m.match(phrase);
  return r.class_id < 0 ? "" : region_names()[size_t(r.class_id)];
}
}  // namespace

TEST(PhraseMatcher, RegionNamesPluralsAndSynonyms) {
  PhraseMatcher m(region_names(), Vocabulary::Regions);
  EXPECT_EQ(region(m, "the sky"), "sky");
  EXPECT_EQ(region(m, "Skies"), "sky");
  EXPECT_EQ(region(m, "walls"), "wall");
  EXPECT_EQ(region(m, "lawn"), "grass");
  EXPECT_EQ(region(m, "the ocean"), "sea");
  EXPECT_EQ(region(m, "carpet"), "rug");
  EXPECT_EQ(region(m, "pavement"), "sidewalk");
  EXPECT_EQ(region(m, "ground"), "earth");
  EXPECT_EQ(region(m, "dirt"), "earth");
  EXPECT_EQ(region(m, "windows"), "windowpane");
  EXPECT_EQ(region(m, "pitch"), "field");
  EXPECT_EQ(region(m, "playing field"), "field");
  EXPECT_EQ(region(m, "playingfield"), "field");
  EXPECT_EQ(region(m, "shelves"), "shelf");
  // Head nouns: the material or colour before it does not matter; COCO's "floor wood" order works too.
  EXPECT_EQ(region(m, "brick wall"), "wall");
  EXPECT_EQ(region(m, "wooden floor"), "floor");
  EXPECT_EQ(region(m, "floor wood"), "floor");
  EXPECT_EQ(region(m, "wall brick"), "wall");
  EXPECT_EQ(region(m, "blue sky with clouds"), "sky");
  // Object words are not regions (the pipeline's object path answers them), nor are unknown words.
  EXPECT_EQ(region(m, "person"), "");
  EXPECT_EQ(region(m, "table"), "");
  EXPECT_EQ(region(m, "rainbow"), "");
  EXPECT_EQ(region(m, "light"), "");
}

TEST(PhraseMatcher, RankTellsTheHeadNounAcrossVocabularies) {
  PhraseMatcher objects(coco80_names()), regions(region_names(), Vocabulary::Regions);
  // "wall clock" is a clock: the object match ends at the head, the region match before it.
  EXPECT_GT(objects.match("wall clock").rank, regions.match("wall clock").rank);
  // "grass near the dog" is grass: the dog follows a context word.
  EXPECT_GT(regions.match("grass near the dog").rank, objects.match("grass near the dog").rank);
  EXPECT_EQ(region(regions, "grass near the dog"), "grass");
  // "dog on the grass" is a dog.
  EXPECT_GT(objects.match("dog on the grass").rank, regions.match("dog on the grass").rank);
  // "plant" names both (potted plant, region plant): equal ranks, and the pipeline gives ties to objects.
  EXPECT_EQ(objects.match("plant").rank, regions.match("plant").rank);
}
