#include "server/http_server.hpp"

#include "server/http_detail.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <map>
#include <mutex>
#include <optional>
#include <regex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <spdlog/spdlog.h>

namespace maskmaker::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using namespace http_detail;

namespace {


}  // namespace

// ------------------------------------------------------------------------------------------ the server

struct HttpServer::Impl {
  // One connection: its socket, a deadline timer (cancels the socket's operation, so that a 408 can still be
  // written), and whether it waits between requests (closed at once on stop()).
  struct Conn {
    explicit Conn(tcp::socket s) : socket(std::move(s)), timer(socket.get_executor()) {}
    tcp::socket socket;
    asio::steady_timer timer;
    bool idle = true;
    bool timed_out = false;
    uint64_t generation = 0;  // of the deadline: a timer that already fired for an older one does nothing
    std::string peer;
  };

  explicit Impl(HttpLimits l)
      : limits(std::move(l)), accept_strand(asio::make_strand(ioc)), acceptor(accept_strand),
        workers(size_t(std::max(1, limits.worker_threads))) {}

  HttpLimits limits;
  asio::io_context ioc;
  asio::strand<asio::io_context::executor_type> accept_strand;  // the acceptor's: accepting and stop() never race
  tcp::acceptor acceptor;
  asio::thread_pool workers;
  std::function<bool(HttpRequest&, HttpResponse&)> pre_routing;
  std::function<void(HttpResponse&, int, const std::string&)> error_writer;
  std::function<void(const HttpRequest&, HttpResponse&, std::exception_ptr)> exception_handler;
  std::function<void(const HttpRequest&, const HttpResponse&)> logger;
  std::vector<HttpHeader> default_headers;
  std::vector<Route> get_routes, post_routes;

  std::atomic<bool> stopping{false};
  std::mutex conn_mutex;
  size_t open_connections = 0;
  std::unordered_map<std::string, size_t> per_client;
  std::unordered_set<std::shared_ptr<Conn>> conns;

  void arm(const std::shared_ptr<Conn>& c, std::chrono::milliseconds d) {
    c->timed_out = false;
    c->timer.expires_after(d);
    c->timer.async_wait([w = std::weak_ptr<Conn>(c), gen = ++c->generation](boost::system::error_code ec) {
      if (ec) return;
      if (auto c = w.lock(); c && c->generation == gen) {
        c->timed_out = true;
        boost::system::error_code ignored;
        c->socket.cancel(ignored);
      }
    });
  }

  static void disarm(const std::shared_ptr<Conn>& c) {
    ++c->generation;
    c->timer.cancel();
  }

  void write_error(HttpResponse& res, int status, const std::string& message) {
    res.status = status;
    if (error_writer) error_writer(res, status, message);
    else res.set_content("{\"error\":\"request failed\"}", "application/json");
  }

  asio::awaitable<bool> write_response(std::shared_ptr<Conn> c, HttpResponse& res, bool head_request, bool keep_alive) {
    std::string head = serialize_head(res, default_headers, keep_alive);
    const bool with_body = !head_request && res.status >= 200 && res.status != 204 && res.status != 304;
    std::array<asio::const_buffer, 2> bufs{asio::buffer(head), asio::buffer(with_body ? std::string_view(res.body) : std::string_view())};
    arm(c, limits.write_timeout);
    auto [ec, n] = co_await asio::async_write(c->socket, bufs, asio::as_tuple(asio::use_awaitable));
    disarm(c);
    co_return !ec;
  }

  // After an answer given with the body unread: stop sending, then read and drop what the client still sends
  // (bounded in bytes and time), so that it gets its answer instead of a reset connection.
  asio::awaitable<void> linger(std::shared_ptr<Conn> c, size_t budget) {
    boost::system::error_code ignored;
    c->socket.shutdown(tcp::socket::shutdown_send, ignored);
    std::vector<char> buf(16384);
    const auto until = std::chrono::steady_clock::now() + std::min<std::chrono::milliseconds>(limits.body_read_timeout, 10s);
    size_t drained = 0;
    while (drained < budget && std::chrono::steady_clock::now() < until) {
      arm(c, std::min<std::chrono::milliseconds>(limits.body_read_timeout, 2s));
      auto [ec, n] = co_await c->socket.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
      if (ec) break;
      drained += n;
    }
    disarm(c);
  }

  size_t drain_budget() const {
    const size_t limit = limits.max_body_bytes;
    return limit + std::clamp<size_t>(limit, size_t(1) << 20, size_t(16) << 20);
  }

  const Route* find_route(HttpRequest& req) { return match_route(get_routes, post_routes, req); }

