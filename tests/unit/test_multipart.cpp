// The bounded multipart/form-data codec (src/server/multipart.cpp) and the front end's text helpers.
#include <gtest/gtest.h>

#include <string>

#include "maskmaker/maskmaker.hpp"
#include "server/http_server.hpp"
#include "server/multipart.hpp"

using namespace maskmaker;
using namespace maskmaker::server;

namespace {

const char* kType = "multipart/form-data; boundary=XyZ";

std::string part(const std::string& name, const std::string& value, const std::string& extra = "") {
  return "--XyZ\r\nContent-Disposition: form-data; name=\"" + name + "\"" + extra + "\r\n\r\n" + value + "\r\n";
}

std::string message_of(const std::string& body, const MultipartLimits& limits = {}) {
  try {
    parse_multipart(body, kType, limits);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Multipart, ParsesFieldsAndAFile) {
  std::string body = part("prompt", "a dog") +
                     "--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
                     "Content-Type: image/png\r\n\r\n\x89PNG\r\n\r\n" + part("grow_mask", "3") + "--XyZ--\r\n";
  auto parts = parse_multipart(body, kType, {});
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts.find("prompt")->second.content, "a dog");
  EXPECT_EQ(parts.find("image")->second.filename, "a.png");
  EXPECT_EQ(parts.find("image")->second.content, "\x89PNG\r\n");
  std::vector<uint8_t> image;
  auto fields = form_fields(parts, image);
  EXPECT_EQ(image.size(), 6u);
  auto request = service::parse_mask_form(fields, image, service::Endpoint::Native);
  EXPECT_EQ(request.prompt, "a dog");
  EXPECT_EQ(request.params.grow_mask, 3);
  EXPECT_EQ(request.upload.size(), 6u);
}

TEST(Multipart, BoundsAndRefusals) {
  MultipartLimits two{2, 2048};
  EXPECT_EQ(message_of(part("prompt", "x") + part("output", "mask") + part("base64", "true") + "--XyZ--\r\n", two),
            "multipart form has more than 2 parts");
  EXPECT_EQ(message_of(part("prompt", "x") + part("prompt", "y") + "--XyZ--\r\n"),
            "form field prompt is given more than once");
  EXPECT_EQ(message_of(part("surprise", "x") + "--XyZ--\r\n"),
            "unknown form field 'surprise' (see /openapi.json for the fields)");
  EXPECT_EQ(message_of(part("prompt", "x")), "multipart body is truncated (no closing boundary)");
  EXPECT_EQ(message_of("--XyZ\r\n\r\n\r\n--XyZ--\r\n"), "a multipart part has no Content-Disposition name");
  EXPECT_EQ(message_of(part("prompt", "x", "; x=\"" + std::string(3000, 'a') + "\"") + "--XyZ--\r\n"),
            "a multipart part's headers are longer than 2048 bytes");
  std::string flood;
  for (int i = 0; i < 100000; ++i) flood += "--XyZ\r\n\r\n\r\n";
  EXPECT_EQ(message_of(flood + "--XyZ--\r\n"), "a multipart part has no Content-Disposition name");
}

TEST(Multipart, FormFieldsCheckTextAndNesting) {
  std::vector<uint8_t> image;
  auto fields_of = [&](const std::string& name, const std::string& value) -> std::string {
    try {
      auto fields = form_fields(parse_multipart(part(name, value) + "--XyZ--\r\n", kType, {}), image);
      if (name != "image") fields.push_back({"image", "aGk="});
      service::parse_mask_form(fields, {}, service::Endpoint::Native);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(fields_of("prompt", "caf\xe9"), "prompt is not valid UTF-8 text");
  EXPECT_EQ(fields_of("phrases", std::string(40, '[') + std::string(40, ']')), "phrases is nested deeper than 32 levels");
  EXPECT_EQ(fields_of("phrases", "[\"dog\""), "phrases must be a string or a list of strings");
  EXPECT_EQ(fields_of("prompt", "[[[]]]"), "");  // a scalar field is text, never parsed as JSON
  auto parts = parse_multipart(part("phrases", "[\"dog\", \"cat\"]") + part("prompt", "[1]") + "--XyZ--\r\n", kType, {});
  auto fields = form_fields(parts, image);
  fields.push_back({"image", "aGk="});
  auto request = service::parse_mask_form(fields, {}, service::Endpoint::Native);
  EXPECT_EQ(request.prompt, "dog, cat");  // phrases win over prompt
  fields = {{"prompt", "[1]"}, {"image", "aGk="}};
  EXPECT_EQ(service::parse_mask_form(fields, {}, service::Endpoint::Native).prompt, "[1]");
}

TEST(HttpText, Utf8AndLogEscaping) {
  EXPECT_TRUE(is_valid_utf8("plain ascii"));
  EXPECT_TRUE(is_valid_utf8("caf\xc3\xa9 \xf0\x9f\x90\xb6"));
  EXPECT_FALSE(is_valid_utf8("\xff"));
  EXPECT_FALSE(is_valid_utf8("\xc3\x28"));
  EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));      // a surrogate
  EXPECT_FALSE(is_valid_utf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_EQ(escape_for_log("/x\r\nforged \"a\"\\"), "/x\\x0d\\x0aforged \\x22a\\x22\\x5c");
}
