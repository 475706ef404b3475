// Text and body helpers of the HTTP front end (http_message.cpp), shared by the transport (http_server.cpp).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "server/http_server.hpp"

namespace maskmaker::server::http_detail {

bool iequals(std::string_view a, std::string_view b);
std::string lower(std::string_view s);
std::string trim(std::string_view s);
// %XX decoded ('+' stays: it is a plus in a path); a malformed escape stays as it is.
std::string percent_decode(std::string_view s);
const char* header_value_or(const std::vector<HttpHeader>& headers, std::string_view name);
// Inflates a gzip or zlib (deflate) body into `out`, at most `limit` bytes. 0 ok, 1 too large, -1 bad data.
int inflate_body(const std::string& in, bool gzip, size_t limit, std::string& out);

}  // namespace maskmaker::server::http_detail