  void log(const HttpRequest& req, const HttpResponse& res) {
    if (!logger) return;
    try { logger(req, res); } catch (const std::exception& e) { spdlog::error("request logger: {}", e.what()); }
  }

  // The request line and headers are read and checked: fills `req`, or answers an error status.
  int fill_request(const bhttp::request_parser<bhttp::buffer_body>& parser, HttpRequest& req, std::string& message) {
    const auto& msg = parser.get();
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    for (const auto& f : msg) req.headers.push_back({std::string(f.name_string()), std::string(f.value())});
    return check_request_head(req, limits.max_header_count, message);
  }

  asio::awaitable<void> session(std::shared_ptr<Conn> c) {
    beast::flat_buffer buffer;
    bool first = true;
    for (;;) {
      // Between requests: wait for a first byte (a new connection gets the head timeout for it).
      c->idle = true;
      if (stopping.load() && !first) break;
      if (buffer.size() == 0) {
        arm(c, first ? limits.head_timeout : limits.keep_alive_timeout);
        auto [ec, n] = co_await c->socket.async_read_some(buffer.prepare(4096), asio::as_tuple(asio::use_awaitable));
        if (ec) break;  // closed by the client, idle too long, or stop()
        buffer.commit(n);
      }
      c->idle = false;
      first = false;

      HttpRequest req;
      req.peer = c->peer;
      HttpResponse res;
      bhttp::request_parser<bhttp::buffer_body> parser;
      parser.header_limit(std::uint32_t(std::min<size_t>(limits.max_header_bytes, UINT32_MAX)));
      parser.body_limit(boost::none);  // counted here, whatever the framing
      arm(c, limits.head_timeout);
      auto [ec, n] = co_await bhttp::async_read_header(c->socket, buffer, parser, asio::as_tuple(asio::use_awaitable));
      disarm(c);
      if (ec) {
        if (c->timed_out) write_error(res, 408, "the request head did not arrive within " +
                                                    std::to_string(limits.head_timeout.count()) + " ms");
        else if (ec == bhttp::error::header_limit) write_error(res, 431, "request headers are too large (at most " +
                                                                              std::to_string(limits.max_header_bytes) + " bytes)");
        else if (ec == bhttp::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
                 ec == asio::error::operation_aborted) break;
        else write_error(res, 400, "malformed HTTP request: " + ec.message());
        co_await write_response(c, res, false, false);
        req.method = "-";
        req.path = "-";
        log(req, res);
        break;
      }
      std::string message;
      if (int status = fill_request(parser, req, message)) {
        write_error(res, status, message);
        co_await write_response(c, res, false, false);
        if (!parser.is_done()) co_await linger(c, drain_budget());
        log(req, res);
        break;
      }
      const bool head_request = req.method == "HEAD";
      const bool unread_body = !parser.is_done();
      bool keep_alive = parser.get().keep_alive() && !stopping.load();

      // Phase 1: answered from the head?
      bool answered = false;
      const Route* route = nullptr;
      try {
        if (pre_routing) answered = pre_routing(req, res);
        if (!answered) {
          route = find_route(req);
          if (!route) {
            write_error(res, 404, "");
            answered = true;
          }
        }
        if (!answered && unread_body && !route->takes_body) {
          write_error(res, 413, "this endpoint takes no request body");
          answered = true;
        }
        if (!answered && route->before_body) {
          const HttpHeadHandler* check = &route->before_body;
          answered = co_await asio::co_spawn(workers.get_executor(),
                                             [this, check, &req, &res]() -> asio::awaitable<bool> {
                                               try {
                                                 co_return (*check)(req, res);
                                               } catch (...) {
                                                 if (exception_handler) exception_handler(req, res, std::current_exception());
                                                 else write_error(res, 500, "internal error");
                                                 co_return true;
                                               }
                                             },
                                             asio::use_awaitable);
        }
        if (!answered && unread_body) {
          auto length = parser.content_length();
          if (length && *length > limits.max_body_bytes) {
            write_error(res, 413, "");
            answered = true;
          }
          std::string encoding = lower(trim(req.get_header_value("Content-Encoding")));
          if (!answered && !encoding.empty() && encoding != "identity" && encoding != "gzip" && encoding != "x-gzip" &&
              encoding != "deflate") {
            write_error(res, 415, "Content-Encoding '" + encoding + "' is not supported: send gzip, deflate or identity");
            answered = true;
          }
        }
      } catch (...) {
        if (exception_handler) exception_handler(req, res, std::current_exception());
        else write_error(res, 500, "internal error");
        answered = true;
      }
      if (answered) {
        if (unread_body) keep_alive = false;
        if (res.get_header_value("Connection") == "close") keep_alive = false;
        bool ok = co_await write_response(c, res, head_request, keep_alive);
        log(req, res);
        if (!ok) break;
        if (!keep_alive) {
          if (unread_body) co_await linger(c, drain_budget());
          break;
        }
        continue;
      }

      // The body, de-chunked, under the limit; past it, read and dropped up to a bound, then 413.
      if (unread_body) {
        if (iequals(trim(req.get_header_value("Expect")), "100-continue")) {
          static const std::string_view cont = "HTTP/1.1 100 Continue\r\n\r\n";
          arm(c, limits.write_timeout);
          auto [wec, wn] = co_await asio::async_write(c->socket, asio::buffer(cont), asio::as_tuple(asio::use_awaitable));
          disarm(c);
          if (wec) break;
        }
        const size_t limit = limits.max_body_bytes, budget = drain_budget();
        size_t total = 0;
        bool too_large = false, failed = false, timed_out = false;
        std::vector<char> chunk(16384);
        while (!parser.is_done()) {
          parser.get().body().data = chunk.data();
          parser.get().body().size = chunk.size();
          arm(c, limits.body_read_timeout);
          auto [rec, rn] = co_await bhttp::async_read_some(c->socket, buffer, parser, asio::as_tuple(asio::use_awaitable));
          disarm(c);
          if (rec == bhttp::error::need_buffer) rec = {};
          size_t got = chunk.size() - parser.get().body().size;
          total += got;
          if (total > limit) too_large = true;
          else req.body.append(chunk.data(), got);
          if (rec) {
            failed = true;
            timed_out = c->timed_out;
            break;
          }
          if (too_large && total > budget) break;
        }
        if (too_large) req.body.clear();
        if (too_large || failed) {
          if (too_large) write_error(res, 413, "");
          else if (timed_out) write_error(res, 408, "the request body stalled: no data for " +
                                                        std::to_string(limits.body_read_timeout.count()) + " ms");
          else write_error(res, 400, "the request body could not be read (truncated, or a bad chunked or "
                                     "Content-Encoding framing)");
          co_await write_response(c, res, head_request, false);
          log(req, res);
          if (!parser.is_done() && !failed) co_await linger(c, budget);
          break;
        }
      }

      // Phase 2 on a worker: decompression, then the handler.
      const HttpHandler* handler = &route->handler;
      auto work = [this, &req, &res, handler] {
        try {
          std::string encoding = lower(trim(req.get_header_value("Content-Encoding")));
          if (!req.body.empty() && (encoding == "gzip" || encoding == "x-gzip" || encoding == "deflate")) {
            std::string plain;
            int rc = inflate_body(req.body, encoding != "deflate", limits.max_body_bytes, plain);
            if (rc > 0) {
              res.set_header("Connection", "close");
              return write_error(res, 413, "");
            }
            if (rc < 0) return write_error(res, 400, "the request body could not be read (truncated, or a bad chunked "
                                                     "or Content-Encoding framing)");
            req.body = std::move(plain);
          }
          (*handler)(req, res);
        } catch (...) {
          if (exception_handler) exception_handler(req, res, std::current_exception());
          else write_error(res, 500, "internal error");
        }
      };
      if (route->inline_io) {
        work();
      } else {
        co_await asio::co_spawn(workers.get_executor(),
                                [work]() -> asio::awaitable<void> {
                                  work();
                                  co_return;
                                },
                                asio::use_awaitable);
      }
      if (res.get_header_value("Connection") == "close" || stopping.load()) keep_alive = false;
      bool ok = co_await write_response(c, res, head_request, keep_alive);
      log(req, res);
      if (!ok || !keep_alive) break;
    }
    boost::system::error_code ignored;
    disarm(c);
    c->socket.shutdown(tcp::socket::shutdown_both, ignored);
    c->socket.close(ignored);
  }

