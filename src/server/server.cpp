#include "server/server.hpp"

#include <csignal>
#include <pthread.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>

#include "server/admission.hpp"
#include "server/api.hpp"
#include "server/base64.hpp"
#include "server/http_errors.hpp"
#include "server/jobs.hpp"
#include "server/keys_db.hpp"
#include "server/rate_limit.hpp"
#include "server/request.hpp"
#include "server/web_assets.hpp"

namespace maskmaker::server {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

std::string new_request_id() {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = std::random_device{}();
  char buf[32];
  std::snprintf(buf, sizeof buf, "%08llx%06llx", (unsigned long long)(salt & 0xffffffff),
                (unsigned long long)(++counter & 0xffffff));
  return buf;
}

// What one request did, for its log line and metrics; filled by the handler, read by the logger (same thread).
struct RequestLog {
  std::string id;
  std::string key_id = "-";
  std::string route;
  StageTimes times;
  double fetch_ms = 0;
  int detections = -1;
  size_t in_bytes = 0;  // request body as read (the mask endpoints read it themselves)
  std::string error;
};
thread_local RequestLog t_log;

void set_json_error(httplib::Response& res, int status, const std::string& message) {
  res.status = status;
  res.set_content(json{{"error", message}}.dump(), "application/json");
}

const char* default_message(int status) {
  switch (status) {
    case 400: return "bad request";
    case 404: return "not found: see /openapi.json for the API";
    case 405: return "method not allowed";
    case 413: return "request body is larger than the server's limit";
    case 414: return "request URI is too long";
    case 415: return "unsupported media type";
    case 431: return "request headers are too large";
    case 500: return "internal server error";
    case 503: return "service unavailable";
    default: return "request failed";
  }
}

struct Metrics {
  prometheus::Registry registry;
  prometheus::Family<prometheus::Counter>& requests = prometheus::BuildCounter()
      .Name("maskmaker_requests_total").Help("HTTP requests by route and status").Register(registry);
  prometheus::Family<prometheus::Histogram>& latency = prometheus::BuildHistogram()
      .Name("maskmaker_request_duration_seconds").Help("Request latency by route").Register(registry);
  prometheus::Family<prometheus::Histogram>& stages = prometheus::BuildHistogram()
      .Name("maskmaker_stage_duration_seconds").Help("Pipeline stage latency").Register(registry);
  prometheus::Family<prometheus::Gauge>& gauges = prometheus::BuildGauge()
      .Name("maskmaker_inference").Help("Inference slots: state=active|queued").Register(registry);
  prometheus::Family<prometheus::Counter>& cache = prometheus::BuildCounter()
      .Name("maskmaker_cache_events_total").Help("Cache hits and misses: image embeddings, text embeddings, detections per image, instance masks").Register(registry);
  prometheus::Family<prometheus::Gauge>& ready = prometheus::BuildGauge()
      .Name("maskmaker_ready").Help("1 once the models are loaded").Register(registry);
  prometheus::Gauge& active = gauges.Add({{"state", "active"}});
  prometheus::Gauge& queued = gauges.Add({{"state", "queued"}});
  std::mutex cache_mutex;
  CacheStats last_cache;

  static const prometheus::Histogram::BucketBoundaries& buckets() {
    static const prometheus::Histogram::BucketBoundaries b = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                              0.5, 1, 2.5, 5, 10, 30};
    return b;
  }
  void observe_stage(const char* stage, double ms) {
    if (ms > 0) stages.Add({{"stage", stage}}, buckets()).Observe(ms / 1000.0);
  }
  void sync_cache(const CacheStats& now) {
    std::lock_guard lock(cache_mutex);
    struct Counters { const char* cache; uint64_t CacheStats::*hits; uint64_t CacheStats::*misses; };
    static constexpr Counters all[] = {{"image", &CacheStats::image_hits, &CacheStats::image_misses},
                                       {"text", &CacheStats::text_hits, &CacheStats::text_misses},
                                       {"detections", &CacheStats::detection_hits, &CacheStats::detection_misses},
                                       {"masks", &CacheStats::mask_hits, &CacheStats::mask_misses}};
    for (const Counters& c : all) {
      cache.Add({{"cache", c.cache}, {"event", "hit"}}).Increment(double(now.*c.hits - last_cache.*c.hits));
      cache.Add({{"cache", c.cache}, {"event", "miss"}}).Increment(double(now.*c.misses - last_cache.*c.misses));
    }
    last_cache = now;
  }
};

