#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace maskmaker::service {
// Standard or URL-safe alphabet; whitespace ignored; padding optional. nullopt on any other character or a
// dangling single character.
std::optional<std::vector<uint8_t>> base64_decode(std::string_view text);
std::string base64_encode(const uint8_t* data, size_t size);
inline std::string base64_encode(const std::vector<uint8_t>& v) { return base64_encode(v.data(), v.size()); }
}  // namespace maskmaker::service
