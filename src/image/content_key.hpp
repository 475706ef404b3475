// The key of the per-image caches (image embeddings, detector boxes, instance masks): SHA-256 of the decoded
// pixels with their size and type, and of a cache scope. A non-cryptographic hash (std::hash) can be collided on
// purpose, and a victim would then get masks computed from the attacker's image; the scope (the server passes the
// API key's id) keeps tenants' entries apart, so a fast answer tells no one which images another tenant sent.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include <opencv2/core.hpp>

namespace maskmaker {

struct ContentKey {
  std::array<uint8_t, 32> digest{};  // all zero: no key (not cached)
  bool operator==(const ContentKey&) const = default;
  bool empty() const { return *this == ContentKey{}; }
};

// For hash tables: the digest is uniform already, so its first bytes are the bucket hash.
struct ContentKeyHash {
  size_t operator()(const ContentKey& k) const {
    size_t h;
    std::memcpy(&h, k.digest.data(), sizeof h);
    return h;
  }
};

// SHA-256 over (scope length, scope, type, width, height, pixel rows); computed once per request.
ContentKey content_key(const cv::Mat& image, std::string_view scope = {});

}  // namespace maskmaker