class Service {
 public:
  explicit Service(const ServerConfig& config)
      : config_(config), admission_(config.max_concurrent, config.queue_length) {
    if (!config.keys_db.empty()) {
      keys_ = open_key_store(config.keys_db);  // a SQLite file or a postgresql:// URL
      std::string why;
      if (!keys_->reachable(why))
        spdlog::warn("keys database unreachable ({}): /readyz answers 503 until it is back", why);
      else if (keys_->active_count() == 0)
        spdlog::warn("keys database {} holds no active key: every API call will get 401 until one is added "
                     "(maskmaker keys add)", keys_->describe());
    } else {
      spdlog::warn("no keys database configured: open access, no credits or rate limits (use --keys-db)");
    }
    fetch_limits_.allow_private = config.allow_private_urls;
    fetch_limits_.total_timeout_ms = config.fetch_timeout_ms;
    fetch_limits_.connect_timeout_ms = std::min(config.fetch_timeout_ms, 5000L);
    fetch_limits_.max_bytes = config.fetch_max_bytes;
    metrics_.ready.Add({}).Set(0);
    JobsContext jobs_context;  // asynchronous jobs (/v2): workers start taking jobs once the models are loaded
    jobs_context.admission = &admission_;
    jobs_context.keys = keys_.get();
    jobs_context.registry = &metrics_.registry;
    jobs_context.pipeline = [this]() -> Pipeline* { return ready_ ? pipeline_.get() : nullptr; };
    jobs_context.fetch_limits = fetch_limits_;
    jobs_ = std::make_unique<Jobs>(config_, std::move(jobs_context));
  }

  void load_models() {
    auto t = Clock::now();
    try {
      pipeline_ = Pipeline::load(config_.pipeline);
      ready_.store(true);
      metrics_.ready.Add({}).Set(1);
      spdlog::info("ready: models loaded in {:.0f} ms", ms_since(t));
    } catch (const std::exception& e) {
      load_error_ = e.what();
      spdlog::critical("cannot load models: {}", e.what());
      failed_.store(true);
    }
  }
  bool failed() const { return failed_.load(); }

