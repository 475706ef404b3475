// The HTTP/1.1 front end (Boost.Beast over Asio, in http_server.cpp only): plain request/response types, a
// two-phase route and hard limits on what a client can make the server hold or wait for.
//
// Phase 1, once the head is read and before any body byte: the pre-routing handler (I/O thread: 404, 405, OPTIONS)
// and the route's before_body check (a worker: authentication) may answer. Phase 2, on a worker thread: the
// route's handler, with the body read (de-chunked, decompressed) under max_body_bytes. The I/O threads never block
// on inference or a database: /healthz keeps answering.
#pragma once

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace maskmaker::server {

struct HttpLimits {
  size_t max_body_bytes = 32 * 1024 * 1024;   // 413 above, whatever the framing (decompressed size too)
  size_t max_header_bytes = 16 * 1024;        // request line + headers; 431 above
  size_t max_header_count = 100;              // 431 above
  size_t max_connections = 512;               // open connections; above: 503 and close
  size_t max_connections_per_client = 64;     // per peer address (0 = no cap)
  std::chrono::milliseconds head_timeout{10'000};       // the whole head, from its first byte; 408
  std::chrono::milliseconds body_read_timeout{30'000};  // each read of the body; 408
  std::chrono::milliseconds keep_alive_timeout{5'000};  // idle between requests: closed silently
  std::chrono::milliseconds write_timeout{30'000};
  int io_threads = 2;
  int worker_threads = 16;
};

struct HttpHeader {
  std::string name, value;
};

struct HttpRequest {
  std::string method;
  std::string target;  // as sent
  std::string path;    // percent-decoded (valid UTF-8: checked by the transport)
  std::string query;   // raw, without '?'
  std::string peer;    // client address
  std::vector<HttpHeader> headers;
  std::string body;
  std::vector<std::string> matches;  // the route pattern's groups; [0] is the whole path
  std::shared_ptr<void> context;     // the application's per-request state, kept across both phases

  bool has_header(std::string_view name) const;
  std::string get_header_value(std::string_view name) const;  // the first one; "" when absent
  bool is_multipart_form_data() const;
};

struct HttpResponse {
  int status = 200;
  std::vector<HttpHeader> headers;
  std::string body;

  void set_header(std::string_view name, std::string_view value);  // replaces; CR, LF and NUL are dropped
  bool has_header(std::string_view name) const;
  std::string get_header_value(std::string_view name) const;
  void set_content(std::string content, std::string_view content_type);
};

using HttpHandler = std::function<void(HttpRequest&, HttpResponse&)>;
using HttpHeadHandler = std::function<bool(HttpRequest&, HttpResponse&)>;  // true: `res` is the answer

class HttpServer {
 public:
  explicit HttpServer(HttpLimits limits);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Phase 1 (I/O thread, body unread): return true when `res` is the answer. Called for every request.
  void set_pre_routing_handler(std::function<bool(HttpRequest&, HttpResponse&)> handler);
  // The one error writer: every error the transport answers (400, 404, 408, 413, 415, 431, 503) goes through it.
  void set_error_writer(std::function<void(HttpResponse&, int status, const std::string& message)> writer);
  // A handler threw: write the 500 (never the exception's text) and log it.
  void set_exception_handler(std::function<void(const HttpRequest&, HttpResponse&, std::exception_ptr)> handler);
  // After each answer is written (I/O thread).
  void set_logger(std::function<void(const HttpRequest&, const HttpResponse&)> logger);
  // Added to every answer that does not set them itself.
  void set_default_headers(std::vector<HttpHeader> headers);

  // Phase 2 routes; `pattern` is a std::regex matched against the whole decoded path. GET routes also answer HEAD.
  // inline_io: run on the I/O thread (only for handlers that never block).
  void Get(const std::string& pattern, HttpHandler handler, bool inline_io = false);
  // before_body: run on a worker once the route is known and before any body byte is read (a check that may
  // block, as a key lookup in a remote database); it may answer.
  void Post(const std::string& pattern, HttpHandler handler, HttpHeadHandler before_body = {});

  bool bind(const std::string& host, int port);
  // Serves until stop(), then returns once every connection is closed (requests in flight are answered).
  void run();
  // Thread-safe, also before run(): no new connections, idle ones closed, the others closed after their answer.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

bool is_valid_utf8(std::string_view text);
// The text with control bytes, '\\', '"' and non-ASCII written as \xHH: safe inside one log line.
std::string escape_for_log(std::string_view text, size_t max_bytes = 512);

}  // namespace maskmaker::server
