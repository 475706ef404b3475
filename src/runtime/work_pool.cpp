#include "runtime/work_pool.hpp"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/ort_runtime.hpp"

namespace maskmaker::rt {
namespace {

struct Job {
  const std::function<void(size_t)>* body = nullptr;
  size_t n = 0;
  std::atomic<size_t> next{0};
  std::atomic<size_t> done{0};
  std::mutex mutex;
  std::condition_variable finished;
  std::exception_ptr error;

  // Claims indices until none is left; true when this call finished the job's last index.
  bool work() {
    bool last = false;
    for (size_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
      try {
        (*body)(i);
      } catch (...) {
        std::lock_guard lock(mutex);
        if (!error) error = std::current_exception();
      }
      if (done.fetch_add(1) + 1 == n) last = true;
    }
    return last;
  }
};

class WorkPool {
 public:
  explicit WorkPool(int width) : width_(width < 1 ? 1 : width) {
    for (int i = 1; i < width_; ++i) workers_.emplace_back([this] { loop(); });
  }
  ~WorkPool() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }

  void run(size_t n, const std::function<void(size_t)>& body) {
    if (n == 0) return;
    if (n == 1 || workers_.empty()) {
      for (size_t i = 0; i < n; ++i) body(i);
      return;
    }
    auto job = std::make_shared<Job>();
    job->body = &body;
    job->n = n;
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(job);
    }
    wake_.notify_all();
    if (job->work()) finish(*job);
    {
      std::unique_lock lock(job->mutex);
      job->finished.wait(lock, [&] { return job->done.load() == job->n; });
    }
    {
      std::lock_guard lock(mutex_);
      for (auto it = queue_.begin(); it != queue_.end(); ++it) {
        if (*it == job) { queue_.erase(it); break; }
      }
    }
    if (job->error) std::rethrow_exception(job->error);
  }

  int width() const { return width_; }

 private:
  static void finish(Job& job) {
    std::lock_guard lock(job.mutex);
    job.finished.notify_all();
  }

  void loop() {
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] {
          if (stopping_) return true;
          for (auto& j : queue_) if (j->next.load() < j->n) return true;
          return false;
        });
        if (stopping_) return;
        for (auto& j : queue_) {
          if (j->next.load() < j->n) { job = j; break; }
        }
      }
      if (job && job->work()) finish(*job);
    }
  }

  const int width_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stopping_ = false;
};

WorkPool& pool() {
  // Never destroyed: request threads may still be winding down while the process exits.
  static WorkPool* instance = new WorkPool(thread_count());
  return *instance;
}

}  // namespace

void parallel_for(size_t n, const std::function<void(size_t)>& body) { pool().run(n, body); }
int parallel_width() { return pool().width(); }

}  // namespace maskmaker::rt
