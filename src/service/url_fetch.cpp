#include "service/url_fetch.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>

#include <curl/curl.h>

#include "maskmaker/maskmaker.hpp"

namespace maskmaker::service {
namespace {

bool in_v4(uint32_t ip, const char* net, int bits) {
  in_addr a{};
  inet_pton(AF_INET, net, &a);
  uint32_t n = ntohl(a.s_addr);
  uint32_t mask = bits == 0 ? 0 : ~uint32_t(0) << (32 - bits);
  return (ip & mask) == (n & mask);
}

std::string v4_reason(uint32_t ip) {
  if (in_v4(ip, "0.0.0.0", 8)) return "unspecified/this-network";
  if (in_v4(ip, "127.0.0.0", 8)) return "loopback";
  if (in_v4(ip, "10.0.0.0", 8) || in_v4(ip, "172.16.0.0", 12) || in_v4(ip, "192.168.0.0", 16)) return "private";
  if (in_v4(ip, "169.254.0.0", 16)) return ip == 0xA9FEA9FE ? "cloud metadata" : "link-local";
  if (in_v4(ip, "100.64.0.0", 10)) return "shared/carrier-grade NAT";
  if (in_v4(ip, "192.0.0.0", 24)) return "IETF protocol assignment";
  if (in_v4(ip, "198.18.0.0", 15)) return "benchmarking";
  if (in_v4(ip, "224.0.0.0", 4)) return "multicast";
  if (in_v4(ip, "240.0.0.0", 4)) return "reserved/broadcast";
  return "";
}

struct CurlUrl {
  CURLU* h = curl_url();
  ~CurlUrl() { curl_url_cleanup(h); }
  std::string get(CURLUPart part, unsigned flags = 0) const {
    char* v = nullptr;
    if (curl_url_get(h, part, &v, flags) != CURLUE_OK || !v) return "";
    std::string s(v);
    curl_free(v);
    return s;
  }
};

struct Parsed {
  std::string scheme, host, port, url;
};

Parsed parse_url(const std::string& url, const UrlRole& role) {
  CurlUrl u;
  const std::string name = role.name;
  if (curl_url_set(u.h, CURLUPART_URL, url.c_str(), 0) != CURLUE_OK)
    throw Error(role.invalid, name + " is not a valid URL", role.field);
  Parsed p;
  p.scheme = u.get(CURLUPART_SCHEME);
  std::transform(p.scheme.begin(), p.scheme.end(), p.scheme.begin(), ::tolower);
  if (p.scheme != "http" && p.scheme != "https")
    throw Error(role.invalid, role.scheme_named ? name + " scheme '" + p.scheme + "' is not allowed: use http or https"
                                                : name + " must be an http(s) URL", role.field);
  p.host = u.get(CURLUPART_HOST);
  p.port = u.get(CURLUPART_PORT, CURLU_DEFAULT_PORT);
  p.url = u.get(CURLUPART_URL);
  if (p.host.empty()) throw Error(role.invalid, name + " has no host", role.field);
  if (p.host.size() > 2 && p.host.front() == '[' && p.host.back() == ']') p.host = p.host.substr(1, p.host.size() - 2);
  return p;
}

// A lookup abandoned at its deadline finishes in its own thread and frees what it shares then.
struct Lookup {
  std::mutex mutex;
  std::condition_variable done_cv;
  bool done = false;
  bool failed = false;
  std::vector<std::string> addresses;
};
std::atomic<int> lookups_running{0};
constexpr int kMaxLookups = 64;

std::vector<std::string> lookup_addresses(const std::string& host, const std::string& port, bool& failed) {
  std::vector<std::string> out;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || !res) {
    failed = true;
    return out;
  }
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (ai->ai_family == AF_INET) inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_addr, buf, sizeof buf);
    else if (ai->ai_family == AF_INET6) inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_addr, buf, sizeof buf);
    else continue;
    out.emplace_back(buf);
  }
  freeaddrinfo(res);
  return out;
}

