// Hostile inputs at the library level: regressions for what the hostile HTTP suite (tests/hostile) and the
// fuzzers (fuzz/) found, and a replay of the fuzz corpora (seeds + crash regressions) in the normal build.
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>

#include "maskmaker/maskmaker.hpp"
#include "service/base64.hpp"
#include "service/request.hpp"
#include "test_support.hpp"

using namespace maskmaker;
using namespace maskmaker::service;
namespace fs = std::filesystem;

namespace {
std::vector<uint8_t> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
fs::path corpus(const std::string& target) { return fs::path(MASKMAKER_SOURCE_DIR) / "fuzz" / "corpus" / target; }

ErrorCode decode_error(const std::vector<uint8_t>& bytes) {
  try {
    decode_image(bytes);
  } catch (const Error& e) {
    return e.code();
  }
  return ErrorCode::Internal;  // "decoded": callers compare against a real error code
}
}  // namespace

// libjpeg decodes a truncated file without an error (the missing rows grey): refuse it as a bad image.
TEST(Hostile, TruncatedJpegIsRefused) {
  auto jpeg = read_bytes(sample("hopper.jpg"));
  ASSERT_GT(jpeg.size(), 1000u);
  EXPECT_NO_THROW(decode_image(jpeg));
  for (size_t keep : {jpeg.size() / 2, jpeg.size() - 100, jpeg.size() - 2, jpeg.size() - 1}) {
    SCOPED_TRACE(keep);
    std::vector<uint8_t> cut(jpeg.begin(), jpeg.begin() + long(keep));
    EXPECT_EQ(decode_error(cut), ErrorCode::BadImage);
  }
  auto trailing = jpeg;
  for (char c : std::string("trailing garbage")) trailing.push_back(uint8_t(c));
  EXPECT_NO_THROW(decode_image(trailing));
}

// A GIF's first frame may be far larger than its logical screen (the size the header check reads): giflib
// decodes it all, so a 16x16 GIF declaring a 20000x20000 frame cost ~10 s of LZW from 300 kB. The frame is held
// to the pixel limit, and rows below the screen are not decoded.
TEST(Hostile, GifFrameLargerThanScreenIsBounded) {
  auto gif = read_bytes(corpus("decode") / "gif_frame_bigger_than_screen.gif");  // 3000x3000 frame, 16x16 screen
  ASSERT_FALSE(gif.empty());
  DecodeLimits small;
  small.max_pixels = 4'000'000;
  try {
    decode_image(gif, small);
    FAIL() << "a 9 Mpx frame passed a 4 Mpx limit";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::ImageTooLarge);
    EXPECT_NE(std::string(e.what()).find("3000x3000"), std::string::npos) << e.what();
  }
  DecodedImage img = decode_image(gif);  // within the default limit: decodes, clipped to the screen
  EXPECT_EQ(img.bgr.size(), cv::Size(16, 16));
}

// libjpeg accepts a progressive scan repeated any number of times (a warning), each a pass over every block: a
// 7000x7000 JPEG with a 26-byte scan repeated 1000 times took 8 s to decode. More than 100 scans is refused.
TEST(Hostile, JpegWithTooManyScansIsRefused) {
  cv::Mat image(64, 64, CV_8UC3, cv::Scalar(30, 90, 200));
  std::vector<uint8_t> prog;
  ASSERT_TRUE(cv::imencode(".jpg", image, prog, {cv::IMWRITE_JPEG_PROGRESSIVE, 1}));
  auto find_last = [&](uint8_t marker) {
    for (size_t i = prog.size() - 2; i > 0; --i)
      if (prog[i] == 0xFF && prog[i + 1] == marker) return i;
    return size_t(0);
  };
  size_t sos = find_last(0xDA), eoi = find_last(0xD9);
  ASSERT_GT(sos, 0u);
  ASSERT_GT(eoi, sos);
  size_t scans = 0;
  for (size_t i = 0; i + 1 < prog.size(); ++i) scans += prog[i] == 0xFF && prog[i + 1] == 0xDA;
  auto repeated = [&](size_t total) {
    std::vector<uint8_t> out(prog.begin(), prog.begin() + long(eoi));
    for (size_t k = scans; k < total; ++k) out.insert(out.end(), prog.begin() + long(sos), prog.begin() + long(eoi));
    out.insert(out.end(), prog.begin() + long(eoi), prog.end());
    return out;
  };
  EXPECT_EQ(decode_image(repeated(100)).bgr.size(), cv::Size(64, 64));
  try {
    decode_image(repeated(101));
    FAIL() << "101 scans decoded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::BadImage);
    EXPECT_NE(std::string(e.what()).find("101 scans"), std::string::npos) << e.what();
  }
  // The fuzz corpus keeps one (150 scans).
  EXPECT_EQ(decode_error(read_bytes(corpus("decode") / "jpeg_150_scans.jpg")), ErrorCode::BadImage);
}

// Every photo the project ships tests with ends its scan with EOI (the truncation check does not refuse them).
TEST(Hostile, SampleJpegsAreNotTakenForTruncated) {
  for (const auto& entry : fs::directory_iterator(shared_dir() + "/data/samples")) {
    if (entry.path().extension() != ".jpg") continue;
    SCOPED_TRACE(entry.path().filename().string());
    EXPECT_NO_THROW(decode_image(read_bytes(entry.path())));
  }
}

