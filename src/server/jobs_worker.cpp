// The jobs' workers (jobs_impl.hpp): taking queued jobs and running them, heartbeats, recovery of the jobs of
// dead processes, expiry.
#include "server/jobs_impl.hpp"
#include "service/mask_service.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include <curl/curl.h>
#include <openssl/rand.h>
#include <opencv2/core.hpp>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <spdlog/spdlog.h>

#include "service/admission.hpp"
#include "service/api.hpp"
#include "service/base64.hpp"
#include "server/http_errors.hpp"
#include "service/keys_db.hpp"
#include "service/url_fetch.hpp"

namespace maskmaker::server {
namespace jobs_detail {

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }
double round1(double x) { return std::round(x * 10) / 10; }
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

}  // namespace jobs_detail

using namespace jobs_detail;

Jobs::Impl::Impl(const ServerConfig& c, JobsContext context) : config(c), ctx(std::move(context)) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  owner = host + "|" + std::to_string(getpid()) + "|" + random_hex(6);
  const std::string path = Jobs::database_path(config);
  // Opened now when it is configured or already there (jobs to resume); otherwise at the first submit.
  bool open_now = !config.jobs_db.empty() || !config.keys_db.empty() || std::filesystem::exists(path);
  // PostgreSQL: the workers (which hold a connection only to take or finish a job), the sweeper, webhooks and
  // the GET routes share a pool of --max-concurrent + 3 connections.
  store = open_job_store(path, open_now, std::max(1, config.max_concurrent) + 3);
  spdlog::info("jobs: kept in {} ({} s, {} result bytes at most, {} queued at most, {} s lease)", store->describe(),
               config.jobs_ttl_seconds, config.jobs_max_result_bytes, config.jobs_queue_length,
               config.jobs_lease_seconds);
  register_metrics();
  Webhooks::Options hooks;
  hooks.allow_private = config.allow_private_urls;
  hooks.attempt_timeout_ms = config.jobs_webhook_timeout_ms;
  webhooks = std::make_unique<Webhooks>(hooks, *store, owner, *ctx.registry);
}

void Jobs::Impl::register_metrics() {
  auto& reg = *ctx.registry;
  auto& gauges = prometheus::BuildGauge().Name("maskmaker_jobs")
      .Help("Asynchronous jobs in the store by state: queued (the job queue's depth), processing").Register(reg);
  queued_gauge = &gauges.Add({{"state", "queued"}});
  processing_gauge = &gauges.Add({{"state", "processing"}});
  auto& events = prometheus::BuildCounter().Name("maskmaker_jobs_total")
      .Help("Asynchronous jobs by event: submitted, completed, failed, expired, requeued (after a crash), "
            "refunded (a failed job's credit given back)")
      .Register(reg);
  submitted = &events.Add({{"event", "submitted"}});
  completed = &events.Add({{"event", "completed"}});
  failed = &events.Add({{"event", "failed"}});
  expired = &events.Add({{"event", "expired"}});
  requeued = &events.Add({{"event", "requeued"}});
  refunded = &events.Add({{"event", "refunded"}});
  static const prometheus::Histogram::BucketBoundaries buckets = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                                                                  10, 30, 60, 120, 300, 600, 1800};
  auto& latency = prometheus::BuildHistogram().Name("maskmaker_job_duration_seconds")
      .Help("Asynchronous job latency: phase=queue (submitted to inference start), total (submitted to finished)")
      .Register(reg);
  queue_latency = &latency.Add({{"phase", "queue"}}, buckets);
  total_latency = &latency.Add({{"phase", "total"}}, buckets);
}

void Jobs::Impl::start() {
  int n = std::max(1, config.max_concurrent);
  for (int i = 0; i < n; ++i) workers.emplace_back([this] { worker_loop(); });
  sweeper = std::thread([this] { sweeper_loop(); });
  webhooks->start();
  store->watch([this] { notify_workers(); });  // jobs queued by other processes (PostgreSQL)
}

void Jobs::Impl::stop() {
  store->watch(nullptr);
  {
    std::lock_guard lock(mutex);
    stopping.store(true);
  }
  wake.notify_all();
  for (auto& t : workers) t.join();
  if (sweeper.joinable()) sweeper.join();
  webhooks->stop();
}

