// The `image` field's three forms (the request type and its codec: maskmaker/service.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "maskmaker/service.hpp"
#include "service/url_fetch.hpp"

namespace maskmaker::service {

// Bytes of the `image` field: fetched (http/https), a data URI, or bare base64.
// Throws Error with ForbiddenUrl / FetchFailed / Timeout / PayloadTooLarge / InvalidArgument.
std::vector<uint8_t> resolve_image_bytes(const std::string& image, const FetchLimits& limits);
// An http(s) URL (fetched), as opposed to inline bytes.
bool is_image_url(const std::string& image);
// An inline image (upload, data URI, base64) over --fetch-max-bytes: 413, the same for every way it came.
void check_image_size(size_t bytes, const FetchLimits& limits);

}  // namespace maskmaker::service