// The prompt comes back in X-Unmatched-Phrases: a 100 kB prompt made a header line Python's http.client refuses.
TEST(Hostile, PromptLengthIsLimited) {
  auto body = [](const std::string& prompt) {
    return nlohmann::json{{"prompt", prompt}, {"image", "QQ=="}}.dump();
  };
  auto parse = [](const std::string& text, Endpoint e) { return parse_mask_request(std::string_view(text), e); };
  EXPECT_NO_THROW(parse(body(std::string(4096, 'a')), Endpoint::Compatible));
  try {
    parse(body(std::string(100'000, 'a')), Endpoint::Compatible);
    FAIL() << "a 100 kB prompt was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_EQ(e.field(), "prompt");
  }
  nlohmann::json native = {{"phrases", std::vector<std::string>(1000, std::string(10, 'x') + "y")}, {"image", "QQ=="}};
  native["phrases"][0] = std::string(5000, 'z');
  try {
    parse(native.dump(), Endpoint::Native);
    FAIL() << "a 5 kB phrase list was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.field(), "phrases");
  }
}

// JSON has no NaN/Infinity; nlohmann refuses them, and invalid UTF-8, at parse time: 400 "not valid JSON".
TEST(Hostile, NonJsonNumbersAndBadUtf8AreNotJson) {
  const std::vector<std::string> bodies = {R"({"prompt":"a","image":"QQ==","iou_thresh":NaN})",
                                           R"({"prompt":"a","image":"QQ==","iou_thresh":Infinity})",
                                           R"({"prompt":"a","image":"QQ==","grow_mask":1e400})",
                                           "{\"prompt\":\"a\xff\",\"image\":\"QQ==\"}",
                                           R"({"prompt":"\ud800","image":"QQ=="})"};
  for (const std::string& body : bodies) {
    SCOPED_TRACE(body);
    try {
      parse_mask_request(std::string_view(body), Endpoint::Compatible);
      FAIL() << "accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
      EXPECT_NE(std::string(e.what()).find("JSON"), std::string::npos) << e.what();
    }
  }
}

// The fuzz corpora, replayed through the same entry points as the fuzzers: only maskmaker::Error may escape.
TEST(Hostile, FuzzCorpusDecode) {
  size_t n = 0;
  for (const auto& entry : fs::directory_iterator(corpus("decode"))) {
    SCOPED_TRACE(entry.path().filename().string());
    auto bytes = read_bytes(entry.path());
    DecodeLimits limits;
    limits.max_pixels = 4'000'000;
    try {
      DecodedImage img = decode_image(bytes, limits);
      EXPECT_EQ(img.bgr.type(), CV_8UC3);
    } catch (const Error& e) {
      EXPECT_TRUE(e.code() == ErrorCode::BadImage || e.code() == ErrorCode::UnsupportedImage ||
                  e.code() == ErrorCode::ImageTooLarge);
    }
    ++n;
  }
  EXPECT_GE(n, 10u);
}

TEST(Hostile, FuzzCorpusRequest) {
  size_t n = 0;
  for (const auto& entry : fs::directory_iterator(corpus("request"))) {
    SCOPED_TRACE(entry.path().filename().string());
    auto bytes = read_bytes(entry.path());
    if (bytes.empty()) continue;
    std::string body(bytes.begin() + 1, bytes.end());
    try {
      parse_mask_request(std::string_view(body), (bytes[0] & 1) ? Endpoint::Native : Endpoint::Compatible);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    }
    ++n;
  }
  EXPECT_GE(n, 5u);
}

TEST(Hostile, FuzzCorpusBase64) {
  size_t n = 0;
  for (const auto& entry : fs::directory_iterator(corpus("base64"))) {
    SCOPED_TRACE(entry.path().filename().string());
    auto bytes = read_bytes(entry.path());
    std::string text(bytes.begin(), bytes.end());
    auto round = base64_decode(base64_encode(bytes));
    ASSERT_TRUE(round.has_value());
    EXPECT_EQ(*round, bytes);
    std::string head = text.substr(0, 16);
    for (auto& c : head) c = char(std::tolower(static_cast<unsigned char>(c)));
    if (head.rfind("http://", 0) == 0 || head.rfind("https://", 0) == 0) continue;
    FetchLimits limits;
    limits.max_bytes = 1 << 16;
    for (const std::string& image : {text, "data:image/png;base64," + text}) {
      try {
        resolve_image_bytes(image, limits);
      } catch (const Error& e) {
        EXPECT_TRUE(e.code() == ErrorCode::InvalidArgument || e.code() == ErrorCode::PayloadTooLarge ||
                    e.code() == ErrorCode::ForbiddenUrl);
      }
    }
    ++n;
  }
  EXPECT_GE(n, 5u);
}

// The address guard behind every fetch and every redirect hop (the HTTP suite cannot stage a public server
// redirecting to a private address on loopback, so the guard's table is pinned here).
TEST(Hostile, ForbiddenAddresses) {
  for (const char* ip : {"127.0.0.1", "127.255.255.254", "0.0.0.0", "10.1.2.3", "172.16.0.1", "172.31.255.255",
                         "192.168.0.1", "169.254.169.254", "169.254.0.1", "100.64.0.1", "192.0.0.1", "198.18.0.1",
                         "224.0.0.1", "255.255.255.255", "::", "::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
                         "::127.0.0.1", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::", "2002:a00:1::",
                         "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1"}) {
    EXPECT_NE(forbidden_address_reason(ip), "") << ip;
  }
  for (const char* ip : {"8.8.8.8", "1.1.1.1", "93.184.216.34", "172.32.0.1", "192.169.0.1", "2606:4700::1111",
                         "2001:4860:4860::8888", "::ffff:8.8.8.8", "2002:808:808::"}) {
    EXPECT_EQ(forbidden_address_reason(ip), "") << ip;
  }
  EXPECT_EQ(forbidden_address_reason("localhost"), "not an IP address");
}
