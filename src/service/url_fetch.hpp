// Fetches image URLs safely: http(s) only, every address (and every redirect's) checked against forbidden
// ranges, the connection pinned to the checked address (no DNS rebinding), time and byte limits.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

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

// The body of a 2xx answer. Throws maskmaker::Error: ForbiddenUrl (400), FetchFailed (502),
// PayloadTooLarge (413), Timeout (504).
std::vector<uint8_t> fetch_url(const std::string& url, const FetchLimits& limits);

// The checks fetch_url makes before it connects (URL syntax, scheme, every resolved address against the guard),
// without fetching, for a URL to be fetched later (asynchronous jobs): throws ForbiddenUrl (400). A host that does
// not resolve passes: the fetch reports it.
void check_url(const std::string& url, const FetchLimits& limits);

}  // namespace maskmaker::service