  void install(httplib::Server& svr) {
    // Known paths and their methods: anything else on them is 405 with Allow.
    static const std::map<std::string, std::string> allowed = {
        {"/v1/inpaint-mask-maker", "POST, OPTIONS"}, {"/v1/masks", "POST, OPTIONS"}, {"/healthz", "GET, HEAD"},
        {"/v2/inpaint-mask-maker", "POST, OPTIONS"},
        {"/readyz", "GET, HEAD"}, {"/metrics", "GET, HEAD"}, {"/openapi.json", "GET, HEAD"}, {"/", "GET, HEAD"}};
    svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      t_log = RequestLog{};
      t_log.id = new_request_id();
      t_log.route = req.path;
      res.set_header("X-Request-Id", t_log.id);
      res.set_header("Access-Control-Allow-Origin", "*");
      res.set_header("Access-Control-Expose-Headers",
                     "X-Detections, X-Inference-Time-Ms, X-Unmatched-Phrases, X-Request-Id, x-credits-consumed, "
                     "x-remaining-credits, Retry-After");
      // Answers decided here come before the body is read: a connection that still carries an unread body is
      // closed, or its body would be parsed as the next request on the keep-alive connection.
      const bool unread_body = req.has_header("Transfer-Encoding") ||
                               (req.has_header("Content-Length") && req.get_header_value("Content-Length") != "0");
      auto close_if_unread = [&] {
        if (unread_body && !res.has_header("Connection")) res.set_header("Connection", "close");
      };
      auto it = allowed.find(req.path);
      bool web_asset = web_asset_for(req.path) != nullptr;
      bool job_path = is_job_path(req.path);  // /v2/requests/{id}[/status] (jobs.hpp)
      if (it == allowed.end() && !web_asset && !job_path) {
        // 404 here, before cpp-httplib reads a POST body (without any limit when it is chunked).
        close_if_unread();
        set_json_error(res, 404, "not found: " + req.path + " (see /openapi.json for the API)");
        return httplib::Server::HandlerResponse::Handled;
      }
      const std::string& methods = it != allowed.end() ? it->second : std::string(job_path ? "GET, HEAD, OPTIONS" : "GET, HEAD");
      // Only the POST endpoints read a body (cpp-httplib never reads one for GET, HEAD or OPTIONS).
      if (req.method != "POST") close_if_unread();
      if (req.method == "OPTIONS" && methods.find("OPTIONS") != std::string::npos) {
        res.status = 204;
        res.set_header("Allow", methods);
        res.set_header("Access-Control-Allow-Methods", methods);
        res.set_header("Access-Control-Allow-Headers", "Content-Type, x-api-key");
        res.set_header("Access-Control-Max-Age", "600");
        return httplib::Server::HandlerResponse::Handled;
      }
      if (methods.find(req.method) == std::string::npos) {
        res.set_header("Allow", methods);
        close_if_unread();
        set_json_error(res, 405, "method " + req.method + " is not allowed on " + req.path + "; allowed: " + methods);
        return httplib::Server::HandlerResponse::Handled;
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });

