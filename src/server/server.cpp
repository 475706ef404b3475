#include "maskmaker/server.hpp"

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

#include <nlohmann/json.hpp>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>

#include "server/http_errors.hpp"
#include "server/http_server.hpp"
#include "server/jobs.hpp"
#include "server/metrics.hpp"
#include "server/multipart.hpp"
#include "server/web_assets.hpp"
#include "service/admission.hpp"
#include "service/api.hpp"
#include "service/keys_db.hpp"
#include "service/mask_service.hpp"
#include "service/request.hpp"

namespace maskmaker::server {
using namespace maskmaker::service;  // the layer below: typed requests, keys, image sources, rendering
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

// What one request did, for its log line and metrics: kept with the request (HttpRequest::context) across its two
// phases (I/O thread, then a worker); t_log points at the current request's on the thread that handles it.
struct RequestLog {
  std::string id;
  std::string key_id = "-";
  std::string route;
  StageTimes times;
  double fetch_ms = 0;
  int detections = -1;
  size_t in_bytes = 0;  // request body as read (the mask endpoints read it themselves)
  std::string error;
  std::optional<KeyRecord> key;  // authorised from the head
};
thread_local RequestLog* t_log = nullptr;

RequestLog& request_log(const HttpRequest& req) {
  static RequestLog blank;
  return req.context ? *static_cast<RequestLog*>(req.context.get()) : blank;
}


const char* default_message(int status) {
  switch (status) {
    case 400: return "bad request";
    case 404: return "not found: see /openapi.json for the API";
    case 405: return "method not allowed";
    case 408: return "request timeout";
    case 413: return "request body is larger than the server's limit";
    case 414: return "request URI is too long";
    case 415: return "unsupported media type";
    case 431: return "request headers are too large";
    case 500: return "internal server error";
    case 503: return "service unavailable";
    default: return "request failed";
  }
}


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
    ServiceConfig service_config;
    service_config.max_pixels = config.max_pixels;
    service_config.fetch.allow_private = config.allow_private_urls;
    service_config.fetch.total_timeout_ms = config.fetch_timeout_ms;
    service_config.fetch.connect_timeout_ms = std::min(config.fetch_timeout_ms, 5000L);
    service_config.fetch.max_bytes = config.fetch_max_bytes;
    service_config.rate_limit_per_minute = config.rate_limit_per_minute;
    service_config.rate_burst = config.rate_burst;
    service_config.max_fetches = config.max_fetches;
    service_config.max_fetches_per_key = config.max_fetches_per_key;
    masks_ = std::make_unique<MaskService>(service_config, keys_.get(), admission_,
                                           [this]() -> Pipeline* { return ready_ ? pipeline_.get() : nullptr; });
    metrics_.ready.Add({}).Set(0);
    JobsContext jobs_context;  // asynchronous jobs (/v2): workers start taking jobs once the models are loaded
    jobs_context.masks = masks_.get();
    jobs_context.registry = &metrics_.registry;
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

