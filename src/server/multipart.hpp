// multipart/form-data (RFC 7578), bounded: the body is already in memory (under --max-body-bytes); the parser caps
// the number of parts and the header bytes of each, and the form is reduced to the API's known fields.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "service/request.hpp"

namespace maskmaker::server {

struct FormPart {
  std::string name, filename, content_type, content;
};

struct MultipartLimits {
  size_t max_parts = 64;
  size_t max_part_header_bytes = 2048;
};

// The parts of a multipart/form-data body, by name. Throws Error(InvalidArgument) for a malformed body, an
// unknown or repeated field, invalid UTF-8 in a field name, or more parts than max_parts.
std::multimap<std::string, FormPart> parse_multipart(std::string_view body, std::string_view content_type,
                                                     const MultipartLimits& limits);

// The form's text fields, as the service's codec reads them (service/request.hpp parse_mask_form: each by its
// parameter's type, UTF-8 and nesting checked there); an `image` part that is a file (a filename, or an image/*
// type) goes to `image_bytes`.
std::vector<service::FormField> form_fields(const std::multimap<std::string, FormPart>& parts,
                                           std::vector<uint8_t>& image_bytes);

}  // namespace maskmaker::server
