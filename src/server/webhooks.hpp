// Webhook delivery of the asynchronous jobs (jobs.hpp): when a job with a webhook_url ends, its final body (as
// GET /v2/requests/{id} answers it) is POSTed there, with retries. The URL goes through the same guard as image
// URLs (url_fetch.hpp: http(s), every resolved address allowed, the connection pinned to the address checked).
// Whether a job's webhook is still to be sent is kept in the job store, so that a restart sends what was pending.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace prometheus {
class Counter;
class Registry;
}  // namespace prometheus

namespace maskmaker::server {

class JobStore;

class Webhooks {
 public:
  using Clock = std::chrono::steady_clock;
  struct Options {
    bool allow_private = false;  // --allow-private-urls
    int tries = 3;
    long attempt_timeout_ms = 10000;
  };

  Webhooks(Options options, JobStore& store, prometheus::Registry& registry);
  ~Webhooks();  // stop()
  Webhooks(const Webhooks&) = delete;
  Webhooks& operator=(const Webhooks&) = delete;

  void start();
  // Deliveries not made stay pending in the store: the next start sends them.
  void stop();
  // Sends job `id`'s webhook at `due` (a no-op when it has none, checked when sent).
  void schedule(const std::string& id, int attempt = 0, Clock::time_point due = Clock::now());

 private:
  struct Delivery {
    std::string id;
    int attempt = 0;
    Clock::time_point due;
  };
  void loop();
  void deliver(const Delivery& d);

  Options options_;
  JobStore& store_;
  prometheus::Counter* delivered_ = nullptr;
  prometheus::Counter* retried_ = nullptr;
  prometheus::Counter* gave_up_ = nullptr;
  bool stopping_ = false;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<Delivery> deliveries_;
  std::thread thread_;
};

}  // namespace maskmaker::server
