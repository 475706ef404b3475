// The CLIP BPE tokenizer against the reference's token ids.
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "maskmaker/maskmaker.hpp"
#include "test_support.hpp"
#include "text/clip_tokenizer.hpp"

using namespace maskmaker;

namespace {

std::string vocab_path() { return shared_dir() + "/models/clip/bpe_simple_vocab_16e6.txt.gz"; }

const ClipTokenizer& tokenizer() {
  static ClipTokenizer tok(vocab_path());
  return tok;
}

}  // namespace

TEST(ClipTokenizer, LoadsTheWholeVocabulary) {
  EXPECT_EQ(tokenizer().vocab_size(), 49408u);
  EXPECT_EQ(tokenizer().token_text(ClipTokenizer::kStartToken), "<|startoftext|>");
  EXPECT_EQ(tokenizer().token_text(ClipTokenizer::kEndToken), "<|endoftext|>");
  EXPECT_EQ(tokenizer().token_text(4558), "horse</w>");
  EXPECT_EQ(tokenizer().token_text(0), "!");
  EXPECT_EQ(tokenizer().token_text(256), "!</w>");
  EXPECT_EQ(tokenizer().token_text(49408), "");
}

TEST(ClipTokenizer, MissingOrBrokenVocabularyIsAModelError) {
  try {
    ClipTokenizer bad("/nonexistent/bpe.txt.gz");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::ModelError);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/bpe.txt.gz"), std::string::npos);
  }
  std::string path = testing::TempDir() + "short_vocab.txt";
  std::ofstream(path) << "#version: 0.2\ni n\nt h\n";
  EXPECT_THROW(ClipTokenizer{path}, Error);
}

// Every case of ../shared/models/clip/tokenizer_test_vectors.json (made with the reference tokenizer).
TEST(ClipTokenizer, MatchesReferenceTestVectors) {
  std::ifstream in(shared_dir() + "/models/clip/tokenizer_test_vectors.json");
  ASSERT_TRUE(in) << "missing tokenizer_test_vectors.json under " << shared_dir();
  nlohmann::json vectors = nlohmann::json::parse(in);
  ASSERT_EQ(vectors["sot"].get<int>(), ClipTokenizer::kStartToken);
  ASSERT_EQ(vectors["eot"].get<int>(), ClipTokenizer::kEndToken);
  ASSERT_GE(vectors["cases"].size(), 13u);
  for (const auto& c : vectors["cases"]) {
    std::string text = c["text"].get<std::string>();
    SCOPED_TRACE("text: '" + text + "'");
    EXPECT_EQ(tokenizer().encode(text), c["bpe_ids"].get<std::vector<int32_t>>());
    std::vector<int32_t> input = tokenizer().tokenize(text);
    std::vector<int32_t> prefix = c["input_77_prefix"].get<std::vector<int32_t>>();
    ASSERT_EQ(input.size(), 77u);
    EXPECT_TRUE(std::equal(prefix.begin(), prefix.end(), input.begin()));
    for (size_t i = prefix.size(); i < input.size(); ++i) ASSERT_EQ(input[i], 0) << "padding at " << i;
  }
}

// Unicode, punctuation, apostrophes, numbers, HTML entities and odd whitespace. Expected ids come from the
// reference algorithm (openai/CLIP simple_tokenizer.py with ftfy as the identity, `regex` module).
TEST(ClipTokenizer, MatchesReferenceOnUnicodeAndPunctuation) {
  const std::vector<std::pair<std::string, std::vector<int32_t>>> cases = {
      {"Caf\303\251 au lait", {15304, 2566, 572, 585}},
      {"na\303\257ve r\303\251sum\303\251", {1097, 35689, 563, 29106, 7054, 4166}},
      {"\346\235\261\344\272\254\343\202\277\343\203\257\343\203\274", {48338, 21078, 105, 34941, 2429, 107, 30391}},
      // Final sigma: "ΟΔΟΣ ΣΟΦΟΣ" lower-cases to "οδος σοφος".
      {"\316\237\316\224\316\237\316\243 \316\243\316\237\316\246\316\237\316\243",
       {138, 123, 138, 112, 138, 123, 139, 480, 139, 225, 138, 123, 139, 228, 138, 123, 139, 480}},
      {"\304\260stanbul", {328, 16384, 11231}},  // İ lower-cases to i + combining dot
      {"Stra\303\237e", {1894, 127, 253, 324}},
      {"emoji \360\237\220\266 dog", {16327, 10631, 1929}},
      {"a\314\201b", {320, 136, 479, 321}},  // combining accent: a punctuation run between letters
      {"rock 'n' roll", {2172, 262, 333, 262, 3341}},
      {"it's we're you'll I'd they've I'm", {585, 568, 649, 982, 592, 1342, 328, 1896, 889, 1200, 328, 880}},
      {"IT'S", {585, 568}},
      {"rock'sam", {2172, 568, 687}},
      {"don\342\200\231t", {847, 728, 503, 339}},  // a curly apostrophe is punctuation (no ftfy)
      {"'s", {568}},
      {"''", {8445}},
      {"'\305\277", {6, 129, 379}},  // 'ſ matches 's ignoring case
      {"hello, world!!!", {3306, 267, 1002, 995}},
      {"x-ray 3.14 100%", {343, 268, 3077, 274, 269, 272, 275, 272, 271, 271, 260}},
      {"1st 2nd 42", {272, 545, 273, 1764, 275, 273}},
      {"\302\275 half \342\205\250", {33613, 2349, 158, 227, 372}},
      {"\331\243\331\244 arabic digits", {149, 352, 149, 353, 16709, 31710}},
      {"...---...", {3002, 2154, 43147}},
      {"C++ & C#", {322, 19056, 261, 322, 258}},
      {"e-mail@example.com", {324, 268, 2614, 287, 6228, 269, 2464}},
      {"&amp; &lt;tag&gt;", {261, 283, 3640, 285}},
      {"&amp;amp;", {261}},  // unescaped twice
      {"&ampx &notit; &#39;s &#x41;B &#0; &#128; &#999999999999;",
       {261, 343, 126, 361, 585, 282, 568, 3937, 39802, 6309, 39802}},
      {"tab\011and\012newline", {14724, 537, 1218, 1148}},
      {"non\302\240breaking\343\200\200space", {3353, 2755, 2138}},
      {"\034info\037sep\034", {2222, 475, 10434}},
      {"a  \011\015\012  b", {320, 321}},
      {"\357\254\201sh", {171, 105, 223, 849}},  // the fi ligature stays (no ftfy)
      {"\357\274\241\357\274\242\357\274\243\357\274\221\357\274\222\357\274\223",
       {171, 121, 223, 171, 121, 224, 171, 121, 481, 171, 120, 495, 171, 120, 496, 171, 120, 497}},
      {"<|endoftext|> hi", {49407, 1883}},
  };
  for (const auto& [text, ids] : cases) {
    SCOPED_TRACE("text: '" + text + "'");
    EXPECT_EQ(tokenizer().encode(text), ids);
  }
}

