#include "server/webhooks.hpp"

#include <algorithm>
#include <memory>
#include <optional>

#include <curl/curl.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <spdlog/spdlog.h>

#include "runtime/ascii.hpp"
#include "server/jobs_impl.hpp"
#include "server/jobs_store.hpp"
#include "service/url_fetch.hpp"

namespace maskmaker::server {
namespace {

size_t discard(char*, size_t size, size_t n, void*) { return size * n; }

// One POST; true on a 2xx answer, else `why` says what happened.
bool post_json(const GuardedUrl& target, const std::string& body, const std::string& job_id, long timeout_ms,
               std::string& why) {
  GuardedCurl curl(target, std::min(5000L, timeout_ms), timeout_ms);
  const char* error = curl.error;
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  headers = curl_slist_append(headers, ("X-Maskmaker-Request-Id: " + job_id).c_str());
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> header_guard(headers, curl_slist_free_all);
  curl_easy_setopt(curl.get(), CURLOPT_POST, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.size()));
  curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, discard);
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

}  // namespace

// The host of a URL, lower case, without its port: ports on one host are one destination, so that varying the
// port cannot multiply the tries in flight to one machine. The URL itself when it does not parse (the guard
// refuses it when sent).
std::string destination_of(const std::string& url) {
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> u(curl_url(), curl_url_cleanup);
  if (curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) return url;
  char* host = nullptr;
  std::string out = url;
  if (curl_url_get(u.get(), CURLUPART_HOST, &host, 0) == CURLUE_OK) out = rt::ascii_lower(host);
  curl_free(host);
  return out;
}

Webhooks::Webhooks(Options options, JobStore& store, std::string owner, prometheus::Registry& registry)
    : options_(options), store_(store), owner_(std::move(owner)) {
  auto& hooks = prometheus::BuildCounter().Name("maskmaker_webhook_deliveries_total")
      .Help("Webhook calls: delivered, retried (a try failed, another follows), gave_up (every try failed)")
      .Register(registry);
  delivered_ = &hooks.Add({{"result", "delivered"}});
  retried_ = &hooks.Add({{"result", "retried"}});
  gave_up_ = &hooks.Add({{"result", "gave_up"}});
}

Webhooks::~Webhooks() { stop(); }

void Webhooks::start() {
  for (int i = 0; i < std::max(1, options_.senders); ++i) threads_.emplace_back([this] { loop(); });
}

void Webhooks::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
  try {  // what this process holds and did not send: free for the next process at once
    store_.release_webhooks(owner_);
  } catch (const std::exception& e) {
    spdlog::warn("webhooks: {}", e.what());
  }
}

void Webhooks::schedule(const std::string& id, const std::string& url, int attempt, Clock::time_point due,
                        const std::string& dead_owner) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || !known_.insert(id).second) return;
    deliveries_.push_back({id, destination_of(url), attempt, due, dead_owner});
  }
  wake_.notify_one();
}

void Webhooks::requeue(Delivery d) {
  {
    std::lock_guard lock(mutex_);
    deliveries_.push_back(std::move(d));
  }
  wake_.notify_one();
}

void Webhooks::loop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    // The earliest due delivery whose destination has room.
    auto now = Clock::now();
    auto pick = deliveries_.end();
    std::optional<Clock::time_point> next_due;
    for (auto it = deliveries_.begin(); it != deliveries_.end(); ++it) {
      if (auto busy = in_flight_.find(it->destination);
          busy != in_flight_.end() && busy->second >= options_.per_destination)
        continue;
      if (it->due <= now && (pick == deliveries_.end() || it->due < pick->due)) pick = it;
      if (it->due > now && (!next_due || it->due < *next_due)) next_due = it->due;
    }
    if (pick == deliveries_.end()) {
      if (next_due) wake_.wait_until(lock, *next_due);
      else wake_.wait(lock);  // a new delivery, a finished try (room at a destination), or stop
      continue;
    }
    Delivery d = std::move(*pick);
    deliveries_.erase(pick);
    ++in_flight_[d.destination];
    lock.unlock();
    deliver(d);
    lock.lock();
    if (--in_flight_[d.destination] == 0) in_flight_.erase(d.destination);
    wake_.notify_all();
  }
}

void Webhooks::deliver(const Delivery& d) {
  auto forget = [&] {
    std::lock_guard lock(mutex_);
    known_.erase(d.id);
  };
  std::optional<JobRow> row;
  try {
    // Held for this try and the back-off after it; another process may take it only when this one is gone.
    const double lease_s = double(options_.attempt_timeout_ms) / 1000 + 15;
    if (store_.claim_webhook(d.id, owner_, jobs_detail::unix_now(), lease_s, d.dead_owner))
      row = store_.get(d.id, true);
  } catch (const std::exception& e) {  // the store is unavailable: tried again by the sweeper
    spdlog::warn("job id={}: webhook: {}", d.id, e.what());
  }
  if (!row || row->webhook_url.empty() || (row->status != JobStatus::Completed && row->status != JobStatus::Failed)) {
    forget();  // sent by another process, or nothing to send
    return;
  }
  std::string why;
  bool ok = false;
  try {
    const auto deadline = Clock::now() + std::chrono::milliseconds(options_.attempt_timeout_ms);
    GuardedUrl target = guard_url(row->webhook_url, options_.allow_private, deadline, webhook_url_role());
    long left_ms = long(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left_ms <= 0) why = "resolving its host took the whole " + std::to_string(options_.attempt_timeout_ms) + " ms";
    else ok = post_json(target, jobs_detail::dump(jobs_detail::result_body(*row)), row->id, left_ms, why);
  } catch (const std::exception& e) {
    why = e.what();
  }
  try {
    if (ok) {
      delivered_->Increment();
      store_.set_webhook(d.id, WebhookState::Delivered);
      spdlog::info("job id={}: webhook delivered (try {})", d.id, d.attempt + 1);
    } else if (d.attempt + 1 < options_.tries) {
      retried_->Increment();
      auto backoff = std::chrono::seconds(d.attempt == 0 ? 1 : 4);  // 1 s, then 4 s
      spdlog::warn("job id={}: webhook try {} failed ({}); again in {} s", d.id, d.attempt + 1, why, backoff.count());
      Delivery next = d;
      next.attempt = d.attempt + 1;
      next.due = Clock::now() + backoff;
      next.dead_owner.clear();
      requeue(std::move(next));
      return;
    } else {
      gave_up_->Increment();
      store_.set_webhook(d.id, WebhookState::GaveUp);
      spdlog::warn("job id={}: webhook failed {} times ({}); given up", d.id, options_.tries, why);
    }
  } catch (const std::exception& e) {
    spdlog::warn("job id={}: webhook: {}", d.id, e.what());
  }
  forget();
}

}  // namespace maskmaker::server
