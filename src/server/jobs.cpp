#include "server/jobs.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>

#include <curl/curl.h>
#include <nlohmann/json.hpp>
#include <openssl/rand.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <spdlog/spdlog.h>

#include "server/admission.hpp"
#include "server/api.hpp"
#include "server/base64.hpp"
#include "server/http_errors.hpp"
#include "server/jobs_store.hpp"
#include "server/keys_db.hpp"
#include "server/url_fetch.hpp"

namespace maskmaker::server {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int kMaxAttempts = 2;           // a job whose process died while running it is run once more, then FAILED
constexpr double kStaleHeartbeatS = 30;   // a PROCESSING job untouched this long belongs to a dead process
constexpr double kHeartbeatEveryS = 5;
constexpr double kTombstoneS = 86400;     // an expired id answers "expired" this long, then it is unknown
constexpr int kWebhookTries = 3;
constexpr long kWebhookTimeoutMs = 10000;
const char* const kRequestsPrefix = "/v2/requests/";

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }
double round1(double x) { return std::round(x * 10) / 10; }
// Text from multipart forms need not be UTF-8: never throw on it.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string random_hex(size_t bytes) {
  std::vector<unsigned char> random(bytes);
  if (RAND_bytes(random.data(), int(bytes)) != 1) throw Error(ErrorCode::Internal, "no randomness for a job id");
  static const char* d = "0123456789abcdef";
  std::string s;
  for (unsigned char c : random) { s += d[c >> 4]; s += d[c & 15]; }
  return s;
}

std::string this_host() {
  char buf[256] = {};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

bool is_http_url(const std::string& s) {
  std::string head = s.substr(0, std::min<size_t>(s.size(), 8));
  std::transform(head.begin(), head.end(), head.begin(), ::tolower);
  return head.rfind("http://", 0) == 0 || head.rfind("https://", 0) == 0;
}

// The header checks decode_image makes first (same messages), so that an image that cannot be decoded is a 400 of
// the submit rather than a FAILED job: empty, unknown format, unreadable header, zero or too many pixels.
void precheck_image(const std::vector<uint8_t>& bytes, int64_t max_pixels) {
  if (bytes.empty()) throw Error(ErrorCode::BadImage, "image is empty (0 bytes)", "image");
  ImageFormat format = sniff_image_format(bytes);
  if (format == ImageFormat::Unknown)
    throw Error(ErrorCode::UnsupportedImage, "unsupported image format: expected JPEG, PNG, WebP, BMP, GIF or TIFF", "image");
  auto size = read_image_size(bytes);
  if (!size)
    throw Error(ErrorCode::BadImage, std::string("cannot read the ") + image_format_name(format) + " image header", "image");
  if (size->width <= 0 || size->height <= 0)
    throw Error(ErrorCode::BadImage, "image has zero width or height (" + std::to_string(size->width) + "x" +
                                         std::to_string(size->height) + ")", "image");
  int64_t pixels = int64_t(size->width) * size->height;
  if (pixels > max_pixels)
    throw Error(ErrorCode::ImageTooLarge, "image is " + std::to_string(size->width) + "x" + std::to_string(size->height) +
                                              " = " + std::to_string(pixels) + " pixels, over the limit of " +
                                              std::to_string(max_pixels), "image");
}

// ------------------------------------------------------------------------------------------------ webhooks

// A webhook URL that passed the same guard as image URLs: http(s), every resolved address allowed, and the
// connection pinned to the address checked (no DNS rebinding).
struct WebhookTarget {
  std::string url;
  std::string pin;  // host:port:address for CURLOPT_RESOLVE ("" for an IP literal)
};

WebhookTarget guard_webhook(const std::string& url, bool allow_private) {
  const char* field = "webhook_url";
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> u(curl_url(), curl_url_cleanup);
  if (curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK)
    throw Error(ErrorCode::InvalidArgument, "webhook_url is not a valid URL", field);
  auto get = [&](CURLUPart part, unsigned flags = 0) {
    char* v = nullptr;
    if (curl_url_get(u.get(), part, &v, flags) != CURLUE_OK || !v) return std::string();
    std::string s(v);
    curl_free(v);
    return s;
  };
  std::string scheme = get(CURLUPART_SCHEME);
  std::transform(scheme.begin(), scheme.end(), scheme.begin(), ::tolower);
  if (scheme != "http" && scheme != "https")
    throw Error(ErrorCode::InvalidArgument, "webhook_url must be an http(s) URL", field);
  std::string host = get(CURLUPART_HOST), port = get(CURLUPART_PORT, CURLU_DEFAULT_PORT);
  if (host.empty()) throw Error(ErrorCode::InvalidArgument, "webhook_url has no host", field);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || !res)
    throw Error(ErrorCode::InvalidArgument, "cannot resolve webhook_url's host '" + host + "'", field);
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(res, freeaddrinfo);
  std::string chosen;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (ai->ai_family == AF_INET)
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_addr, buf, sizeof buf);
    else if (ai->ai_family == AF_INET6)
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_addr, buf, sizeof buf);
    else continue;
    std::string reason = forbidden_address_reason(buf);
    if (!reason.empty() && !allow_private)
      throw Error(ErrorCode::ForbiddenUrl, "webhook_url host '" + host + "' resolves to a forbidden address (" + reason +
                                               "); private URLs are not allowed on this server", field);
    if (chosen.empty()) chosen = buf;
  }
  if (chosen.empty()) throw Error(ErrorCode::InvalidArgument, "cannot resolve webhook_url's host '" + host + "'", field);
  WebhookTarget t;
  t.url = get(CURLUPART_URL);
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) != 1)
    t.pin = host + ":" + port + ":" + (chosen.find(':') != std::string::npos ? "[" + chosen + "]" : chosen);
  return t;
}