void Jobs::Impl::notify_workers() {
  {
    std::lock_guard lock(mutex);
    ++generation;
  }
  wake.notify_all();
}

void Jobs::Impl::worker_loop() {
  while (!stopping) {
    uint64_t seen;
    {
      std::lock_guard lock(mutex);
      seen = generation;
    }
    bool worked = false;
    try {
      if (ctx.masks->ready()) {
        if (auto job = store->claim(owner, unix_now())) {
          queued_gauge->Decrement();
          processing_gauge->Increment();
          const std::string id = job->id;
          {
            std::lock_guard lock(running_mutex);
            running.push_back(id);
          }
          try {
            run(std::move(*job));
          } catch (const std::exception& e) {  // the database failed: do not leave the job PROCESSING for ever
            spdlog::error("job id={}: {}", id, e.what());
            try {
              if (store->fail(id, owner, "internal error (request id " + id + ")", "", unix_now())) refund_failed(id);
            } catch (const std::exception&) {
              // Still PROCESSING: no longer heartbeated, it is recovered once the lease runs out.
            }
          }
          {
            std::lock_guard lock(running_mutex);
            running.erase(std::find(running.begin(), running.end(), id));
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
    // Woken by a submit in this process or a notification from the store (PostgreSQL); every second anyway, for
    // jobs queued by others sharing the database.
    wake.wait_for(lock, std::chrono::seconds(1), [&] { return stopping.load() || generation != seen; });
  }
}

std::string Jobs::Impl::internal_error(const JobRow& job, const std::string& what) {
  spdlog::error("job {}: {}", job.id, what);
  return "internal error (request id " + job.id + ")";
}

void Jobs::Impl::run(JobRow job) {
  const auto claimed = Clock::now();
  std::string error;
  double fetch_ms = 0, wait_ms = 0, infer_ms = 0, output_ms = 0;
  MaskAnswer answer;
  try {
    MaskRequest request = parse_mask_request(std::string_view(job.request), Endpoint::Jobs);
    request.base64 = false;  // the job's answer carries the image in base64 anyway
    if (!job.image.empty()) {
      request.upload = std::move(job.image);
      request.image.clear();
    }
    std::optional<KeyRecord> key;
    if (job.key_id) key = KeyRecord{.id = *job.key_id};
    // A slot of the server's admission control, only when no synchronous request waits for one; a job not yet
    // started when the server stops goes back to the queue. The credit was taken at submit: Charge::None.
    AdmitPolicy admit{Clock::time_point::max(), 0, /*background=*/true, [this] { return stopping.load(); }};
    answer = ctx.masks->run(std::move(request), key, admit, Charge::None);
    fetch_ms = answer.fetch_ms;
    wait_ms = answer.wait_ms;
    infer_ms = answer.infer_ms;
    output_ms = answer.result.times.output_ms;
  } catch (const NotStarted&) {
    store->release(job.id, owner);
    queued_gauge->Increment();
    spdlog::info("job id={} returned to the queue: the server is stopping", job.id);
    return;
  } catch (const Error& e) {
    error = http_status(e.code()) == 500 ? internal_error(job, e.what()) : e.what();
  } catch (const std::bad_alloc&) {
    error = "the server ran out of memory for this request";
  } catch (const cv::Exception& e) {
    error = internal_error(job, std::string("OpenCV: ") + e.what());
  } catch (const std::exception& e) {
    error = internal_error(job, e.what());
  }
  const MaskResult& result = answer.result;
  if (error.empty() && int64_t(answer.body.size()) > config.jobs_max_result_bytes)
    error = "the result is " + std::to_string(answer.body.size()) + " bytes, more than this server keeps (" +
            std::to_string(config.jobs_max_result_bytes) + " bytes)";
  // The credit was taken at submit (jobs_queue.cpp); the balance now, for the metrics.
  std::optional<int64_t> remaining;
  if (error.empty() && job.key_id  && ctx.masks->keys()) {
    try {
      if (auto record = ctx.masks->keys()->find(std::to_string(*job.key_id)); record && record->id == *job.key_id)
        remaining = record->credits;
    } catch (const std::exception& e) {
      spdlog::warn("job id={}: reading the key's balance: {}", job.id, e.what());
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
    if (job.key_id  && ctx.masks->keys()) metrics["remaining_credits"] = remaining ? json(*remaining) : json("unlimited");
    stored = store->complete(job.id, owner, dump(output), std::vector<uint8_t>(answer.body.begin(), answer.body.end()),
                             dump(metrics), now);
    if (stored) {
      completed->Increment();
      int64_t evicted = store->evict_results_over(config.jobs_max_result_bytes, now);
      if (evicted) expired->Increment(double(evicted));
    }
  } else {
    stored = store->fail(job.id, owner, error, dump(metrics), now);
    if (stored) {
      failed->Increment();
      refund_failed(job.id);
    }
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
               job.attempts, detections, queue_ms, fetch_ms, infer_ms, total_ms, answer.body.size(),
               error.empty() ? "" : " error=", error.empty() ? "" : dump(json(error)));
  if (!job.webhook_url.empty()) webhooks->schedule(job.id, job.webhook_url);
}

// Heartbeats this process's running jobs, recovers those of dead processes, expires old jobs, and keeps the
// queue-depth gauges true (other processes may share the database).
void Jobs::Impl::sweeper_loop() {
  double last_heartbeat = 0;
  const double lease = config.jobs_lease_seconds;
  const double heartbeat_every = std::min(kHeartbeatEveryS, lease / 3);
  const auto pause = std::chrono::milliseconds(int64_t(std::min(1000.0, lease * 250)));
  while (!stopping) {
    try {
      if (store->is_open()) {
        const double now = unix_now();
        if (now - last_heartbeat >= heartbeat_every) {
          std::vector<std::string> ids;
          {
            std::lock_guard lock(running_mutex);
            ids = running;
          }
          store->heartbeat(owner, ids, now);
          last_heartbeat = now;
        }
        recover_dead(now);
        resume_webhooks(now);
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
    wake.wait_for(lock, pause, [&] { return stopping.load(); });
  }
}

// Whether `o` names a process of this machine that is gone: its pid no longer runs, or is ours (an earlier run
// of this server, as in a restarted container).
bool Jobs::Impl::gone_here(const std::string& o) const {
  size_t a = o.find('|');
  if (a == std::string::npos || o.substr(0, a) != host) return false;
  size_t b = o.find('|', a + 1);
  if (b == std::string::npos) return false;
  long pid = std::strtol(o.substr(a + 1, b - a - 1).c_str(), nullptr, 10);
  return pid > 0 && (pid == long(getpid()) || (kill(pid_t(pid), 0) != 0 && errno == ESRCH));
}

// Whether the process running a job has died: gone from this machine, or silent (no heartbeat) for longer than
// the lease (the only sign there is of a process on another machine).
bool Jobs::Impl::owner_dead(const JobRow& row, double now) const {
  // One of ours that no worker runs (its finish was lost with the database) stops being heartbeated: stale too.
  if (row.owner == owner) return now - row.heartbeat_at > config.jobs_lease_seconds;
  return gone_here(row.owner) || now - row.heartbeat_at > config.jobs_lease_seconds;
}

void Jobs::Impl::recover_dead(double now) {
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
      refund_failed(row.id);  // its webhook, if any, is sent by resume_webhooks
    }
  }
  if (any) notify_workers();
}

// Pending webhooks that no live process holds: nobody took them yet, their holder's lease ran out (it died on
// any machine), or their holder was a process of this machine that is gone.
void Jobs::Impl::resume_webhooks(double now) {
  for (const JobRow& row : store->pending_webhooks()) {
    const bool dead_here = !row.webhook_owner.empty() && row.webhook_owner != owner && gone_here(row.webhook_owner);
    if (row.webhook_owner.empty() || row.webhook_owner == owner || row.webhook_lease < now || dead_here)
      webhooks->schedule(row.id, row.webhook_url, 0, Clock::now(), dead_here ? row.webhook_owner : "");
  }
}

}  // namespace maskmaker::server