  void install(HttpServer& svr) {
    // Known paths and their methods: anything else on them is 405 with Allow.
    static const std::map<std::string, std::string> allowed = {
        {"/v1/inpaint-mask-maker", "POST, OPTIONS"}, {"/v1/masks", "POST, OPTIONS"}, {"/healthz", "GET, HEAD"},
        {"/v2/inpaint-mask-maker", "POST, OPTIONS"},
        {"/readyz", "GET, HEAD"}, {"/metrics", "GET, HEAD"}, {"/openapi.json", "GET, HEAD"}, {"/", "GET, HEAD"}};
    // Phase 1, on the I/O thread, before any body byte is read: route, method, CORS preflight (the key: check_key).
    svr.set_pre_routing_handler([this](HttpRequest& req, HttpResponse& res) {
      auto log = std::make_shared<RequestLog>();
      req.context = log;
      t_log = log.get();
      t_log->id = new_request_id();
      t_log->route = req.path;
      res.set_header("X-Request-Id", t_log->id);
      res.set_header("Access-Control-Allow-Origin", "*");
      res.set_header("Access-Control-Expose-Headers",
                     "X-Detections, X-Inference-Time-Ms, X-Unmatched-Phrases, X-Request-Id, x-credits-consumed, "
                     "x-remaining-credits, Retry-After");
      auto it = allowed.find(req.path);
      bool web_asset = web_asset_for(req.path) != nullptr;
      bool job_path = is_job_path(req.path);  // /v2/requests/{id}[/status] (jobs.hpp)
      if (it == allowed.end() && !web_asset && !job_path) {
        set_json_error(res, 404, "not found: " + req.path + " (see /openapi.json for the API)");
        return true;
      }
      const std::string& methods = it != allowed.end() ? it->second : std::string(job_path ? "GET, HEAD, OPTIONS" : "GET, HEAD");
      if (req.method == "OPTIONS" && methods.find("OPTIONS") != std::string::npos) {
        res.status = 204;
        res.set_header("Allow", methods);
        res.set_header("Access-Control-Allow-Methods", methods);
        res.set_header("Access-Control-Allow-Headers", "Content-Type, x-api-key");
        res.set_header("Access-Control-Max-Age", "600");
        return true;
      }
      if ((", " + methods + ",").find(", " + req.method + ",") == std::string::npos || req.method == "OPTIONS") {
        res.set_header("Allow", methods);
        set_json_error(res, 405, "method " + req.method + " is not allowed on " + req.path + "; allowed: " + methods);
        return true;
      }
      return false;
    });
    // The mask endpoints' key, checked on a worker (the database may be remote) before the body is read.
    auto check_key = [this](HttpRequest& req, HttpResponse& res) {
      t_log = &request_log(req);
      try {
        t_log->key = authorise(req, req.path);
      } catch (const Error& e) {
        fail(res, e);
        return true;
      }
      return false;
    };

    // Phase 2, on a worker: the body is read (de-chunked, decompressed) under --max-body-bytes.
    svr.Post("/v1/inpaint-mask-maker", [this](HttpRequest& req, HttpResponse& res) { handle_mask(req, res, Endpoint::Compatible); },
             check_key);
    svr.Post("/v1/masks", [this](HttpRequest& req, HttpResponse& res) { handle_mask(req, res, Endpoint::Native); }, check_key);
    svr.Post("/v2/inpaint-mask-maker",
             [this](HttpRequest& req, HttpResponse& res) { handle_mask(req, res, Endpoint::Compatible, /*async=*/true); },
             check_key);
    jobs_->install(svr);
    svr.Get("/healthz", [](HttpRequest&, HttpResponse& res) { res.set_content(R"({"status":"ok"})", "application/json"); },
            /*inline_io=*/true);
    svr.Get("/readyz", [this](HttpRequest&, HttpResponse& res) {
      std::string why;
      if (ready_ && keys_ && !keys_->reachable(why)) {  // a replica that cannot check keys takes no traffic
        // Unauthenticated: the details (addresses, paths, the driver's words) go to the log only.
        spdlog::warn("readyz: {}", why);
        res.set_header("Retry-After", "2");
        set_json_error(res, 503, "the keys database is unreachable");
      } else if (ready_) {
        res.set_content(json{{"status", "ready"}, {"pack", pipeline_->pack_name()}}.dump(), "application/json");
      } else {
        res.set_header("Retry-After", "2");
        set_json_error(res, 503, failed_ ? "models failed to load (the server's log says why)" : "models are loading");
      }
    });
    svr.Get("/metrics", [this](HttpRequest&, HttpResponse& res) {
      // ready_ is set (release) after pipeline_ is assigned by the loader thread: read it first.
      if (ready_.load()) metrics_.sync_cache(pipeline_->cache_stats());
      metrics_.active.Set(admission_.active());
      metrics_.queued.Set(admission_.waiting());
      prometheus::TextSerializer serializer;
      res.set_content(serializer.Serialize(metrics_.registry.Collect()), "text/plain; version=0.0.4");
    }, /*inline_io=*/true);
    svr.Get("/openapi.json", [](HttpRequest&, HttpResponse& res) {
      const WebAsset* doc = web_asset_for("/openapi.json");
      if (doc) res.set_content(std::string(doc->data, doc->size), doc->content_type);
      else set_json_error(res, 404, "no OpenAPI document was built into this binary");
    }, /*inline_io=*/true);
    svr.Get(R"(/(|[A-Za-z0-9_\-]+\.(?:html|js|css|svg|png|ico)))", [](HttpRequest& req, HttpResponse& res) {
      const WebAsset* asset = web_asset_for(req.path);
      if (!asset) return set_json_error(res, 404, "not found: " + req.path);
      res.set_header("Cache-Control", "no-cache");
      // The page loads its script and style from files (no inline code): only this origin's, plus images
      // the user points it at (a URL, a file as blob:, answers as data:).
      if (std::string(asset->content_type).rfind("text/html", 0) == 0)
        res.set_header("Content-Security-Policy",
                       "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob: http: https:; "
                       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
      res.set_content(std::string(asset->data, asset->size), asset->content_type);
    }, /*inline_io=*/true);

    svr.set_error_writer([this](HttpResponse& res, int status, const std::string& message) {
      std::string m = message;
      if (m.empty()) m = status == 413 ? body_limit_message() : default_message(status);
      if (status == 503 || status == 429) res.set_header("Retry-After", "2");
      set_json_error(res, status, m);
    });
    svr.set_exception_handler([](const HttpRequest& req, HttpResponse& res, std::exception_ptr ep) {
      const std::string id = request_log(req).id;
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        spdlog::error("request {}: unhandled exception: {}", id, e.what());
      } catch (...) {
        spdlog::error("request {}: unhandled exception", id);
      }
      set_json_error(res, 500, "internal error (request id " + id + ")");
    });
    svr.set_logger([this](const HttpRequest& req, const HttpResponse& res) { log_request(req, res); });
  }