size_t discard(char*, size_t size, size_t n, void*) { return size * n; }

// One POST; true on a 2xx answer, else `why` says what happened.
bool post_json(const WebhookTarget& target, const std::string& body, const std::string& job_id, std::string& why) {
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) { why = "curl_easy_init failed"; return false; }
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> resolve(
      target.pin.empty() ? nullptr : curl_slist_append(nullptr, target.pin.c_str()), curl_slist_free_all);
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  headers = curl_slist_append(headers, ("X-Maskmaker-Request-Id: " + job_id).c_str());
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> header_guard(headers, curl_slist_free_all);
  char error[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(curl.get(), CURLOPT_URL, target.url.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_RESOLVE, resolve.get());
  curl_easy_setopt(curl.get(), CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl.get(), CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(curl.get(), CURLOPT_PROXY, "");
  curl_easy_setopt(curl.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT_MS, kWebhookTimeoutMs);
  curl_easy_setopt(curl.get(), CURLOPT_POST, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.size()));
  curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl.get(), CURLOPT_USERAGENT, "maskmaker/0.1");
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(curl.get(), CURLOPT_ERRORBUFFER, error);
  CURLcode rc = curl_easy_perform(curl.get());
  if (rc != CURLE_OK) {
    why = error[0] ? error : curl_easy_strerror(rc);
    return false;
  }
  long status = 0;
  curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &status);
  if (status >= 200 && status < 300) return true;
  why = "answered HTTP " + std::to_string(status);
  return false;
}

// ------------------------------------------------------------------------------------------------ answers

json status_body(const JobRow& row) {
  json body = {{"request_id", row.id}, {"status", job_status_name(row.status)}};
  if (row.status == JobStatus::Failed) body["error"] = row.error;
  return body;
}

json result_body(const JobRow& row) {
  json body = status_body(row);
  if (row.status == JobStatus::Completed) {
    json output = json::parse(row.result, nullptr, false);
    if (!output.is_object()) output = json::object();
    output["image"] = base64_encode(row.result_image);
    body["output"] = std::move(output);
    json metrics = json::parse(row.metrics, nullptr, false);
    body["metrics"] = metrics.is_object() ? metrics : json::object();
  }
  return body;
}

void answer_json(HttpResponse& res, int status, const json& body) {
  res.status = status;
  res.set_content(dump(body), "application/json");
}

// A host (and port) fit to put in a URL: no spaces, no slashes, no user info.
bool plausible_host(const std::string& h) {
  if (h.empty() || h.size() > 255) return false;
  return std::all_of(h.begin(), h.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_';
  });
}

std::string first_value(std::string v) {
  v = v.substr(0, v.find(','));
  auto b = v.find_first_not_of(" \t"), e = v.find_last_not_of(" \t");
  return b == std::string::npos ? "" : v.substr(b, e - b + 1);
}

}  // namespace

