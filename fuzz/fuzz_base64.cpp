// base64_decode / base64_encode and the `image` field's non-URL forms (data URI, bare base64).
// Properties: decode(encode(x)) == x for any bytes; decode never accepts what it documents as invalid;
// resolve_image_bytes only ever throws maskmaker::Error with a 4xx code, and never reaches the network.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "service/base64.hpp"
#include "service/request.hpp"

using namespace maskmaker;
using namespace maskmaker::service;

namespace {
bool is_url(std::string_view s) {
  std::string head(s.substr(0, 16));
  for (auto& c : head) c = char(std::tolower(static_cast<unsigned char>(c)));
  return head.rfind("http://", 0) == 0 || head.rfind("https://", 0) == 0;
}
void resolve(const std::string& image) {
  if (is_url(image)) return;  // no network from a fuzzer
  FetchLimits limits;
  limits.max_bytes = 1 << 16;
  try {
    auto bytes = resolve_image_bytes(image, limits);
    if (bytes.size() > limits.max_bytes) __builtin_trap();
  } catch (const Error& e) {
    if (e.code() != ErrorCode::InvalidArgument && e.code() != ErrorCode::PayloadTooLarge &&
        e.code() != ErrorCode::ForbiddenUrl)
      __builtin_trap();
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // 1. Any bytes survive an encode/decode round trip.
  std::string encoded = base64_encode(data, size);
  auto back = base64_decode(encoded);
  if (!back || back->size() != size || (size && std::memcmp(back->data(), data, size) != 0)) __builtin_trap();

  // 2. Any text decodes or is refused; what decodes re-encodes to text that decodes to the same bytes.
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto decoded = base64_decode(text)) {
    if (decoded->size() > size) __builtin_trap();
    auto again = base64_decode(base64_encode(*decoded));
    if (!again || *again != *decoded) __builtin_trap();
  }

  // 3. The image field: bare text, and the same text as a data URI's payload.
  std::string s(text);
  resolve(s);
  resolve("data:image/png;base64," + s);
  resolve("data:" + s);
  return 0;
}