// The host's addresses, by `deadline`.
std::vector<std::string> resolve(const Parsed& p, std::chrono::steady_clock::time_point deadline, const UrlRole& role) {
  in_addr v4{};
  in6_addr v6{};
  if (inet_pton(AF_INET, p.host.c_str(), &v4) == 1 || inet_pton(AF_INET6, p.host.c_str(), &v6) == 1) {
    bool failed = false;
    return lookup_addresses(p.host, p.port, failed);  // a literal: no DNS
  }
  const std::string unresolved = std::string("cannot resolve ") + role.possessive + " host '" + p.host + "'";
  if (lookups_running.fetch_add(1) >= kMaxLookups) {
    lookups_running.fetch_sub(1);
    throw Error(role.unresolved, unresolved + ": too many slow DNS lookups in progress", role.field);
  }
  auto lookup = std::make_shared<Lookup>();
  try {
    std::thread([lookup, host = p.host, port = p.port] {
      bool failed = false;
      auto addresses = lookup_addresses(host, port, failed);
      {
        std::lock_guard lock(lookup->mutex);
        lookup->addresses = std::move(addresses);
        lookup->failed = failed;
        lookup->done = true;
      }
      lookup->done_cv.notify_all();
      lookups_running.fetch_sub(1);
    }).detach();
  } catch (const std::system_error&) {
    lookups_running.fetch_sub(1);
    throw Error(role.unresolved, unresolved + ": no thread for the lookup", role.field);
  }
  std::unique_lock lock(lookup->mutex);
  if (!lookup->done_cv.wait_until(lock, deadline, [&] { return lookup->done; }))
    throw Error(ErrorCode::Timeout, std::string("resolving ") + role.possessive + " host '" + p.host +
                                        "' took too long", role.field);
  if (lookup->failed) throw Error(role.unresolved, unresolved, role.field);
  return std::move(lookup->addresses);
}

// Resolves the host and returns one address that passes the guard (or throws).
std::string checked_address(const Parsed& p, bool allow_private, std::chrono::steady_clock::time_point deadline,
                            const UrlRole& role) {
  std::string chosen;
  for (const std::string& address : resolve(p, deadline, role)) {
    std::string reason = forbidden_address_reason(address);
    // Every address must pass: a host that resolves to one public and one private address is refused.
    if (!reason.empty() && !allow_private)
      throw Error(ErrorCode::ForbiddenUrl, std::string(role.name) + " host '" + p.host +
                                               "' resolves to a forbidden address (" + reason +
                                               "); private URLs are not allowed on this server", role.field);
    if (chosen.empty()) chosen = address;
  }
  if (chosen.empty())
    throw Error(role.unresolved, std::string("cannot resolve ") + role.possessive + " host '" + p.host + "'",
                role.field);
  return chosen;
}

struct Sink {
  std::vector<uint8_t> data;
  size_t max_bytes = 0;
  bool too_large = false;
};

size_t on_data(char* ptr, size_t size, size_t n, void* user) {
  auto* sink = static_cast<Sink*>(user);
  size_t bytes = size * n;
  if (sink->data.size() + bytes > sink->max_bytes) {
    sink->too_large = true;
    return 0;
  }
  sink->data.insert(sink->data.end(), ptr, ptr + bytes);
  return bytes;
}

struct CurlInit {
  CurlInit() { curl_global_init(CURL_GLOBAL_DEFAULT); }
};

}  // namespace

std::string forbidden_address_reason(const std::string& ip) {
  in_addr v4{};
  if (inet_pton(AF_INET, ip.c_str(), &v4) == 1) return v4_reason(ntohl(v4.s_addr));
  in6_addr v6{};
  if (inet_pton(AF_INET6, ip.c_str(), &v6) != 1) return "not an IP address";
  const uint8_t* b = v6.s6_addr;
  auto embedded_v4 = [&](int at) { return (uint32_t(b[at]) << 24) | (uint32_t(b[at + 1]) << 16) | (uint32_t(b[at + 2]) << 8) | b[at + 3]; };
  static const uint8_t zero[16] = {};
  if (std::memcmp(b, zero, 16) == 0) return "unspecified";
  if (std::memcmp(b, zero, 15) == 0 && b[15] == 1) return "loopback";
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(b, mapped, 12) == 0) return v4_reason(embedded_v4(12));
  if (std::memcmp(b, zero, 12) == 0) return v4_reason(embedded_v4(12));  // IPv4-compatible (deprecated)
  static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
  if (std::memcmp(b, nat64, 12) == 0) return v4_reason(embedded_v4(12));
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return "link-local";
  if ((b[0] & 0xfe) == 0xfc) return "private (unique local)";
  if (b[0] == 0xff) return "multicast";
  if (b[0] == 0x20 && b[1] == 0x02) return v4_reason(embedded_v4(2));  // 6to4 carries an IPv4 address
  return "";
}

