// HTTP messages: header access, text checks and the body helpers of the transport (no Beast here).
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "runtime/ascii.hpp"
#include "runtime/utf8.hpp"
#include "server/http_detail.hpp"
#include "server/http_server.hpp"

#include <boost/beast/http/status.hpp>

namespace maskmaker::server {
namespace http_detail {

int hex_value(char c);

bool iequals(std::string_view a, std::string_view b) { return rt::ascii_iequals(a, b); }
std::string lower(std::string_view s) { return rt::ascii_lower(s); }
std::string trim(std::string_view s) { return std::string(rt::trim_blanks(s)); }

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

const Route* match_route(const std::vector<Route>& get_routes, const std::vector<Route>& post_routes, HttpRequest& req) {
  const std::vector<Route>* routes = nullptr;
  if (req.method == "GET" || req.method == "HEAD") routes = &get_routes;
  else if (req.method == "POST") routes = &post_routes;
  if (!routes) return nullptr;
  for (const Route& r : *routes) {
    std::smatch m;
    if (std::regex_match(req.path, m, r.pattern)) {
      req.matches.clear();
      for (const auto& g : m) req.matches.push_back(g.str());
      return &r;
    }
  }
  return nullptr;
}

int check_request_head(HttpRequest& req, size_t max_header_count, std::string& message) {
  if (req.headers.size() > max_header_count) {
    message = "too many request headers (at most " + std::to_string(max_header_count) + ")";
    return 431;
  }
  for (const auto& h : req.headers)
    if (!is_valid_utf8(h.value)) {
      message = "header " + h.name + " is not valid UTF-8";
      return 400;
    }
  // RFC 9112 6.3: a request whose last transfer coding is not chunked has no knowable length.
  if (const char* te = header_value_or(req.headers, "Transfer-Encoding")) {
    std::string codings = lower(te);
    size_t comma = codings.rfind(',');
    if (trim(comma == std::string::npos ? std::string_view(codings) : std::string_view(codings).substr(comma + 1)) != "chunked") {
      message = "Transfer-Encoding must end with chunked";
      return 400;
    }
    // Only chunked is decoded: a body under another transfer coding would be read as if it were plain.
    if (comma != std::string::npos) {
      message = "Transfer-Encoding '" + trim(std::string_view(codings).substr(0, comma)) +
                "' is not supported: send the body chunked, compressed with Content-Encoding";
      return 501;
    }
  }
  std::string_view target = req.target;
  // absolute-form (a proxy's request): keep the path
  if (target.rfind("http://", 0) == 0 || target.rfind("https://", 0) == 0) {
    size_t slash = target.find('/', target.find("//") + 2);
    target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
  }
  size_t q = target.find('?');
  std::string_view raw_path = target.substr(0, q);
  if (q != std::string_view::npos) req.query = std::string(target.substr(q + 1));
  if (size_t hash = raw_path.find('#'); hash != std::string_view::npos) raw_path = raw_path.substr(0, hash);
  req.path = percent_decode(raw_path);
  if (req.path.empty() || req.path[0] != '/') {
    message = "the request target must be a path starting with '/'";
    return 400;
  }
  if (!is_valid_utf8(req.path) || req.path.find('\0') != std::string::npos) {
    req.path = "/";  // never shown nor logged decoded
    message = "the request path is not valid UTF-8 once percent-decoded";
    return 400;
  }
  return 0;
}

std::string serialize_head(HttpResponse& res, const std::vector<HttpHeader>& default_headers, bool keep_alive) {
  for (const auto& h : default_headers)
    if (!res.has_header(h.name)) res.headers.push_back(h);
  const auto reason = boost::beast::http::obsolete_reason(boost::beast::http::int_to_status(unsigned(res.status)));
  std::string out = "HTTP/1.1 " + std::to_string(res.status) + " " +
                    std::string(reason.empty() ? "Unknown" : std::string_view(reason.data(), reason.size())) + "\r\n";
  for (const auto& h : res.headers) {
    if (iequals(h.name, "Content-Length") || iequals(h.name, "Connection") || iequals(h.name, "Transfer-Encoding")) continue;
    out += h.name + ": " + h.value + "\r\n";
  }
  if (res.status >= 200 && res.status != 204 && res.status != 304)
    out += "Content-Length: " + std::to_string(res.body.size()) + "\r\n";
  out += keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  return out;
}

}  // namespace maskmaker::server
