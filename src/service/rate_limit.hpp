// Per-key token buckets: `per_minute` tokens a minute, up to `burst` at once.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <unordered_map>

namespace maskmaker::service {

class RateLimiter {
 public:
  // 0 = allowed; otherwise the seconds to wait before a token is available (for Retry-After).
  int64_t take(int64_t key_id, double per_minute, double burst) {
    if (per_minute <= 0) return 0;
    auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(mutex_);
    auto [it, fresh] = buckets_.try_emplace(key_id, Bucket{burst, now});
    Bucket& b = it->second;
    double rate = per_minute / 60.0;
    if (!fresh) {
      double elapsed = std::chrono::duration<double>(now - b.updated).count();
      b.tokens = std::min(burst, b.tokens + elapsed * rate);
      b.updated = now;
    }
    if (b.tokens >= 1.0) { b.tokens -= 1.0; return 0; }
    return std::max<int64_t>(1, int64_t(std::ceil((1.0 - b.tokens) / rate)));
  }

 private:
  struct Bucket { double tokens; std::chrono::steady_clock::time_point updated; };
  std::mutex mutex_;
  std::unordered_map<int64_t, Bucket> buckets_;
};

}  // namespace maskmaker::service
