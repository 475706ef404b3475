// Webhook delivery of the asynchronous jobs (jobs.hpp): when a job with a webhook_url ends, its final body (as
// GET /v2/requests/{id} answers it) is POSTed there, with retries. The URL goes through the same guard as image
// URLs (url_fetch.hpp: http(s), every resolved address allowed, the connection pinned to the address checked).
// Whether a job's webhook is still to be sent is kept in the job store, so that a restart sends what was pending.
//
// A few sender threads deliver at once, at most `per_destination` of them to one host (any port), so that a slow (or
// tarpit) receiver delays only its own webhooks. Each try has one deadline that covers resolving the host too.
// Before each try the process claims the delivery in the store with a lease (JobStore::claim_webhook): among
// processes sharing the store, one sends it; when that one dies, another takes it once the lease has run out.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
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
    long attempt_timeout_ms = 10000;  // one try, DNS included
    int senders = 4;                  // threads
    int per_destination = 2;          // tries in flight to one host, whatever the port
  };

  // `owner` names this process in the store's webhook leases.
  Webhooks(Options options, JobStore& store, std::string owner, prometheus::Registry& registry);
  ~Webhooks();  // stop()
  Webhooks(const Webhooks&) = delete;
  Webhooks& operator=(const Webhooks&) = delete;

  void start();
  // Deliveries not made stay pending in the store: the next start sends them.
  void stop();
  // Sends job `id`'s webhook (to `url`) at `due`, unless it is already on its way from this process. `dead_owner`:
  // the process that held it and is known dead (its lease may be taken before it runs out).
  void schedule(const std::string& id, const std::string& url, int attempt = 0, Clock::time_point due = Clock::now(),
                const std::string& dead_owner = "");

 private:
  struct Delivery {
    std::string id;
    std::string destination;  // the host, for the bound per destination
    int attempt = 0;
    Clock::time_point due;
    std::string dead_owner;
  };
  void loop();
  void deliver(const Delivery& d);
  void requeue(Delivery d);

  Options options_;
  JobStore& store_;
  std::string owner_;
  prometheus::Counter* delivered_ = nullptr;
  prometheus::Counter* retried_ = nullptr;
  prometheus::Counter* gave_up_ = nullptr;
  bool stopping_ = false;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<Delivery> deliveries_;
  std::set<std::string> known_;               // ids queued or being sent
  std::map<std::string, int> in_flight_;      // tries in progress per destination
  std::vector<std::thread> threads_;
};

}  // namespace maskmaker::server
