// Text and body helpers of the HTTP front end (http_message.cpp), shared by the transport (http_server.cpp).
#pragma once

#include <regex>
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

namespace maskmaker::server {
struct Route {
  std::regex pattern;
  HttpHandler handler;
  bool inline_io = false;
  HttpHeadHandler before_body;
  bool takes_body = false;  // GET routes take none: a body sent to one is refused unread, never buffered
};
// The route for the request's method and path (GET also answers HEAD); fills req.matches. nullptr when none.
const Route* match_route(const std::vector<Route>& get_routes, const std::vector<Route>& post_routes, HttpRequest& req);

// The head's checks once its lines are read: header count (431), UTF-8 of values and of the decoded path, the
// Transfer-Encoding rule, the target's path and query (400). 0 when it passes, else the status and `message`.
int check_request_head(HttpRequest& req, size_t max_header_count, std::string& message);
// The status line and headers of an answer (the default headers added where the handler set none).
std::string serialize_head(HttpResponse& res, const std::vector<HttpHeader>& default_headers, bool keep_alive);
}  // namespace maskmaker::server