    // Handlers with a content reader: the body is read here, under --max-body-bytes whatever its framing
    // (cpp-httplib's own limit only covers a Content-Length body, not a chunked or a compressed one).
    svr.Post("/v1/inpaint-mask-maker",
             [this](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
               handle_mask(req, res, reader, Endpoint::Compatible);
             });
    svr.Post("/v1/masks",
             [this](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
               handle_mask(req, res, reader, Endpoint::Native);
             });
    svr.Post("/v2/inpaint-mask-maker",
             [this](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
               handle_mask(req, res, reader, Endpoint::Compatible, /*async=*/true);
             });
    jobs_->install(svr);
    svr.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"status":"ok"})", "application/json");
    });
    svr.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
      std::string why;
      if (ready_ && keys_ && !keys_->reachable(why)) {  // a replica that cannot check keys takes no traffic
        res.set_header("Retry-After", "2");
        set_json_error(res, 503, why);
      } else if (ready_) {
        res.set_content(json{{"status", "ready"}, {"pack", pipeline_->pack_name()}}.dump(), "application/json");
      } else {
        res.set_header("Retry-After", "2");
        set_json_error(res, 503, failed_ ? "models failed to load: " + load_error_ : "models are loading");
      }
    });
    svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      if (pipeline_) metrics_.sync_cache(pipeline_->cache_stats());
      metrics_.active.Set(admission_.active());
      metrics_.queued.Set(admission_.waiting());
      prometheus::TextSerializer serializer;
      res.set_content(serializer.Serialize(metrics_.registry.Collect()), "text/plain; version=0.0.4");
    });
    svr.Get("/openapi.json", [](const httplib::Request&, httplib::Response& res) {
      const WebAsset* doc = web_asset_for("/openapi.json");
      if (doc) res.set_content(std::string(doc->data, doc->size), doc->content_type);
      else set_json_error(res, 404, "no OpenAPI document was built into this binary");
    });
    svr.Get(R"(/(|[A-Za-z0-9_\-]+\.(?:html|js|css|svg|png|ico)))", [](const httplib::Request& req, httplib::Response& res) {
      const WebAsset* asset = web_asset_for(req.path);
      if (!asset) return set_json_error(res, 404, "not found: " + req.path);
      res.set_header("Cache-Control", "no-cache");
      res.set_content(std::string(asset->data, asset->size), asset->content_type);
    });

    svr.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      std::string message = default_message(res.status);
      if (res.status == 413) message = body_limit_message();
      if (res.status == 404) message = "not found: " + req.path + " (see /openapi.json for the API)";
      set_json_error(res, res.status, message);
      return httplib::Server::HandlerResponse::Handled;
    }));
    svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        spdlog::error("request {}: unhandled exception: {}", t_log.id, e.what());
      } catch (...) {
        spdlog::error("request {}: unhandled exception", t_log.id);
      }
      set_json_error(res, 500, "internal error (request id " + t_log.id + ")");
    });
    svr.set_logger([this](const httplib::Request& req, const httplib::Response& res) { log_request(req, res); });
  }

 private:
  void log_request(const httplib::Request& req, const httplib::Response& res) {
    const RequestLog& l = t_log;
    std::string route = l.route.empty() ? req.path : l.route;
    if (std::string job_route = job_route_label(route); !job_route.empty()) route = job_route;
    else if (route != "/v1/inpaint-mask-maker" && route != "/v1/masks" && route != "/healthz" &&
             route != "/readyz" && route != "/metrics" && route != "/openapi.json")
      route = web_asset_for(route) ? "web" : "other";  // bounded label set: unknown paths never become labels
    metrics_.requests.Add({{"route", route}, {"status", std::to_string(res.status)}}).Increment();
    double total_ms = l.times.total_ms() + l.fetch_ms;
    if (route.rfind("/v1/", 0) == 0 || route == "/v2/inpaint-mask-maker") {
      metrics_.latency.Add({{"route", route}}, Metrics::buckets()).Observe(total_ms / 1000.0);
      metrics_.observe_stage("fetch", l.fetch_ms);
      metrics_.observe_stage("decode", l.times.decode_ms);
      metrics_.observe_stage("detect", l.times.detect_ms);
      metrics_.observe_stage("encode", l.times.encode_ms);
      metrics_.observe_stage("segment", l.times.segment_ms);
      metrics_.observe_stage("post", l.times.post_ms);
      metrics_.observe_stage("output", l.times.output_ms);
      spdlog::info("request id={} key={} {} {} status={} in={}B out={}B detections={} fetch_ms={:.1f} "
                   "decode_ms={:.1f} detect_ms={:.1f} encode_ms={:.1f} segment_ms={:.1f} post_ms={:.1f} "
                   "output_ms={:.1f}{}{}",
                   l.id, l.key_id, req.method, req.path, res.status, std::max(l.in_bytes, req.body.size()), res.body.size(),
                   l.detections, l.fetch_ms, l.times.decode_ms, l.times.detect_ms, l.times.encode_ms,
                   l.times.segment_ms, l.times.post_ms, l.times.output_ms, l.error.empty() ? "" : " error=",
                   l.error.empty() ? "" : json(l.error).dump());
    } else if (res.status >= 400) {
      spdlog::info("request id={} {} {} status={}", l.id, req.method, req.path, res.status);
    }
  }

  void fail(httplib::Response& res, const Error& e) {
    int status = http_status(e.code());
    std::string message = e.what();
    if (status == 500) {
      spdlog::error("request {}: {}", t_log.id, e.what());
      message = "internal error (request id " + t_log.id + ")";
    }
    if (http_status(e.code()) == 503) res.set_header("Retry-After", "2");
    t_log.error = message;
    set_json_error(res, status, message);
  }

  // Checks the key: 401 missing/unknown, 403 disabled or not allowed here, 429 over its rate, 406 no credits.
  std::optional<KeyRecord> authorise(const httplib::Request& req, httplib::Response& res, const std::string& path) {
    if (!keys_) return std::nullopt;
    std::string key = req.get_header_value("x-api-key");
    if (key.empty()) throw Error(ErrorCode::Unauthorized, "missing x-api-key header");
    auto record = keys_->find_by_key(key);
    if (!record) throw Error(ErrorCode::Unauthorized, "unknown API key");
    t_log.key_id = std::to_string(record->id);
    if (record->disabled) throw Error(ErrorCode::Forbidden, "this API key is disabled");
    if (record->endpoints != "*") {
      std::set<std::string> allowed;
      std::stringstream ss(record->endpoints);
      for (std::string p; std::getline(ss, p, ',');) allowed.insert(p);
      if (!allowed.count(path)) throw Error(ErrorCode::Forbidden, "this API key is not allowed to call " + path);
    }
    double rate = record->rate_per_minute ? double(*record->rate_per_minute) : config_.rate_limit_per_minute;
    // PostgreSQL keeps the buckets in the database (shared by the replicas); SQLite, per process in memory.
    const double burst = std::max(1.0, config_.rate_burst);
    if (int64_t wait = keys_->shared_rate_limits() ? keys_->take_rate(record->id, rate, burst)
                                                   : rate_limiter_.take(record->id, rate, burst)) {
      res.set_header("Retry-After", std::to_string(wait));
      throw Error(ErrorCode::RateLimited, "rate limit exceeded for this API key: retry in " + std::to_string(wait) + " s");
    }
    if (record->credits && *record->credits <= 0)
      throw Error(ErrorCode::NoCredits, "this API key has no credits left");
    return record;
  }

  // Reads the request body (decompressed, de-chunked) into `body`, or the parts of a multipart form into `parts`,
  // stopping at --max-body-bytes. On failure the error answer is set and false returned.
  bool read_body(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader,
                 std::string& body, std::multimap<std::string, httplib::MultipartFormData>& parts) {
    const size_t limit = config_.max_body_bytes;
    size_t total = 0;
    bool too_large = false;
    // Past the limit the rest is read and dropped (up to another limit's worth, at least 1 MiB, at most 16 MiB),
    // so that the client, still sending, gets its 413 instead of a reset connection.
    const size_t drain_until = limit + std::clamp<size_t>(limit, size_t(1) << 20, size_t(16) << 20);
    auto count = [&](size_t n) {
      total += n;
      if (total > limit) too_large = true;
      return total <= drain_until;
    };
    bool ok;
    if (req.is_multipart_form_data()) {
      std::vector<httplib::MultipartFormData> items;
      ok = reader(
          [&](const httplib::MultipartFormData& item) {
            items.push_back(item);
            return true;
          },
          [&](const char* data, size_t n) {
            if (items.empty() || !count(n)) return false;
            if (!too_large) items.back().content.append(data, n);
            return true;
          });
      for (auto& item : items) parts.emplace(item.name, std::move(item));
    } else {
      ok = reader([&](const char* data, size_t n) {
        if (!count(n)) return false;
        if (!too_large) body.append(data, n);
        return true;
      });
    }
    t_log.in_bytes = total;
    if (ok && !too_large) return true;
    res.set_header("Connection", "close");  // what was not read is still on the connection
    if (too_large || res.status == 413) fail(res, Error(ErrorCode::PayloadTooLarge, body_limit_message()));
    else fail(res, Error(ErrorCode::InvalidArgument, "the request body could not be read (truncated, or a bad "
                                                     "chunked or Content-Encoding framing)"));
    return false;
  }

  std::string body_limit_message() const {
    return "request body is larger than the server's limit of " + std::to_string(config_.max_body_bytes) + " bytes";
  }

  // async: POST /v2/inpaint-mask-maker, checked as the /v1 endpoint, then queued as a job (jobs.hpp).
  void handle_mask(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader,
                   Endpoint endpoint, bool async = false) {
    const auto received = Clock::now();
    std::string body;
    std::multimap<std::string, httplib::MultipartFormData> parts;
    if (!read_body(req, res, reader, body, parts)) return;
    try {
      if (!ready_) throw Error(ErrorCode::NotReady, failed_ ? "models failed to load; see the server log" : "the server is starting: models are loading");
      std::string content_type = req.get_header_value("Content-Type");
      std::string ct_lower = content_type;
      std::transform(ct_lower.begin(), ct_lower.end(), ct_lower.begin(), ::tolower);
      bool is_json = ct_lower.rfind("application/json", 0) == 0 || ct_lower.find("+json") != std::string::npos;
      bool is_multipart = ct_lower.rfind("multipart/form-data", 0) == 0;
      if (!is_json && !is_multipart) {
        res.status = 415;
        res.set_content(json{{"error", "Content-Type must be application/json or multipart/form-data, not '" +
                                           (content_type.empty() ? std::string("(none)") : content_type) + "'"}}.dump(),
                        "application/json");
        return;
      }
      auto key = authorise(req, res, req.path);
      MaskRequest request;
      std::vector<uint8_t> image_bytes;
      if (is_multipart) {
        json fields = json::object();
        for (const auto& [name, part] : parts) {
          if (name == "image" && (!part.filename.empty() || part.content_type.rfind("image/", 0) == 0)) continue;
          const std::string& v = part.content;
          json parsed = json::parse(v, nullptr, false);
          // Form fields are text: numbers and booleans are read as JSON, anything else stays a string.
          fields[name] = (!parsed.is_discarded() && (parsed.is_number() || parsed.is_boolean() || parsed.is_array())) ? parsed : json(v);
        }
        if (auto image_part = parts.find("image"); image_part != parts.end()) {
          const auto& part = image_part->second;
          if (!part.filename.empty() || part.content_type.rfind("image/", 0) == 0) {
            image_bytes.assign(part.content.begin(), part.content.end());
            fields["image"] = "uploaded";
          }
        }
        request = parse_mask_request(fields, endpoint);
      } else {
        request = parse_mask_request(std::string_view(body), endpoint);
      }
      if (async) {
        jobs_->submit(req, res, request, std::move(image_bytes), key ? std::optional<int64_t>(key->id) : std::nullopt,
                      body, parts);
        return;
      }
      if (image_bytes.empty()) {
        auto t = Clock::now();
        image_bytes = resolve_image_bytes(request.image, fetch_limits_);
        t_log.fetch_ms = ms_since(t);
      }

      auto deadline = received + std::chrono::milliseconds(config_.request_timeout_ms);
      switch (admission_.enter(deadline)) {
        case Admission::Result::QueueFull:
          throw Error(ErrorCode::Overloaded, "the server is busy (queue full): retry shortly");
        case Admission::Result::TimedOut:
          throw Error(ErrorCode::Timeout, "the request waited longer than " + std::to_string(config_.request_timeout_ms) + " ms for a free worker");
        case Admission::Result::ShuttingDown:
          throw Error(ErrorCode::NotReady, "the server is shutting down");
        case Admission::Result::Admitted: break;
      }
      AdmissionSlot slot(admission_);
      auto t = Clock::now();
      DecodeLimits limits;
      limits.max_pixels = config_.max_pixels;
      DecodedImage image = decode_image(image_bytes, limits);
      double decode_ms = ms_since(t);
      MaskResult result = pipeline_->run(image, request.prompt, request.params);
      result.times.decode_ms = decode_ms;
      t = Clock::now();
      ApiResponse answer = endpoint == Endpoint::Compatible ? compatible_response(image, result, request)
                                                            : native_response(image, result, request);
      result.times.output_ms = ms_since(t);
      t_log.times = result.times;
      t_log.detections = int(std::count_if(result.instances.begin(), result.instances.end(),
                                           [](const Instance& i) { return !i.negative; }));

      if (key) {
        std::optional<int64_t> remaining;
        if (!keys_->consume(key->id, remaining)) throw Error(ErrorCode::NoCredits, "this API key has no credits left");
        res.set_header("x-credits-consumed", "1");
        res.set_header("x-remaining-credits", remaining ? std::to_string(*remaining) : std::string("unlimited"));
      }
      double infer_ms = result.times.total_ms() - result.times.output_ms;
      res.set_header("X-Detections", std::to_string(t_log.detections));
      char ms[32];
      std::snprintf(ms, sizeof ms, "%.1f", infer_ms);
      res.set_header("X-Inference-Time-Ms", ms);
      if (!result.unmatched.empty()) {
        std::string list;
        for (size_t i = 0; i < result.unmatched.size(); ++i) list += (i ? "," : "") + header_safe(result.unmatched[i]);
        res.set_header("X-Unmatched-Phrases", list);
      }
      if (answer.json_body) {
        (*answer.json_body)["infer_time_ms"] = std::round(infer_ms * 10) / 10;
        res.set_content(answer.json_body->dump(), "application/json");
      } else {
        res.set_content(std::string(answer.bytes.begin(), answer.bytes.end()), answer.content_type);
      }
      res.status = 200;
    } catch (const Error& e) {
      fail(res, e);
    } catch (const std::bad_alloc&) {
      fail(res, Error(ErrorCode::Overloaded, "the server ran out of memory for this request"));
    } catch (const cv::Exception& e) {
      fail(res, Error(ErrorCode::Internal, std::string("OpenCV: ") + e.what()));
    } catch (const std::exception& e) {
      fail(res, Error(ErrorCode::Internal, e.what()));
    }
  }

  ServerConfig config_;
  Admission admission_;
  RateLimiter rate_limiter_;
  FetchLimits fetch_limits_;
  std::unique_ptr<KeyStore> keys_;
  std::unique_ptr<Pipeline> pipeline_;
  std::atomic<bool> ready_{false}, failed_{false};
  std::string load_error_;
  Metrics metrics_;
  std::unique_ptr<Jobs> jobs_;  // last: stopped (its workers joined) before anything they use is destroyed
};

}  // namespace