// ------------------------------------------------------------------------------------------------ paths

bool is_job_path(const std::string& path) {
  const std::string prefix = kRequestsPrefix;
  if (path.size() <= prefix.size() || path.compare(0, prefix.size(), prefix) != 0) return false;
  std::string rest = path.substr(prefix.size());
  size_t slash = rest.find('/');
  if (slash == std::string::npos) return true;
  return slash > 0 && rest.substr(slash) == "/status";
}

std::string job_route_label(const std::string& path) {
  if (path == "/v2/inpaint-mask-maker") return path;
  if (!is_job_path(path)) return "";
  return path.size() > 7 && path.compare(path.size() - 7, 7, "/status") == 0 ? "/v2/requests/{id}/status"
                                                                               : "/v2/requests/{id}";
}

std::string Jobs::database_path(const ServerConfig& config) {
  if (!config.jobs_db.empty()) return config.jobs_db;
  if (!config.keys_db.empty() && !is_postgres_url(config.keys_db)) {
    const std::string& k = config.keys_db;
    if (k.size() > 3 && k.compare(k.size() - 3, 3, ".db") == 0) return k.substr(0, k.size() - 3) + "-jobs.db";
    return k + "-jobs.db";
  }
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = tmp && *tmp ? tmp : "/tmp";
  return dir + "/maskmaker-jobs-" + std::to_string(config.port) + ".db";
}

// ------------------------------------------------------------------------------------------------ the job system

struct Jobs::Impl {
  ServerConfig config;
  JobsContext ctx;
  std::unique_ptr<JobStore> store;
  std::string host = this_host();
  std::string owner;  // host|pid|token: who runs a PROCESSING job

  prometheus::Gauge* queued_gauge = nullptr;
  prometheus::Gauge* processing_gauge = nullptr;
  prometheus::Counter* submitted = nullptr;
  prometheus::Counter* completed = nullptr;
  prometheus::Counter* failed = nullptr;
  prometheus::Counter* expired = nullptr;
  prometheus::Counter* requeued = nullptr;
  prometheus::Histogram* queue_latency = nullptr;
  prometheus::Histogram* total_latency = nullptr;
  prometheus::Counter* hooks_delivered = nullptr;
  prometheus::Counter* hooks_retried = nullptr;
  prometheus::Counter* hooks_gave_up = nullptr;

  std::atomic<bool> stopping{false};
  std::mutex mutex;
  std::condition_variable wake;  // workers: a job was queued; the sweeper: stop
  uint64_t generation = 0;
  std::vector<std::thread> workers;
  std::thread sweeper;

  struct Delivery {
    std::string id;
    int attempt = 0;
    Clock::time_point due;
  };
  std::mutex hook_mutex;
  std::condition_variable hook_wake;
  std::vector<Delivery> deliveries;
  std::thread hook_thread;