  // Over a cap: a short 503 and close, nothing read.
  asio::awaitable<void> refuse(std::shared_ptr<Conn> c, std::string why) {
    HttpResponse res;
    res.set_header("Retry-After", "2");
    write_error(res, 503, why);
    co_await write_response(c, res, false, false);
    boost::system::error_code ignored;
    c->socket.shutdown(tcp::socket::shutdown_send, ignored);
    c->socket.close(ignored);
  }

  void release(const std::shared_ptr<Conn>& c) {
    std::lock_guard lock(conn_mutex);
    --open_connections;
    if (auto it = per_client.find(c->peer); it != per_client.end() && --it->second == 0) per_client.erase(it);
    conns.erase(c);
  }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(asio::make_strand(ioc), asio::as_tuple(asio::use_awaitable));
      if (stopping.load() || !acceptor.is_open()) co_return;
      if (ec) {
        if (ec == asio::error::operation_aborted) co_return;
        spdlog::warn("accept failed: {}", ec.message());
        asio::steady_timer pause(accept_strand, 50ms);  // out of file descriptors: let connections close
        co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
        continue;
      }
      boost::system::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      auto c = std::make_shared<Conn>(std::move(socket));
      auto endpoint = c->socket.remote_endpoint(ignored);
      c->peer = ignored ? std::string("?") : endpoint.address().to_string();
      std::string refused;
      {
        std::lock_guard lock(conn_mutex);
        size_t& mine = per_client[c->peer];
        if (open_connections >= limits.max_connections)
          refused = "the server has too many open connections: retry shortly";
        else if (limits.max_connections_per_client && mine >= limits.max_connections_per_client)
          refused = "too many open connections from this address: retry shortly";
        if (refused.empty()) {
          ++mine;
          ++open_connections;
          conns.insert(c);
        } else if (mine == 0) {
          per_client.erase(c->peer);
        }
      }
      auto executor = c->socket.get_executor();
      if (!refused.empty()) {
        asio::co_spawn(executor, refuse(c, refused), asio::detached);
        continue;
      }
      asio::co_spawn(executor, session(c), [this, c](std::exception_ptr ep) {
        if (ep) {
          try { std::rethrow_exception(ep); }
          catch (const std::exception& e) { spdlog::error("connection from {}: {}", c->peer, e.what()); }
          catch (...) {}
        }
        release(c);
      });
    }
  }

  void stop() {
    stopping.store(true);
    asio::post(accept_strand, [this] {
      boost::system::error_code ignored;
      acceptor.close(ignored);
      std::lock_guard lock(conn_mutex);
      for (const auto& c : conns)
        asio::post(c->socket.get_executor(), [c] {
          if (c->idle) {
            boost::system::error_code ignored2;
            c->socket.cancel(ignored2);
          }
        });
    });
  }
};

