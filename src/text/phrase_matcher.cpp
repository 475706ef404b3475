#include "text/phrase_matcher.hpp"

#include <algorithm>
#include <cctype>
#include <set>

namespace maskmaker {
namespace {

// Synonyms and common names -> COCO class names. Keys are in singular, normalised form.
const std::pair<const char*, const char*> kSynonyms[] = {
    {"man", "person"}, {"woman", "person"}, {"child", "person"}, {"kid", "person"}, {"boy", "person"},
    {"girl", "person"}, {"people", "person"}, {"human", "person"}, {"guy", "person"}, {"lady", "person"},
    {"gentleman", "person"}, {"baby", "person"}, {"toddler", "person"}, {"pedestrian", "person"},
    {"player", "person"}, {"skier", "person"}, {"surfer", "person"}, {"rider", "person"}, {"adult", "person"},
    {"teenager", "person"}, {"passenger", "person"}, {"worker", "person"}, {"someone", "person"},
    {"puppy", "dog"}, {"doggy", "dog"}, {"doggie", "dog"}, {"hound", "dog"}, {"pup", "dog"},
    {"kitten", "cat"}, {"kitty", "cat"},
    {"sofa", "couch"}, {"settee", "couch"},
    {"television", "tv"}, {"tv set", "tv"}, {"monitor", "tv"}, {"screen", "tv"}, {"tv monitor", "tv"},
    {"motorbike", "motorcycle"}, {"scooter", "motorcycle"}, {"moped", "motorcycle"},
    {"plane", "airplane"}, {"aeroplane", "airplane"}, {"jet", "airplane"}, {"airliner", "airplane"},
    {"aircraft", "airplane"},
    {"bike", "bicycle"}, {"cycle", "bicycle"},
    {"automobile", "car"}, {"taxi", "car"}, {"cab", "car"}, {"sedan", "car"}, {"suv", "car"},
    {"lorry", "truck"}, {"pickup", "truck"}, {"pickup truck", "truck"},
    {"ship", "boat"}, {"sailboat", "boat"}, {"yacht", "boat"}, {"canoe", "boat"}, {"kayak", "boat"},
    {"coach", "bus"}, {"minibus", "bus"},
    {"locomotive", "train"}, {"tram", "train"},
    {"table", "dining table"}, {"dinner table", "dining table"}, {"kitchen table", "dining table"},
    {"plant", "potted plant"}, {"houseplant", "potted plant"}, {"pot plant", "potted plant"},
    {"flowerpot", "potted plant"},
    {"phone", "cell phone"}, {"cellphone", "cell phone"}, {"smartphone", "cell phone"},
    {"mobile phone", "cell phone"}, {"mobile", "cell phone"}, {"iphone", "cell phone"},
    {"notebook computer", "laptop"}, {"laptop computer", "laptop"}, {"computer", "laptop"},
    {"ball", "sports ball"}, {"football", "sports ball"}, {"soccer ball", "sports ball"},
    {"basketball", "sports ball"}, {"tennis ball", "sports ball"}, {"baseball", "sports ball"},
    {"doughnut", "donut"}, {"hotdog", "hot dog"},
    {"hair dryer", "hair drier"}, {"hairdryer", "hair drier"}, {"blow dryer", "hair drier"},
    {"teddy", "teddy bear"}, {"stuffed animal", "teddy bear"}, {"plush", "teddy bear"},
    {"fridge", "refrigerator"}, {"freezer", "refrigerator"},
    {"pony", "horse"}, {"stallion", "horse"}, {"mare", "horse"}, {"foal", "horse"},
    {"calf", "cow"}, {"cattle", "cow"}, {"bull", "cow"}, {"ox", "cow"},
    {"lamb", "sheep"}, {"ram", "sheep"},
    {"bag", "handbag"}, {"purse", "handbag"}, {"hand bag", "handbag"},
    {"luggage", "suitcase"}, {"bagage", "suitcase"}, {"baggage", "suitcase"},
    {"rucksack", "backpack"}, {"knapsack", "backpack"},
    {"pigeon", "bird"}, {"seagull", "bird"}, {"gull", "bird"}, {"duck", "bird"}, {"parrot", "bird"},
    {"sparrow", "bird"}, {"goose", "bird"}, {"swan", "bird"}, {"eagle", "bird"}, {"owl", "bird"},
    {"chicken", "bird"}, {"hen", "bird"},
    {"racket", "tennis racket"}, {"racquet", "tennis racket"}, {"tennis racquet", "tennis racket"},
    {"mug", "cup"}, {"teacup", "cup"}, {"coffee cup", "cup"},
    {"necktie", "tie"},
    {"remote control", "remote"}, {"controller", "remote"},
    {"computer mouse", "mouse"},
    {"hydrant", "fire hydrant"},
    {"traffic signal", "traffic light"}, {"stoplight", "traffic light"},
    {"mitt", "baseball glove"}, {"glove", "baseball glove"},
    {"bat", "baseball bat"},
    {"ski", "skis"},
    {"armchair", "chair"}, {"stool", "chair"},
    {"wineglass", "wine glass"}, {"glass", "wine glass"},
    {"microwave oven", "microwave"},
    {"washbasin", "sink"}, {"basin", "sink"},
    {"lavatory", "toilet"},
    {"novel", "book"},
    {"clock tower", "clock"}, {"watch", "clock"},
    {"shears", "scissors"},
    {"cub", "bear"}, {"polar bear", "bear"}, {"grizzly", "bear"},
};

// Region words -> ADE20K class names (segment/regions.cpp). Keys are in singular, normalised form.
const std::pair<const char*, const char*> kRegionSynonyms[] = {
    {"lawn", "grass"}, {"turf", "grass"}, {"meadow", "grass"}, {"grassland", "grass"},
    {"ocean", "sea"}, {"seawater", "sea"},
    {"lake", "water"}, {"river", "water"}, {"pond", "water"}, {"stream", "water"},
    {"carpet", "rug"}, {"mat", "rug"},
    {"pavement", "sidewalk"}, {"footpath", "sidewalk"}, {"walkway", "sidewalk"},
    {"ground", "earth"}, {"dirt", "earth"}, {"soil", "earth"}, {"mud", "earth"},
    {"window", "windowpane"}, {"window pane", "windowpane"}, {"pane", "windowpane"},
    {"pitch", "field"}, {"playing field", "field"}, {"playingfield", "field"}, {"sports field", "field"},
    {"farmland", "field"},
    {"street", "road"}, {"roadway", "road"}, {"highway", "road"}, {"asphalt", "road"},
    {"cloud", "sky"}, {"skyline", "sky"},
    {"hill", "mountain"}, {"mount", "mountain"},
    {"forest", "tree"},  // not "wood": a material ("wood floor", COCO's "floor wood")
    {"bush", "plant"}, {"shrub", "plant"}, {"hedge", "plant"}, {"foliage", "plant"},
    {"drape", "curtain"}, {"drapery", "curtain"},
    {"cupboard", "cabinet"}, {"bookshelf", "shelf"}, {"bookcase", "shelf"}, {"shelving", "shelf"},
    {"picture", "painting"}, {"artwork", "painting"},
    {"flooring", "floor"}, {"skyscraper", "building"}, {"facade", "building"}, {"cottage", "house"},
    {"doorway", "door"},
};

const std::set<std::string> kColours = {"white", "black", "red", "green", "blue", "yellow", "orange", "brown",
                                        "gray", "grey", "pink", "purple", "silver", "golden", "gold", "beige"};

const std::set<std::string> kSkipWords = {"a", "an", "the", "this", "that", "these", "those", "some", "any",
                                          "all", "my", "your", "his", "her", "its", "their", "our", "one",
                                          "two", "three", "four", "five", "several", "many", "few", "of"};

// Words after which the rest of a phrase describes context, not the object ("dog on the sofa").
const std::set<std::string> kBreakWords = {"on", "in", "with", "near", "by", "at", "behind", "under", "over",
                                           "beside", "next", "riding", "holding", "wearing", "sitting",
                                           "standing", "walking", "running", "from", "inside", "outside",
                                           "above", "below", "for", "and", "or", "carrying", "eating", "that",
                                           "which", "who", "while", "to"};

const std::pair<const char*, const char*> kIrregularPlurals[] = {
    {"people", "people"}, {"men", "man"}, {"women", "woman"}, {"children", "child"}, {"mice", "mouse"},
    {"knives", "knife"}, {"geese", "goose"}, {"teeth", "tooth"}, {"feet", "foot"}, {"sheep", "sheep"},
    {"skis", "skis"}, {"scissors", "scissors"}, {"bus", "bus"}, {"glass", "glass"}, {"cactus", "cactus"},
    {"calves", "calf"}, {"shelves", "shelf"}, {"wolves", "wolf"}, {"leaves", "leaf"}, {"cattle", "cattle"},
    {"oxen", "ox"}, {"buses", "bus"}, {"glasses", "glass"}, {"couches", "couch"}, {"benches", "bench"},
    {"sandwiches", "sandwich"}, {"watches", "watch"}, {"boxes", "box"}, {"toothbrushes", "toothbrush"},
    {"dishes", "dish"}, {"ladies", "lady"}, {"puppies", "puppy"}, {"tomatoes", "tomato"},
    {"potatoes", "potato"}, {"ponies", "pony"}, {"series", "series"}, {"species", "species"}, {"news", "news"},
    {"grass", "grass"}, {"dress", "dress"}, {"canvas", "canvas"}, {"tennis", "tennis"}, {"lens", "lens"},
    {"teddies", "teddy"}, {"skies", "sky"}, {"taxis", "taxi"}, {"iphones", "iphone"}, {"tvs", "tv"}, {"suvs", "suv"},
};

std::string join(const std::vector<std::string>& words, size_t from, size_t to) {
  std::string out;
  for (size_t i = from; i < to; ++i) {
    if (i > from) out += ' ';
    out += words[i];
  }
  return out;
}

}  // namespace

std::string PhraseMatcher::singular(const std::string& w) {
  for (auto& [plural, single] : kIrregularPlurals) {
    if (w == plural) return single;
  }
  auto ends = [&](const char* s) {
    size_t n = std::char_traits<char>::length(s);
    return w.size() > n && w.compare(w.size() - n, n, s) == 0;
  };
  if (w.size() <= 3) return w;
  if (ends("ies")) return w.substr(0, w.size() - 3) + "y";
  if (ends("ves")) return w.substr(0, w.size() - 3) + "f";
  if (ends("ches") || ends("shes") || ends("xes") || ends("sses") || ends("zzes")) return w.substr(0, w.size() - 2);
  if (ends("ss") || ends("us") || ends("is")) return w;
  if (ends("s")) return w.substr(0, w.size() - 1);
  return w;
}

std::vector<std::string> PhraseMatcher::normalise_words(std::string_view phrase) {
  std::vector<std::string> words;
  std::string cur;
  auto flush = [&] {
    if (!cur.empty()) words.push_back(std::move(cur));
    cur.clear();
  };
  for (unsigned char c : phrase) {
    if (std::isalnum(c)) cur += char(std::tolower(c));
    else if (c == '-' || c == '_' || std::isspace(c) || std::ispunct(c)) flush();
    else cur += char(c);  // UTF-8 bytes stay part of a word
  }
  flush();
  return words;
}

PhraseMatcher::PhraseMatcher(std::vector<std::string> class_names, Vocabulary vocabulary)
    : classes_(std::move(class_names)) {
  auto norm = [](const std::string& s) {
    auto words = normalise_words(s);
    return join(words, 0, words.size());
  };
  for (size_t i = 0; i < classes_.size(); ++i) {
    if (classes_[i].empty()) continue;
    names_[norm(classes_[i])] = int(i);
    // "hair drier" also answers to its singular-normalised form, "skis" to "ski" and so on.
    auto words = normalise_words(classes_[i]);
    for (auto& w : words) w = singular(w);
    names_.emplace(join(words, 0, words.size()), int(i));
  }
  auto add_synonyms = [&](const auto& table) {
    for (auto& [syn, target] : table) {
      auto it = names_.find(norm(target));
      if (it != names_.end()) names_.emplace(norm(syn), it->second);
    }
  };
  if (vocabulary == Vocabulary::Objects) add_synonyms(kSynonyms);
  else add_synonyms(kRegionSynonyms);
  // Compound class names also answer to their spelling without a space ("hotdog", "teddybear").
  for (size_t i = 0; i < classes_.size(); ++i) {
    if (classes_[i].empty()) continue;
    std::string joined;
    for (auto& w : normalise_words(classes_[i])) joined += w;
    names_.emplace(joined, int(i));
  }
}

int PhraseMatcher::lookup(const std::string& words) const {
  auto it = names_.find(words);
  return it == names_.end() ? -1 : it->second;
}

PhraseMatch PhraseMatcher::match(std::string_view phrase) const {
  PhraseMatch result;
  std::vector<std::string> words;
  for (auto& w : normalise_words(phrase)) {
    if (kSkipWords.count(w) || std::all_of(w.begin(), w.end(), ::isdigit)) continue;
    words.push_back(w);
  }
  if (words.empty()) return result;
  // Whole phrase first, as written and in singular ("sports ball", "hot dogs").
  std::vector<std::string> singulars;
  for (auto& w : words) singulars.push_back(singular(w));
  auto colour_in = [&](size_t from, size_t to) {
    for (size_t i = from; i < to; ++i) {
      if (kColours.count(words[i])) return words[i] == "grey" ? std::string("gray") : words[i];
    }
    return std::string();
  };
  // The object part ends at the first context word ("dog on the sofa" -> "dog").
  size_t end = words.size();
  for (size_t i = 1; i < words.size(); ++i) {
    if (kBreakWords.count(words[i])) { end = i; break; }
  }
  // Longest word run ending at the head (last word of the object part), then shorter ones, then anywhere.
  for (size_t head = end; head > 0; --head) {
    for (size_t start = 0; start < head; ++start) {
      for (const auto* form : {&words, &singulars}) {
        int id = lookup(join(*form, start, head));
        if (id >= 0) {
          result.class_id = id;
          result.colour = colour_in(0, head);
          result.rank = 1000 + int(head);
          return result;
        }
      }
    }
  }
  for (size_t i = end; i < words.size(); ++i) {  // "a photo of a dog": the head may follow a break word
    for (size_t j = words.size(); j > i; --j) {
      for (const auto* form : {&words, &singulars}) {
        int id = lookup(join(*form, i, j));
        if (id >= 0) {
          result.class_id = id;
          result.colour = colour_in(i, j);
          result.rank = int(j);  // below any match before a context word
          return result;
        }
      }
    }
  }
  return result;
}

}  // namespace maskmaker