 private:
  void log_request(const HttpRequest& req, const HttpResponse& res) {
    const RequestLog& l = request_log(req);
    std::string route = l.route.empty() ? req.path : l.route;
    if (std::string job_route = job_route_label(route); !job_route.empty()) route = job_route;
    else if (route != "/v1/inpaint-mask-maker" && route != "/v1/masks" && route != "/healthz" &&
             route != "/readyz" && route != "/metrics" && route != "/openapi.json")
      route = web_asset_for(route) ? "web" : "other";  // bounded label set: unknown paths never become labels
    metrics_.requests.Add({{"route", route}, {"status", std::to_string(res.status)}}).Increment();
    double total_ms = l.times.total_ms() + l.fetch_ms;
    // The path as sent (escaped): a decoded %0d%0a must not forge a log line.
    const std::string shown = escape_for_log(req.target.empty() ? req.path : req.target);
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
                   l.id, l.key_id, escape_for_log(req.method), shown, res.status, std::max(l.in_bytes, req.body.size()),
                   res.body.size(), l.detections, l.fetch_ms, l.times.decode_ms, l.times.detect_ms, l.times.encode_ms,
                   l.times.segment_ms, l.times.post_ms, l.times.output_ms, l.error.empty() ? "" : " error=",
                   l.error.empty() ? "" : json(l.error).dump(-1, ' ', false, json::error_handler_t::replace));
    } else if (res.status >= 400) {
      spdlog::info("request id={} {} {} status={}", l.id.empty() ? "-" : l.id, escape_for_log(req.method), shown, res.status);
    }
  }

  void fail(HttpResponse& res, const Error& e) {
    int status = http_status(e.code());
    std::string message = e.what();
    if (status == 500) {
      spdlog::error("request {}: {}", t_log->id, e.what());
      message = "internal error (request id " + t_log->id + ")";
    }
    if (e.retry_after() > 0) res.set_header("Retry-After", std::to_string(e.retry_after()));
    else if (int s = retry_after_seconds(e.code())) res.set_header("Retry-After", std::to_string(s));
    t_log->error = message;
    set_json_error(res, status, message);
  }

  // The caller's key for `path` (MaskService::authorise: 401, 403, 429 with Retry-After, 406).
  std::optional<KeyRecord> authorise(const HttpRequest& req, const std::string& path) {
    auto record = masks_->authorise(req.get_header_value("x-api-key"), path);
    if (record) t_log->key_id = std::to_string(record->id);
    return record;
  }


  std::string body_limit_message() const {
    return "request body is larger than the server's limit of " + std::to_string(config_.max_body_bytes) + " bytes";
  }

  // async: POST /v2/inpaint-mask-maker, checked as the /v1 endpoint, then queued as a job (jobs.hpp).
  void handle_mask(HttpRequest& req, HttpResponse& res, Endpoint endpoint, bool async = false) {
    const auto received = Clock::now();
    t_log = &request_log(req);
    t_log->in_bytes = req.body.size();
    const std::optional<KeyRecord>& key = t_log->key;
    std::multimap<std::string, FormPart> parts;
    try {
      if (!ready_) throw Error(ErrorCode::NotReady, failed_ ? "models failed to load; see the server log" : "the server is starting: models are loading");
      std::string content_type = req.get_header_value("Content-Type");
      std::string ct_lower = content_type;
      std::transform(ct_lower.begin(), ct_lower.end(), ct_lower.begin(), ::tolower);
      bool is_json = ct_lower.rfind("application/json", 0) == 0 || ct_lower.find("+json") != std::string::npos;
      bool is_multipart = ct_lower.rfind("multipart/form-data", 0) == 0;
      if (!is_json && !is_multipart) {
        set_json_error(res, 415, "Content-Type must be application/json or multipart/form-data, not '" +
                                     (content_type.empty() ? std::string("(none)") : content_type) + "'");
        return;
      }
      const Endpoint parsed_as = async ? Endpoint::Jobs : endpoint;
      MaskRequest request;
      if (is_multipart) {
        parts = parse_multipart(req.body, content_type, multipart_limits_);
        std::vector<uint8_t> upload;
        std::vector<FormField> fields = form_fields(parts, upload);
        request = parse_mask_form(fields, std::move(upload), parsed_as);
      } else {
        request = parse_mask_request(std::string_view(req.body), parsed_as);
      }
      if (async) {
        jobs_->submit(req, res, std::move(request), key ? std::optional<int64_t>(key->id) : std::nullopt);
        return;
      }
      MaskAnswer answer = masks_->run(std::move(request), key,
                                      AdmitPolicy{received + std::chrono::milliseconds(config_.request_timeout_ms),
                                                  config_.request_timeout_ms});
      t_log->times = answer.result.times;
      t_log->fetch_ms = answer.fetch_ms;
      t_log->detections = answer.detections;
      if (answer.charged) {
        res.set_header("x-credits-consumed", "1");
        res.set_header("x-remaining-credits", answer.remaining_credits ? std::to_string(*answer.remaining_credits)
                                                                      : std::string("unlimited"));
      }
      res.set_header("X-Detections", std::to_string(answer.detections));
      char ms[32];
      std::snprintf(ms, sizeof ms, "%.1f", answer.infer_ms);
      res.set_header("X-Inference-Time-Ms", ms);
      if (!answer.result.unmatched.empty()) {
        std::string list;
        for (size_t i = 0; i < answer.result.unmatched.size(); ++i)
          list += (i ? "," : "") + header_safe(answer.result.unmatched[i]);
        res.set_header("X-Unmatched-Phrases", list);
      }
      res.set_content(std::move(answer.body), answer.content_type);
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
  MultipartLimits multipart_limits_{config_.max_multipart_parts, 2048};
  Admission admission_;
  std::unique_ptr<KeyStore> keys_;
  std::unique_ptr<MaskService> masks_;
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
  HttpLimits limits;
  limits.max_body_bytes = config.max_body_bytes;
  limits.max_header_bytes = config.max_header_bytes;
  limits.max_header_count = config.max_header_count;
  limits.max_connections = config.max_connections;
  limits.max_connections_per_client = config.max_connections_per_client;
  limits.head_timeout = std::chrono::milliseconds(config.head_timeout_ms);
  limits.body_read_timeout = std::chrono::milliseconds(config.body_read_timeout_ms);
  limits.keep_alive_timeout = std::chrono::milliseconds(config.keep_alive_timeout_ms);
  limits.io_threads = 2;
  // Handlers block (admission queue, URL fetches, the keys database): one thread per request that can be held,
  // and 8 more for what is answered at once (health, job polls, refusals).
  limits.worker_threads = config.max_concurrent + config.queue_length + config.max_fetches + 8;
  HttpServer svr(limits);
  svr.set_default_headers({{"X-Content-Type-Options", "nosniff"},
                           {"X-Frame-Options", "DENY"},
                           {"Content-Security-Policy", "frame-ancestors 'none'"},
                           {"Referrer-Policy", "no-referrer"},
                           {"Cache-Control", "no-store"}});
  service.install(svr);

  if (!svr.bind(config.host, config.port)) {
    spdlog::critical("cannot listen on {}:{} (address in use or not available)", config.host, config.port);
    return 1;
  }
  spdlog::info("maskmaker {} listening on http://{}:{}", version(), config.host, config.port);

  std::atomic<bool> listen_done{false};
  auto stop_server = [&] { svr.stop(); };  // also fine before run()
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

  svr.run();  // returns once stopped and every connection has had its answer
  listen_done.store(true);
  loader.join();
  pthread_kill(signal_thread.native_handle(), SIGTERM);  // wake the signal thread if it still waits
  signal_thread.join();
  spdlog::info("stopped");
  return service.failed() ? 1 : 0;
}

}  // namespace maskmaker::server
