// Admission control: at most `max_active` inferences at once and at most `max_queue` waiting for a slot.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace maskmaker::service {

class Admission {
 public:
  enum class Result { Admitted, QueueFull, TimedOut, ShuttingDown };

  Admission(int max_active, int max_queue) : max_active_(max_active), max_queue_(max_queue) {}

  Result enter(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mutex_);
    if (active_ < max_active_ && waiting_ == 0) { ++active_; return Result::Admitted; }
    if (waiting_ >= max_queue_) return Result::QueueFull;
    ++waiting_;
    bool ok = cv_.wait_until(lock, deadline, [&] { return active_ < max_active_; });
    --waiting_;
    if (!ok) {
      background_cv_.notify_all();  // one waiter fewer: background work may now go
      return Result::TimedOut;
    }
    ++active_;
    return Result::Admitted;
  }

  // For background work (asynchronous jobs, src/server/jobs.hpp): a slot only when one is free and no request
  // waits for one, so that requests keep priority. No queue limit; false when `deadline` passes first.
  bool enter_background(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mutex_);
    if (!background_cv_.wait_until(lock, deadline, [&] { return active_ < max_active_ && waiting_ == 0; }))
      return false;
    ++active_;
    return true;
  }

  void leave() {
    { std::lock_guard lock(mutex_); --active_; }
    cv_.notify_one();
    background_cv_.notify_all();
  }

  int active() const { std::lock_guard lock(mutex_); return active_; }
  int waiting() const { std::lock_guard lock(mutex_); return waiting_; }
  int max_active() const { return max_active_; }

 private:
  const int max_active_, max_queue_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::condition_variable background_cv_;
  int active_ = 0, waiting_ = 0;
};

// RAII slot.
class AdmissionSlot {
 public:
  explicit AdmissionSlot(Admission& a) : a_(a) {}
  ~AdmissionSlot() { a_.leave(); }
  AdmissionSlot(const AdmissionSlot&) = delete;
  AdmissionSlot& operator=(const AdmissionSlot&) = delete;

 private:
  Admission& a_;
};

}  // namespace maskmaker::service