int run_server(const ServerConfig& config) {
  // Signals are taken by one thread with sigwait, so block them before any other thread exists.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  Service service(config);
  httplib::Server svr;
  svr.set_tcp_nodelay(true);  // cpp-httplib leaves it off: tens of ms per keep-alive request otherwise
  svr.set_payload_max_length(config.max_body_bytes);
  svr.set_read_timeout(30, 0);
  svr.set_write_timeout(30, 0);
  svr.set_keep_alive_timeout(5);
  // SO_REUSEADDR only: cpp-httplib's default also sets SO_REUSEPORT, with which a second server on the same port
  // starts without an error and the kernel shares the connections between the two processes.
  svr.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  const size_t workers = size_t(config.max_concurrent + config.queue_length + 8);
  svr.new_task_queue = [workers] { return new httplib::ThreadPool(workers); };
  service.install(svr);

  if (!svr.bind_to_port(config.host, config.port)) {
    spdlog::critical("cannot listen on {}:{} (address in use or not available)", config.host, config.port);
    return 1;
  }
  spdlog::info("maskmaker {} listening on http://{}:{}", version(), config.host, config.port);

  std::atomic<bool> listen_done{false};
  // cpp-httplib's stop() does nothing before listen has started (a pack that fails to load fails in
  // microseconds, a signal may come as early): wait until it runs, or has returned, then stop it.
  auto stop_server = [&] {
    while (!svr.is_running() && !listen_done.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    svr.stop();
  };
  std::atomic<bool> stopping{false};
  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    if (listen_done.load()) return;  // woken by the main thread on the way out
    if (!stopping.exchange(true))
      spdlog::info("signal {} received: no new connections, finishing requests in flight", sig);
    stop_server();
  });
  std::thread loader([&] {
    service.load_models();
    if (service.failed()) {
      stopping.store(true);
      stop_server();
    }
  });

  svr.listen_after_bind();  // returns once stopped and every worker has finished its request
  listen_done.store(true);
  loader.join();
  pthread_kill(signal_thread.native_handle(), SIGTERM);  // wake the signal thread if it still waits
  signal_thread.join();
  spdlog::info("stopped");
  return service.failed() ? 1 : 0;
}

}  // namespace maskmaker::server
