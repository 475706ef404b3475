// Fetches image URLs safely: http(s) only, every address (and every redirect's) checked against forbidden
// ranges, the connection pinned to the checked address (no DNS rebinding), time and byte limits.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <curl/curl.h>
#include <vector>

#include "maskmaker/maskmaker.hpp"

namespace maskmaker::service {

struct FetchLimits {
  bool allow_private = false;
  long connect_timeout_ms = 5000;
  long total_timeout_ms = 15000;
  size_t max_bytes = 20 * 1024 * 1024;
  int max_redirects = 5;
};

// Why an address is forbidden ("loopback", "private", ...), or "" when it may be fetched.
// Accepts IPv4 and IPv6 literals, IPv4-mapped/compatible and NAT64 forms.
std::string forbidden_address_reason(const std::string& ip_literal);

// What a guarded URL is for, in its error messages: the image URL (the default) or a job's webhook_url.
struct UrlRole {
  const char* name = "image URL";            // "image URL host 'x' resolves to a forbidden address ..."
  const char* possessive = "the image URL's";  // "cannot resolve the image URL's host 'x'"
  const char* field = "image";
  ErrorCode invalid = ErrorCode::ForbiddenUrl;    // not a URL, not http(s), no host
  ErrorCode unresolved = ErrorCode::FetchFailed;  // the host has no address (or not in time)
  bool scheme_named = true;  // "image URL scheme 'ftp' is not allowed: ..." vs "webhook_url must be an http(s) URL"
};
UrlRole webhook_url_role();

// A URL that passed the guard: http(s), every address its host resolves to allowed (unless allow_private), and
// the address to connect to chosen, so that the connection goes where the check looked (no DNS rebinding).
struct GuardedUrl {
  std::string url;   // normalised
  std::string host;  // without brackets
  std::string port;
  std::string pin;   // "host:port:address" for CURLOPT_RESOLVE; "" for an IPv6 literal (nothing to pin)
};

// Parses and checks `url`, resolving its host by `deadline` (getaddrinfo has no timeout of its own: the lookup
// runs in its own thread, and a late one is abandoned, at most a few dozen at once). Throws Error: role.invalid,
// ForbiddenUrl (a forbidden address), role.unresolved (no address), Timeout (the lookup took too long).
GuardedUrl guard_url(const std::string& url, bool allow_private, std::chrono::steady_clock::time_point deadline,
                     const UrlRole& role = {});

// The body of a 2xx answer. Throws maskmaker::Error: ForbiddenUrl (400), FetchFailed (502),
// PayloadTooLarge (413), Timeout (504).
std::vector<uint8_t> fetch_url(const std::string& url, const FetchLimits& limits);

// A libcurl handle for one request to a guarded URL: connected only to the address the guard checked (`pin`), http(s)
// only, no redirects followed, no proxy, no signals, the given connect and total time limits; `error` receives
// curl's message. Both the image fetch and the webhooks use it.
struct GuardedCurl {
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> handle{curl_easy_init(), curl_easy_cleanup};
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> resolve{nullptr, curl_slist_free_all};
  char error[CURL_ERROR_SIZE] = {};
  GuardedCurl(const GuardedUrl& target, long connect_timeout_ms, long total_timeout_ms);
  CURL* get() const { return handle.get(); }
};

// The checks fetch_url makes before it connects (URL syntax, scheme, every resolved address against the guard),
// without fetching, for a URL to be fetched later (asynchronous jobs): throws ForbiddenUrl (400). A host that does
// not resolve passes: the fetch reports it.
void check_url(const std::string& url, const FetchLimits& limits);

}  // namespace maskmaker::service