GuardedCurl::GuardedCurl(const GuardedUrl& target, long connect_timeout_ms, long total_timeout_ms) {
  if (!handle) throw Error(ErrorCode::Internal, "curl_easy_init failed");
  if (!target.pin.empty()) resolve.reset(curl_slist_append(nullptr, target.pin.c_str()));
  CURL* c = handle.get();
  curl_easy_setopt(c, CURLOPT_URL, target.url.c_str());
  curl_easy_setopt(c, CURLOPT_RESOLVE, resolve.get());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_PROXY, "");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, connect_timeout_ms);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, total_timeout_ms);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "maskmaker/0.1");
}

std::vector<uint8_t> fetch_url(const std::string& url, const FetchLimits& limits) {
  static CurlInit init;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(limits.total_timeout_ms);
  std::string current = url;
  for (int hop = 0; hop <= limits.max_redirects; ++hop) {
    GuardedUrl target = guard_url(current, limits.allow_private, deadline);
    long left_ms = long(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count());
    if (left_ms <= 0) throw Error(ErrorCode::Timeout, "fetching the image URL took longer than " + std::to_string(limits.total_timeout_ms) + " ms", "image");

    GuardedCurl curl(target, std::min(limits.connect_timeout_ms, left_ms), left_ms);
    char* error = curl.error;
    Sink sink;
    sink.max_bytes = limits.max_bytes;
    curl_easy_setopt(curl.get(), CURLOPT_MAXFILESIZE_LARGE, curl_off_t(limits.max_bytes));
    curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(curl.get(), CURLOPT_ACCEPT_ENCODING, "");
    CURLcode rc = curl_easy_perform(curl.get());
    if (rc == CURLE_FILESIZE_EXCEEDED || sink.too_large)
      throw Error(ErrorCode::PayloadTooLarge, "the image at the URL is larger than the limit of " + std::to_string(limits.max_bytes) + " bytes", "image");
    if (rc == CURLE_OPERATION_TIMEDOUT)
      throw Error(ErrorCode::Timeout, "fetching the image URL timed out", "image");
    if (rc != CURLE_OK)
      throw Error(ErrorCode::FetchFailed, std::string("cannot fetch the image URL: ") + (error[0] ? error : curl_easy_strerror(rc)), "image");
    long status = 0;
    curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &status);
    if (status >= 300 && status < 400) {
      char* location = nullptr;
      curl_easy_getinfo(curl.get(), CURLINFO_REDIRECT_URL, &location);
      if (!location) throw Error(ErrorCode::FetchFailed, "the image URL answered a redirect without a location", "image");
      current = location;
      continue;
    }
    if (status < 200 || status >= 300)
      throw Error(ErrorCode::FetchFailed, "the image URL answered HTTP " + std::to_string(status), "image");
    return std::move(sink.data);
  }
  throw Error(ErrorCode::FetchFailed, "the image URL redirected more than " + std::to_string(limits.max_redirects) + " times", "image");
}

UrlRole webhook_url_role() {
  UrlRole role;
  role.name = "webhook_url";
  role.possessive = "webhook_url's";
  role.field = "webhook_url";
  role.invalid = ErrorCode::InvalidArgument;
  role.unresolved = ErrorCode::InvalidArgument;
  role.scheme_named = false;
  return role;
}

GuardedUrl guard_url(const std::string& url, bool allow_private, std::chrono::steady_clock::time_point deadline,
                     const UrlRole& role) {
  static CurlInit init;
  Parsed p = parse_url(url, role);
  const std::string address = checked_address(p, allow_private, deadline, role);
  GuardedUrl g;
  g.url = p.url;
  g.host = p.host;
  g.port = p.port;
  // Pin the name to the address just checked (no second lookup: no DNS rebinding). An IP literal needs no pin,
  // and curl cannot parse a "HOST:PORT:ADDRESS" entry whose HOST is an IPv6 literal.
  in6_addr v6{};
  if (inet_pton(AF_INET6, p.host.c_str(), &v6) != 1)
    g.pin = p.host + ":" + p.port + ":" + (address.find(':') != std::string::npos ? "[" + address + "]" : address);
  return g;
}

void check_url(const std::string& url, const FetchLimits& limits) {
  try {
    guard_url(url, limits.allow_private,
              std::chrono::steady_clock::now() + std::chrono::milliseconds(limits.connect_timeout_ms));
  } catch (const Error& e) {
    if (e.code() == ErrorCode::ForbiddenUrl) throw;
  }
}

}  // namespace maskmaker::service
