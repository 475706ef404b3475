// Asynchronous jobs: the hosted API's v2 submit-and-poll contract over the synchronous pipeline.
//
//   POST /v2/inpaint-mask-maker        the /v1 body (+ optional webhook_url): 200 {request_id, status_url, response_url}
//   GET  /v2/requests/{id}/status      {status: QUEUED|PROCESSING|COMPLETED|FAILED}; FAILED: 422 with "error"
//   GET  /v2/requests/{id}             COMPLETED: {status, output, metrics}; QUEUED/PROCESSING: 202; FAILED: 422
//
// The request is validated when it is submitted (every 400 of the synchronous endpoint, image URL guard
// included), and its credit taken then (given back if the job fails); what can only fail later (fetching the URL,
// decoding) makes a FAILED job. Each key may have a bounded share of the queue (--jobs-per-key, --jobs-bytes-per-key:
// 429). Jobs live in a job store (jobs_store.hpp; SQLite, or PostgreSQL shared by replicas): they survive restarts. Workers (one per
// --max-concurrent slot) take them in order of submission and run them through the server's admission control with
// a lower priority than synchronous requests: a job starts only when a slot is free and no synchronous request
// waits for one. Finished jobs are kept --jobs-ttl-seconds, and their results at most --jobs-max-result-bytes in
// all (the oldest go first). A webhook, when the body names one, is sent when the job ends (webhooks.hpp).
//
// The code: jobs.cpp (these routes), jobs_queue.cpp (submit), jobs_worker.cpp (workers, recovery, expiry),
// webhooks.cpp, jobs_store.cpp (SQLite), jobs_store_pg.cpp (PostgreSQL); jobs_impl.hpp is what they share.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "server/http_server.hpp"

#include "maskmaker/maskmaker.hpp"
#include "service/request.hpp"
#include "maskmaker/server.hpp"

namespace prometheus { class Registry; }

namespace maskmaker::service {
class MaskService;
}  // namespace maskmaker::service

namespace maskmaker::server {
using namespace maskmaker::service;  // the layer below: typed requests, keys, image sources, rendering

// What the jobs use of the server.
struct JobsContext {
  MaskService* masks = nullptr;  // authorises, runs and charges, as for the synchronous endpoints
  prometheus::Registry* registry = nullptr;
};

class Jobs {
 public:
  Jobs(const ServerConfig& config, JobsContext context);
  // Stops: a worker finishes the job it runs; jobs still queued stay in the database for the next start.
  ~Jobs();

  // The GET routes (/v2/requests/...). The submit route goes through the server's mask handler, which reads,
  // authorises and parses the body as for /v1/inpaint-mask-maker and then calls submit().
  void install(HttpServer& svr);

  // Queues a parsed request and answers 200 {request_id, status_url, response_url}. Throws Error for what the
  // synchronous endpoint would refuse (400, 413), and Overloaded (503) when the job queue is full.
  void submit(const HttpRequest& req, HttpResponse& res, MaskRequest request, std::optional<int64_t> key_id);

  // Where the jobs are kept: --jobs-db; else a PostgreSQL --keys-db itself (table maskmaker_jobs); else beside a
  // SQLite --keys-db ("keys.db" -> "keys-jobs.db"); else (no keys) jobs-<port>.db in a private folder
  // (jobs_store.hpp: private_state_dir).
  static std::string database_path(const ServerConfig& config);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// /v2/requests/{id} and /v2/requests/{id}/status.
bool is_job_path(const std::string& path);
// A bounded metrics label for a /v2 path ("/v2/requests/{id}"), or "" when it is not one of the jobs' paths.
std::string job_route_label(const std::string& path);

}  // namespace maskmaker::server
