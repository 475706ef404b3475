#include "runtime/inference_threads.hpp"

#include <algorithm>

namespace maskmaker::rt {

InferenceThreads::InferenceThreads(int count) {
  const int n = std::max(1, count);
  threads_.reserve(n);
  for (int i = 0; i < n; ++i) threads_.emplace_back([this] { loop(); });
}

InferenceThreads::~InferenceThreads() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& t : threads_) t.join();
}

void InferenceThreads::post(std::function<void()> work) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(work));
  }
  wake_.notify_one();
}

void InferenceThreads::loop() {
  for (;;) {
    std::function<void()> work;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      work = std::move(queue_.front());
      queue_.pop_front();
    }
    work();
  }
}

}  // namespace maskmaker::rt
