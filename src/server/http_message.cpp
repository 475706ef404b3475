// HTTP messages: header access, text checks and the body helpers of the transport (no Beast here).
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "runtime/utf8.hpp"
#include "server/http_detail.hpp"
#include "server/http_server.hpp"

namespace maskmaker::server {
namespace http_detail {

int hex_value(char c);

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return std::tolower((unsigned char)x) == std::tolower((unsigned char)y); });
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return out;
}

std::string trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  return b == std::string_view::npos ? std::string() : std::string(s.substr(b, e - b + 1));
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// %XX decoded ('+' stays: it is a plus in a path); a malformed escape stays as it is.
std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += char(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

const char* header_value_or(const std::vector<HttpHeader>& headers, std::string_view name) {
  for (const auto& h : headers)
    if (iequals(h.name, name)) return h.value.c_str();
  return nullptr;
}

// Inflates a gzip or zlib (deflate) body into `out`, at most `limit` bytes. 0 ok, 1 too large, -1 bad data.
int inflate_body(const std::string& in, bool gzip, size_t limit, std::string& out) {
  z_stream zs{};
  if (inflateInit2(&zs, gzip ? 16 + MAX_WBITS : MAX_WBITS) != Z_OK) return -1;
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = uInt(in.size());
  char buf[16384];
  int rc = Z_OK, result = 0;
  while (rc != Z_STREAM_END) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) { result = -1; break; }
    size_t n = sizeof buf - zs.avail_out;
    if (out.size() + n > limit) { result = 1; break; }
    out.append(buf, n);
    if (rc == Z_OK && n == 0 && zs.avail_in == 0) { result = -1; break; }  // truncated stream
  }
  inflateEnd(&zs);
  return result;
}

}  // namespace http_detail

using namespace http_detail;

// ------------------------------------------------------------------------------------------ request / response

bool HttpRequest::has_header(std::string_view name) const { return header_value_or(headers, name) != nullptr; }

std::string HttpRequest::get_header_value(std::string_view name) const {
  const char* v = header_value_or(headers, name);
  return v ? std::string(v) : std::string();
}

bool HttpRequest::is_multipart_form_data() const {
  return lower(get_header_value("Content-Type")).rfind("multipart/form-data", 0) == 0;
}

void HttpResponse::set_header(std::string_view name, std::string_view value) {
  std::string clean;
  for (char c : value)
    if (c != '\r' && c != '\n' && c != '\0') clean += c;
  for (auto& h : headers)
    if (iequals(h.name, name)) {
      h.value = std::move(clean);
      return;
    }
  headers.push_back({std::string(name), std::move(clean)});
}

bool HttpResponse::has_header(std::string_view name) const { return header_value_or(headers, name) != nullptr; }

std::string HttpResponse::get_header_value(std::string_view name) const {
  const char* v = header_value_or(headers, name);
  return v ? std::string(v) : std::string();
}

void HttpResponse::set_content(std::string content, std::string_view content_type) {
  body = std::move(content);
  set_header("Content-Type", content_type);
}

bool is_valid_utf8(std::string_view s) { return valid_utf8(s); }

std::string escape_for_log(std::string_view s, size_t max_bytes) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max_bytes; ++i) {
    unsigned char c = s[i];
    if (c < 0x20 || c >= 0x7f || c == '\\' || c == '"') {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  if (s.size() > max_bytes) out += "...";
  return out;
}

}  // namespace maskmaker::server
