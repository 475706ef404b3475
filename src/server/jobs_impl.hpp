// Internals of the asynchronous jobs (jobs.hpp), shared by jobs.cpp (the routes: submit, status, result),
// jobs_worker.cpp (workers, crash recovery, expiry) and webhooks.cpp (webhook delivery).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/jobs.hpp"
#include "server/jobs_store.hpp"
#include "server/webhooks.hpp"

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
}  // namespace prometheus

namespace maskmaker::server::jobs_detail {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int kMaxAttempts = 2;           // a job whose process died while running it is run once more, then FAILED
constexpr double kHeartbeatEveryS = 5;    // at most; a third of --jobs-lease-s when that is shorter
constexpr double kTombstoneS = 86400;     // an expired id answers "expired" this long, then it is unknown
inline const char* const kRequestsPrefix = "/v2/requests/";

double unix_now();
double ms_since(Clock::time_point t);
double round1(double x);
// Text from multipart forms need not be UTF-8: never throws on it.
std::string dump(const json& j);
std::string random_hex(size_t bytes);
std::string this_host();

// The bodies of GET /v2/requests/{id}/status and /v2/requests/{id} (also what a webhook receives).
json status_body(const JobRow& row);
json result_body(const JobRow& row);

}  // namespace maskmaker::server::jobs_detail

namespace maskmaker::server {

struct Jobs::Impl {
  using Clock = jobs_detail::Clock;

  ServerConfig config;
  JobsContext ctx;
  std::unique_ptr<JobStore> store;
  std::string host = jobs_detail::this_host();
  std::string owner;  // host|pid|token: who runs a PROCESSING job

  prometheus::Gauge* queued_gauge = nullptr;
  prometheus::Gauge* processing_gauge = nullptr;
  prometheus::Counter* submitted = nullptr;
  prometheus::Counter* completed = nullptr;
  prometheus::Counter* failed = nullptr;
  prometheus::Counter* expired = nullptr;
  prometheus::Counter* requeued = nullptr;
  prometheus::Counter* refunded = nullptr;
  prometheus::Histogram* queue_latency = nullptr;
  prometheus::Histogram* total_latency = nullptr;

  std::atomic<bool> stopping{false};
  std::mutex mutex;
  std::condition_variable wake;  // workers: a job was queued; the sweeper: stop
  uint64_t generation = 0;
  std::vector<std::thread> workers;
  std::mutex running_mutex;
  std::vector<std::string> running;  // the jobs this process's workers hold: heartbeated
  std::thread sweeper;
  std::unique_ptr<Webhooks> webhooks;

  Impl(const ServerConfig& c, JobsContext context);

  // jobs.cpp: the routes
  void submit(const HttpRequest& req, HttpResponse& res, MaskRequest request, std::optional<int64_t> key_id);
  std::string base_url(const HttpRequest& req) const;
  void handle_get(const HttpRequest& req, HttpResponse& res, bool status_only);

  // jobs_queue.cpp: checks a parsed request as the synchronous endpoint would (400, 413: Error), and the image
  // URL and webhook URL against the guard; stores it QUEUED and returns the new job's id. Overloaded (503) when
  // the job queue is full.
  std::string enqueue(MaskRequest request, std::optional<int64_t> key_id);
  // One credit back to the key (logged when that fails).
  void give_back_credit(int64_t key_id, const std::string& job_id);
  // A FAILED job's credit back to its key, once (the store remembers that it was given back).
  void refund_failed(const std::string& job_id);

  // jobs_worker.cpp
  void register_metrics();
  void start();
  void stop();
  void notify_workers();
  void worker_loop();
  std::string internal_error(const JobRow& job, const std::string& what);
  void run(JobRow job);
  void sweeper_loop();
  bool gone_here(const std::string& o) const;
  bool owner_dead(const JobRow& row, double now) const;
  void recover_dead(double now);
  void resume_webhooks(double now);
};

}  // namespace maskmaker::server