TEST(ClipTokenizer, CleansLikeTheReference) {
  EXPECT_EQ(ClipTokenizer::clean("  Multiple \t\n  SPACES  "), "multiple spaces");
  EXPECT_EQ(ClipTokenizer::clean("&amp;lt;b&amp;gt;"), "<b>");
  EXPECT_EQ(ClipTokenizer::clean("\316\237\316\224\316\237\316\243"), "\316\277\316\264\316\277\317\202");  // οδος
  EXPECT_EQ(ClipTokenizer::lower("\316\243"), "\317\203");  // a lone capital sigma is not final
  EXPECT_EQ(ClipTokenizer::lower("\304\260"), "i\314\207");
  EXPECT_EQ(ClipTokenizer::html_unescape("&notit; &notin; &#x110000; &#xD800; &#1;x"),
            "\302\254it; \342\210\211 \357\277\275 \357\277\275 x");
  EXPECT_EQ(ClipTokenizer::html_unescape("a & b &# &; &unknownentity;"), "a & b &# &; &unknownentity;");
  EXPECT_EQ(ClipTokenizer::clean("\377bad utf8"), "\357\277\275bad utf8");
}

TEST(ClipTokenizer, SplitsWordsContractionsDigitsAndPunctuation) {
  EXPECT_EQ(ClipTokenizer::split_words("don't stop!!'s 2024 a.b"),
            (std::vector<std::string>{"don", "'t", "stop", "!!'", "s", "2", "0", "2", "4", "a", ".", "b"}));
  EXPECT_EQ(ClipTokenizer::split_words("we'll they're i'm you'd"),
            (std::vector<std::string>{"we", "'ll", "they", "'re", "i", "'m", "you", "'d"}));
}

TEST(ClipTokenizer, EmptyAndBlankTextGiveOnlyStartAndEnd) {
  for (const char* text : {"", " ", "\t\n  "}) {
    std::vector<int32_t> input = tokenizer().tokenize(text);
    ASSERT_EQ(input.size(), 77u);
    EXPECT_EQ(input[0], ClipTokenizer::kStartToken);
    EXPECT_EQ(input[1], ClipTokenizer::kEndToken);
    EXPECT_EQ(input[2], 0);
  }
}

TEST(ClipTokenizer, OverLongInputIsTruncatedKeepingTheEndToken) {
  std::string text;
  for (int i = 0; i < 100; ++i) text += "horse ";
  EXPECT_EQ(tokenizer().encode(text).size(), 100u);
  std::vector<int32_t> input = tokenizer().tokenize(text);
  ASSERT_EQ(input.size(), 77u);
  EXPECT_EQ(input.front(), ClipTokenizer::kStartToken);
  for (size_t i = 1; i < 76; ++i) ASSERT_EQ(input[i], 4558) << i;
  EXPECT_EQ(input.back(), ClipTokenizer::kEndToken);

  // Exactly 75 ids fit with start and end and nothing is cut; 76 ids lose the last one.
  std::string fits, over;
  for (int i = 0; i < 75; ++i) fits += "horse ";
  over = fits + "dog";
  std::vector<int32_t> a = tokenizer().tokenize(fits), b = tokenizer().tokenize(over);
  EXPECT_EQ(a[75], 4558);
  EXPECT_EQ(a[76], ClipTokenizer::kEndToken);
  EXPECT_EQ(b, a);
}

TEST(ClipTokenizer, CachedWordsGiveTheSameIds) {
  std::vector<int32_t> first = tokenizer().encode("a photo of a teddy bear");
  std::vector<int32_t> second = tokenizer().encode("a photo of a teddy bear");
  EXPECT_EQ(first, second);
  EXPECT_EQ(first, (std::vector<int32_t>{320, 1125, 539, 320, 11798, 4298}));
}
