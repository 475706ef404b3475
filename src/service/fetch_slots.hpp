// Bounds the image URLs being fetched at once, in all and per key. A fetch holds the thread that took its request
// for up to --fetch-timeout-ms before any admission slot is involved; without a bound, slow hosts named by one
// client could hold every worker thread, and health checks and other keys' requests would wait behind them.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "maskmaker/maskmaker.hpp"

namespace maskmaker::service {

class FetchSlots {
 public:
  FetchSlots(int total, int per_key) : total_(total), per_key_limit_(per_key) {}

  // Takes a slot, or throws: 429 when this key has its share in flight, 503 when all are in use.
  void enter(std::optional<int64_t> key_id) {
    std::lock_guard lock(mutex_);
    auto held = key_id ? per_key_.find(*key_id) : per_key_.end();
    if (held != per_key_.end() && held->second >= per_key_limit_)  // no entry for a key until it holds a slot
      throw Error(ErrorCode::RateLimited, "this API key has " + std::to_string(per_key_limit_) +
                                              " image URLs being fetched already: retry when one is done")
          .with_retry_after(1);
    if (active_ >= total_)
      throw Error(ErrorCode::Overloaded, "the server is fetching as many image URLs as it may: retry shortly");
    ++active_;
    if (key_id) ++per_key_[*key_id];
  }
  void leave(std::optional<int64_t> key_id) {
    std::lock_guard lock(mutex_);
    --active_;
    if (key_id && --per_key_[*key_id] <= 0) per_key_.erase(*key_id);
  }
  int active() const { std::lock_guard lock(mutex_); return active_; }

 private:
  const int total_;
  const int per_key_limit_;
  mutable std::mutex mutex_;
  int active_ = 0;
  std::map<int64_t, int> per_key_;
};

// One fetch's slot, held while the URL is fetched.
class FetchSlot {
 public:
  FetchSlot(FetchSlots& slots, std::optional<int64_t> key_id) : slots_(slots), key_id_(key_id) { slots_.enter(key_id_); }
  ~FetchSlot() { slots_.leave(key_id_); }
  FetchSlot(const FetchSlot&) = delete;
  FetchSlot& operator=(const FetchSlot&) = delete;

 private:
  FetchSlots& slots_;
  std::optional<int64_t> key_id_;
};

}  // namespace maskmaker::service