  Impl(const ServerConfig& c, JobsContext context) : config(c), ctx(std::move(context)) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    owner = host + "|" + std::to_string(getpid()) + "|" + random_hex(6);
    const std::string path = Jobs::database_path(config);
    // Opened now when it is configured or already there (jobs to resume); otherwise at the first submit.
    bool open_now = !config.jobs_db.empty() || (!config.keys_db.empty() && !is_postgres_url(config.keys_db)) ||
                    std::filesystem::exists(path);
    store = std::make_unique<JobStore>(path, open_now);
    spdlog::info("jobs: kept in {} ({} s, {} result bytes at most, {} queued at most)", path, config.jobs_ttl_seconds,
                 config.jobs_max_result_bytes, config.jobs_queue_length);
    register_metrics();
  }

  void register_metrics() {
    auto& reg = *ctx.registry;
    auto& gauges = prometheus::BuildGauge().Name("maskmaker_jobs")
        .Help("Asynchronous jobs in the store by state: queued (the job queue's depth), processing").Register(reg);
    queued_gauge = &gauges.Add({{"state", "queued"}});
    processing_gauge = &gauges.Add({{"state", "processing"}});
    auto& events = prometheus::BuildCounter().Name("maskmaker_jobs_total")
        .Help("Asynchronous jobs by event: submitted, completed, failed, expired, requeued (after a crash)")
        .Register(reg);
    submitted = &events.Add({{"event", "submitted"}});
    completed = &events.Add({{"event", "completed"}});
    failed = &events.Add({{"event", "failed"}});
    expired = &events.Add({{"event", "expired"}});
    requeued = &events.Add({{"event", "requeued"}});
    static const prometheus::Histogram::BucketBoundaries buckets = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                                                                    10, 30, 60, 120, 300, 600, 1800};
    auto& latency = prometheus::BuildHistogram().Name("maskmaker_job_duration_seconds")
        .Help("Asynchronous job latency: phase=queue (submitted to inference start), total (submitted to finished)")
        .Register(reg);
    queue_latency = &latency.Add({{"phase", "queue"}}, buckets);
    total_latency = &latency.Add({{"phase", "total"}}, buckets);
    auto& hooks = prometheus::BuildCounter().Name("maskmaker_webhook_deliveries_total")
        .Help("Webhook calls: delivered, retried (a try failed, another follows), gave_up (every try failed)")
        .Register(reg);
    hooks_delivered = &hooks.Add({{"result", "delivered"}});
    hooks_retried = &hooks.Add({{"result", "retried"}});
    hooks_gave_up = &hooks.Add({{"result", "gave_up"}});
  }

  void start() {
    int n = std::max(1, config.max_concurrent);
    for (int i = 0; i < n; ++i) workers.emplace_back([this] { worker_loop(); });
    sweeper = std::thread([this] { sweeper_loop(); });
    hook_thread = std::thread([this] { hook_loop(); });
  }

  void stop() {
    {
      std::lock_guard lock(mutex);
      stopping.store(true);
    }
    wake.notify_all();
    {
      std::lock_guard lock(hook_mutex);
    }
    hook_wake.notify_all();
    for (auto& t : workers) t.join();
    if (sweeper.joinable()) sweeper.join();
    if (hook_thread.joinable()) hook_thread.join();
  }

  void notify_workers() {
    {
      std::lock_guard lock(mutex);
      ++generation;
    }
    wake.notify_all();
  }

  // ---------------------------------------------------------------------------------------------- submit
  void submit(const HttpRequest& req, HttpResponse& res, const MaskRequest& request,
              std::vector<uint8_t> image, std::optional<int64_t> key_id, const std::string& json_body,
              const std::multimap<std::string, FormPart>& parts) {
    json stored = {{"prompt", request.prompt},
                   {"invert_mask", request.params.invert_mask},
                   {"confidence_thresh", request.params.confidence_thresh},
                   {"iou_thresh", request.params.iou_thresh},
                   {"grow_mask", request.params.grow_mask},
                   {"return_mask", request.return_mask},
                   {"image", "inline"}};
    if (image.empty()) {
      if (is_http_url(request.image)) {
        check_url(request.image, ctx.fetch_limits);  // scheme, syntax, guard: 400 now; the fetch comes later
        stored["image"] = request.image;
      } else {
        image = resolve_image_bytes(request.image, ctx.fetch_limits);  // data URI or base64: 400/413 as /v1
      }
    }
    if (!image.empty()) precheck_image(image, config.max_pixels);

    std::string webhook;
    if (!parts.empty()) {
      if (auto it = parts.find("webhook_url"); it != parts.end()) webhook = first_value(it->second.content);
    } else if (json_body.find("\"webhook_url\"") != std::string::npos) {
      json body = json::parse(json_body, nullptr, false);
      if (body.is_object() && body.contains("webhook_url") && !body["webhook_url"].is_null()) {
        if (!body["webhook_url"].is_string())
          throw Error(ErrorCode::InvalidArgument, "webhook_url must be a string (an http(s) URL)", "webhook_url");
        webhook = body["webhook_url"].get<std::string>();
      }
    }
    if (!webhook.empty()) guard_webhook(webhook, config.allow_private_urls);

    JobRow row;
    row.id = random_hex(16);
    row.key_id = key_id;
    row.request = dump(stored);
    row.image = std::move(image);
    row.webhook_url = webhook;
    row.created_at = unix_now();
    if (!store->insert(row, config.jobs_queue_length))
      throw Error(ErrorCode::Overloaded, "the job queue is full (" + std::to_string(config.jobs_queue_length) +
                                             " jobs waiting): retry shortly");
    submitted->Increment();
    queued_gauge->Increment();
    notify_workers();

    std::string base = base_url(req);
    answer_json(res, 200, {{"request_id", row.id},
                           {"status", "QUEUED"},
                           {"status_url", base + kRequestsPrefix + row.id + "/status"},
                           {"response_url", base + kRequestsPrefix + row.id}});
  }

  // The scheme and host the client reached us by: --public-url, else X-Forwarded-Proto/-Host (a proxy), else Host.
  std::string base_url(const HttpRequest& req) const {
    if (!config.public_url.empty()) {
      std::string b = config.public_url;
      while (!b.empty() && b.back() == '/') b.pop_back();
      return b;
    }
    std::string proto = first_value(req.get_header_value("X-Forwarded-Proto"));
    std::transform(proto.begin(), proto.end(), proto.begin(), ::tolower);
    if (proto != "http" && proto != "https") proto = "http";
    std::string host = first_value(req.get_header_value("X-Forwarded-Host"));
    if (!plausible_host(host)) host = req.get_header_value("Host");
    if (!plausible_host(host)) {
      host = config.host.find(':') != std::string::npos ? "[" + config.host + "]" : config.host;
      host += ":" + std::to_string(config.port);
    }
    return proto + "://" + host;
  }

  // ---------------------------------------------------------------------------------------------- reading
  void handle_get(const HttpRequest& req, HttpResponse& res, bool status_only) {
    const std::string id = req.matches.size() > 1 ? std::string(req.matches[1]) : std::string();
    try {
      std::optional<int64_t> key_id;
      if (ctx.keys) {
        std::string key = req.get_header_value("x-api-key");
        if (key.empty()) throw Error(ErrorCode::Unauthorized, "missing x-api-key header");
        auto record = ctx.keys->find_by_key(key);
        if (!record) throw Error(ErrorCode::Unauthorized, "unknown API key");
        if (record->disabled) throw Error(ErrorCode::Forbidden, "this API key is disabled");
        key_id = record->id;
      }
      const std::string shown = id.size() <= 64 ? id : id.substr(0, 64) + "...";
      auto row = store->get(id, !status_only);
      // Another key's job answers as an unknown one: ids cannot be probed.
      if (!row || row->key_id != key_id)
        throw Error(ErrorCode::NotFound, "no request with id '" + shown + "' (submit one with POST /v2/inpaint-mask-maker)");
      if (row->status == JobStatus::Expired)
        throw Error(ErrorCode::NotFound, "request '" + shown + "' expired: finished jobs are kept " +
                                             std::to_string(config.jobs_ttl_seconds) +
                                             " s (and results within the server's storage budget); submit it again");
      json body = status_only ? status_body(*row) : result_body(*row);
      int status = 200;
      if (row->status == JobStatus::Failed) status = 422;
      else if (!status_only && row->status != JobStatus::Completed) status = 202;
      if (row->status == JobStatus::Queued) body["queue_position"] = store->queue_position(id);
      if (status == 202) res.set_header("Retry-After", "1");
      answer_json(res, status, body);
    } catch (const Error& e) {
      const int status = http_status(e.code());
      if (status == 500) spdlog::error("job {}: {}", id.substr(0, 64), e.what());
      set_json_error(res, status, status == 500 ? "internal error reading request '" + id.substr(0, 64) + "'" : e.what());
    } catch (const std::exception& e) {
      spdlog::error("job {}: reading it failed: {}", id, e.what());
      set_json_error(res, 500, "internal error reading request '" + id.substr(0, 64) + "'");
    }
  }

  // ---------------------------------------------------------------------------------------------- workers
  void worker_loop() {
    while (!stopping) {
      uint64_t seen;
      {
        std::lock_guard lock(mutex);
        seen = generation;
      }
      bool worked = false;
      try {
        Pipeline* pipeline = ctx.pipeline ? ctx.pipeline() : nullptr;
        if (pipeline) {
          if (auto job = store->claim(owner, unix_now())) {
            queued_gauge->Decrement();
            processing_gauge->Increment();
            const std::string id = job->id;
            try {
              run(std::move(*job), *pipeline);
            } catch (const std::exception& e) {  // the database failed: do not leave the job PROCESSING for ever
              spdlog::error("job id={}: {}", id, e.what());
              try {
                store->fail(id, owner, "internal error (request id " + id + ")", "", unix_now());
              } catch (const std::exception&) {
              }
            }
            processing_gauge->Decrement();
            worked = true;
          }
        }
      } catch (const std::exception& e) {
        spdlog::error("jobs: worker: {}", e.what());
      }
      if (worked) continue;
      std::unique_lock lock(mutex);
      // Woken by a submit in this process; every second anyway, for jobs queued by others sharing the database.
      wake.wait_for(lock, std::chrono::seconds(1), [&] { return stopping.load() || generation != seen; });
    }
  }

  std::string internal_error(const JobRow& job, const std::string& what) {
    spdlog::error("job {}: {}", job.id, what);
    return "internal error (request id " + job.id + ")";
  }

  void run(JobRow job, Pipeline& pipeline) {
    const auto claimed = Clock::now();
    std::string error;
    double fetch_ms = 0, wait_ms = 0, infer_ms = 0, output_ms = 0;
    ApiResponse answer;
    MaskResult result;
    try {
      MaskRequest request = parse_mask_request(std::string_view(job.request), Endpoint::Compatible);
      request.base64 = false;  // the job's answer carries the image in base64 anyway
      std::vector<uint8_t> bytes = std::move(job.image);
      if (bytes.empty()) {
        auto t = Clock::now();
        bytes = fetch_url(request.image, ctx.fetch_limits);
        fetch_ms = ms_since(t);
      }
      // A slot of the server's admission control, only when no synchronous request waits for one.
      auto t_wait = Clock::now();
      for (;;) {
        if (stopping) {  // not started: back in the queue for the next start
          store->release(job.id, owner);
          queued_gauge->Increment();
          spdlog::info("job id={} returned to the queue: the server is stopping", job.id);
          return;
        }
        if (ctx.admission->enter_background(Clock::now() + std::chrono::milliseconds(250))) break;
      }
      AdmissionSlot slot(*ctx.admission);
      wait_ms = ms_since(t_wait);
      auto t = Clock::now();
      DecodeLimits limits;
      limits.max_pixels = config.max_pixels;
      DecodedImage image = decode_image(bytes, limits);
      double decode_ms = ms_since(t);
      result = pipeline.run(image, request.prompt, request.params);
      result.times.decode_ms = decode_ms;
      t = Clock::now();
      answer = compatible_response(image, result, request);
      output_ms = ms_since(t);
      infer_ms = result.times.total_ms();
    } catch (const Error& e) {
      error = http_status(e.code()) == 500 ? internal_error(job, e.what()) : e.what();
    } catch (const std::bad_alloc&) {
      error = "the server ran out of memory for this request";
    } catch (const cv::Exception& e) {
      error = internal_error(job, std::string("OpenCV: ") + e.what());
    } catch (const std::exception& e) {
      error = internal_error(job, e.what());
    }

    if (error.empty() && int64_t(answer.bytes.size()) > config.jobs_max_result_bytes)
      error = "the result is " + std::to_string(answer.bytes.size()) + " bytes, more than this server keeps (" +
              std::to_string(config.jobs_max_result_bytes) + " bytes)";
    // The credit is taken when the job succeeds: a key that ran out meanwhile gets no result.
    std::optional<int64_t> remaining;
    if (error.empty() && job.key_id && ctx.keys) {
      try {
        if (!ctx.keys->consume(*job.key_id, remaining))
          error = "this API key has no credits left (or was disabled) when the job finished; its result was not kept";
      } catch (const std::exception& e) {
        error = internal_error(job, e.what());
      }
    }

    const double now = unix_now();
    const double queue_ms = std::max(0.0, (now - job.created_at) * 1000 - ms_since(claimed)) + wait_ms;
    const double total_ms = std::max(0.0, (now - job.created_at) * 1000);
    json metrics = {{"queue_time_ms", round1(queue_ms)},     {"fetch_time_ms", round1(fetch_ms)},
                    {"inference_time_ms", round1(infer_ms)}, {"output_time_ms", round1(output_ms)},
                    {"total_time_ms", round1(total_ms)},     {"attempts", job.attempts}};
    int detections = 0;
    bool stored;
    if (error.empty()) {
      json instances = json::array();
      for (const auto& inst : result.instances) {
        if (inst.negative) continue;
        ++detections;
        instances.push_back({{"phrase", inst.phrase}, {"score", inst.score},
                             {"box", {inst.box.x1, inst.box.y1, inst.box.x2, inst.box.y2}}});
      }
      json output = {{"content_type", answer.content_type}, {"detections", detections},
                     {"unmatched", result.unmatched},       {"instances", instances},
                     {"width", result.width},               {"height", result.height},
                     {"infer_time_ms", round1(infer_ms)}};
      if (job.key_id && ctx.keys) metrics["remaining_credits"] = remaining ? json(*remaining) : json("unlimited");
      stored = store->complete(job.id, owner, dump(output), answer.bytes, dump(metrics), now);
      if (stored) {
        completed->Increment();
        int64_t evicted = store->evict_results_over(config.jobs_max_result_bytes, now);
        if (evicted) expired->Increment(double(evicted));
      }
    } else {
      stored = store->fail(job.id, owner, error, dump(metrics), now);
      if (stored) failed->Increment();
    }
    if (!stored) {
      spdlog::warn("job id={}: finished, but another process had taken it over meanwhile; its result is dropped", job.id);
      return;
    }
    queue_latency->Observe(queue_ms / 1000);
    total_latency->Observe(total_ms / 1000);
    spdlog::info("job id={} key={} status={} attempts={} detections={} queue_ms={:.1f} fetch_ms={:.1f} "
                 "infer_ms={:.1f} total_ms={:.1f} out={}B{}{}",
                 job.id, job.key_id ? std::to_string(*job.key_id) : "-", error.empty() ? "COMPLETED" : "FAILED",
                 job.attempts, detections, queue_ms, fetch_ms, infer_ms, total_ms, answer.bytes.size(),
                 error.empty() ? "" : " error=", error.empty() ? "" : dump(json(error)));
    if (!job.webhook_url.empty()) schedule_webhook(job.id, 0, Clock::now());
  }

  // ---------------------------------------------------------------------------------------------- sweeper
  // Heartbeats this process's running jobs, recovers those of dead processes, expires old jobs, and keeps the
  // queue-depth gauges true (other processes may share the database).
  void sweeper_loop() {
    double last_heartbeat = 0;
    bool first = true;
    while (!stopping) {
      try {
        if (store->is_open()) {
          const double now = unix_now();
          if (now - last_heartbeat >= kHeartbeatEveryS) {
            store->heartbeat(owner, now);
            last_heartbeat = now;
          }
          if (first) resume_webhooks();  // before recover_dead, which schedules the webhooks of the jobs it fails
          first = false;
          recover_dead(now);
          int64_t n = store->expire_finished_before(now - double(config.jobs_ttl_seconds), now);
          if (n) expired->Increment(double(n));
          store->delete_expired_before(now - std::max(kTombstoneS, double(config.jobs_ttl_seconds)));
          queued_gauge->Set(double(store->count(JobStatus::Queued)));
          processing_gauge->Set(double(store->count(JobStatus::Processing)));
        }
      } catch (const std::exception& e) {
        spdlog::warn("jobs: {}", e.what());
      }
      std::unique_lock lock(mutex);
      wake.wait_for(lock, std::chrono::seconds(1), [&] { return stopping.load(); });
    }
  }

  // Whether `o` names a process of this machine that is gone: its pid no longer runs, or is ours (an earlier run
  // of this server, as in a restarted container).
  bool gone_here(const std::string& o) const {
    size_t a = o.find('|');
    if (a == std::string::npos || o.substr(0, a) != host) return false;
    size_t b = o.find('|', a + 1);
    if (b == std::string::npos) return false;
    long pid = std::strtol(o.substr(a + 1, b - a - 1).c_str(), nullptr, 10);
    return pid > 0 && (pid == long(getpid()) || (kill(pid_t(pid), 0) != 0 && errno == ESRCH));
  }

  // Whether the process running a job has died: gone from this machine, or silent (no heartbeat) for too long.
  bool owner_dead(const JobRow& row, double now) const {
    if (row.owner == owner) return false;
    return gone_here(row.owner) || now - row.heartbeat_at > kStaleHeartbeatS;
  }

  void recover_dead(double now) {
    bool any = false;
    for (const JobRow& row : store->processing()) {
      if (!owner_dead(row, now)) continue;
      bool again = false;
      const std::string why = "the server stopped while running this job, " + std::to_string(row.attempts) +
                              " times; it is not retried again";
      if (!store->recover(row.id, row.owner, kMaxAttempts, why, now, again)) continue;
      if (again) {
        requeued->Increment();
        any = true;
        spdlog::warn("job id={}: its server stopped while running it; queued again", row.id);
      } else {
        failed->Increment();
        spdlog::warn("job id={}: FAILED: {}", row.id, why);
        schedule_webhook(row.id, 0, Clock::now());  // a no-op unless it has one (checked when sent)
      }
    }
    if (any) notify_workers();
  }

  // Webhooks that a dead process on this machine had not delivered.
  void resume_webhooks() {
    for (const JobRow& row : store->pending_webhooks())
      if (row.owner != owner && gone_here(row.owner)) schedule_webhook(row.id, 0, Clock::now());
  }

  // ---------------------------------------------------------------------------------------------- webhooks
  void schedule_webhook(const std::string& id, int attempt, Clock::time_point due) {
    {
      std::lock_guard lock(hook_mutex);
      deliveries.push_back({id, attempt, due});
    }
    hook_wake.notify_all();
  }

  void hook_loop() {
    std::unique_lock lock(hook_mutex);
    while (!stopping) {
      if (deliveries.empty()) {
        hook_wake.wait(lock, [&] { return stopping.load() || !deliveries.empty(); });
        continue;
      }
      auto next = std::min_element(deliveries.begin(), deliveries.end(),
                                   [](const Delivery& a, const Delivery& b) { return a.due < b.due; });
      if (next->due > Clock::now()) {
        hook_wake.wait_until(lock, next->due);
        continue;
      }
      Delivery d = *next;
      deliveries.erase(next);
      lock.unlock();
      deliver(d);
      lock.lock();
    }
    // Pending deliveries stay pending in the database: the next start sends them.
  }

  void deliver(const Delivery& d) {
    std::optional<JobRow> row;
    try {
      row = store->get(d.id, true);
    } catch (const std::exception& e) {
      spdlog::warn("job id={}: webhook: {}", d.id, e.what());
    }
    if (!row || row->webhook_url.empty() ||
        (row->status != JobStatus::Completed && row->status != JobStatus::Failed))
      return;
    std::string why;
    bool ok = false;
    try {
      WebhookTarget target = guard_webhook(row->webhook_url, config.allow_private_urls);
      ok = post_json(target, dump(result_body(*row)), row->id, why);
    } catch (const std::exception& e) {
      why = e.what();
    }
    try {
      if (ok) {
        hooks_delivered->Increment();
        store->set_webhook(d.id, WebhookState::Delivered);
        spdlog::info("job id={}: webhook delivered (try {})", d.id, d.attempt + 1);
      } else if (d.attempt + 1 < kWebhookTries) {
        hooks_retried->Increment();
        auto backoff = std::chrono::seconds(d.attempt == 0 ? 1 : 4);  // 1 s, then 4 s
        spdlog::warn("job id={}: webhook try {} failed ({}); again in {} s", d.id, d.attempt + 1, why, backoff.count());
        schedule_webhook(d.id, d.attempt + 1, Clock::now() + backoff);
      } else {
        hooks_gave_up->Increment();
        store->set_webhook(d.id, WebhookState::GaveUp);
        spdlog::warn("job id={}: webhook failed {} times ({}); given up", d.id, kWebhookTries, why);
      }
    } catch (const std::exception& e) {
      spdlog::warn("job id={}: webhook: {}", d.id, e.what());
    }
  }
};

Jobs::Jobs(const ServerConfig& config, JobsContext context) : impl_(std::make_unique<Impl>(config, std::move(context))) {
  impl_->start();
}

Jobs::~Jobs() { impl_->stop(); }

void Jobs::install(HttpServer& svr) {
  svr.Get(R"(/v2/requests/([^/]+)/status)", [this](const HttpRequest& req, HttpResponse& res) {
    impl_->handle_get(req, res, true);
  });
  svr.Get(R"(/v2/requests/([^/]+))", [this](const HttpRequest& req, HttpResponse& res) {
    impl_->handle_get(req, res, false);
  });
}

void Jobs::submit(const HttpRequest& req, HttpResponse& res, const MaskRequest& request,
                  std::vector<uint8_t> image_bytes, std::optional<int64_t> key_id, const std::string& json_body,
                  const std::multimap<std::string, FormPart>& parts) {
  impl_->submit(req, res, request, std::move(image_bytes), key_id, json_body, parts);
}

}  // namespace maskmaker::server