HttpServer::HttpServer(HttpLimits limits) : impl_(std::make_unique<Impl>(std::move(limits))) {}

HttpServer::~HttpServer() {
  impl_->workers.join();
}

void HttpServer::set_pre_routing_handler(std::function<bool(HttpRequest&, HttpResponse&)> h) { impl_->pre_routing = std::move(h); }
void HttpServer::set_error_writer(std::function<void(HttpResponse&, int, const std::string&)> w) { impl_->error_writer = std::move(w); }
void HttpServer::set_exception_handler(std::function<void(const HttpRequest&, HttpResponse&, std::exception_ptr)> h) {
  impl_->exception_handler = std::move(h);
}
void HttpServer::set_logger(std::function<void(const HttpRequest&, const HttpResponse&)> l) { impl_->logger = std::move(l); }
void HttpServer::set_default_headers(std::vector<HttpHeader> headers) { impl_->default_headers = std::move(headers); }

void HttpServer::Get(const std::string& pattern, HttpHandler handler, bool inline_io) {
  impl_->get_routes.push_back({std::regex(pattern), std::move(handler), inline_io});
}
void HttpServer::Post(const std::string& pattern, HttpHandler handler, HttpHeadHandler before_body) {
  impl_->post_routes.push_back({std::regex(pattern), std::move(handler), false, std::move(before_body), true});
}

bool HttpServer::bind(const std::string& host, int port) {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(host, ec);
  if (ec) {
    tcp::resolver resolver(impl_->ioc);
    auto results = resolver.resolve(host, std::to_string(port), ec);
    if (ec || results.empty()) return false;
    address = results.begin()->endpoint().address();
  }
  tcp::endpoint endpoint(address, static_cast<unsigned short>(port));
  auto& a = impl_->acceptor;
  a.open(endpoint.protocol(), ec);
  if (ec) return false;
  a.set_option(asio::socket_base::reuse_address(true), ec);  // SO_REUSEADDR only: never SO_REUSEPORT
  a.bind(endpoint, ec);
  if (ec) return false;
  a.listen(asio::socket_base::max_listen_connections, ec);
  return !ec;
}

void HttpServer::run() {
  auto& impl = *impl_;
  if (!impl.stopping.load())
    asio::co_spawn(impl.accept_strand, impl.accept_loop(), asio::detached);
  else {
    boost::system::error_code ignored;
    impl.acceptor.close(ignored);
  }
  std::vector<std::thread> threads;
  for (int i = 1; i < std::max(1, impl.limits.io_threads); ++i) threads.emplace_back([&] { impl.ioc.run(); });
  impl.ioc.run();
  for (auto& t : threads) t.join();
  impl.workers.join();
}

void HttpServer::stop() { impl_->stop(); }

}  // namespace maskmaker::server
