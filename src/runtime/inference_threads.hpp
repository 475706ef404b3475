// A fixed set of threads on which requests' inferences run, one per admission slot. The thread that takes a
// request (an HTTP worker, a job worker) hands the work over and waits: what an inference allocates and frees
// then stays in these threads' malloc arenas, instead of growing the arenas of whichever of the many front-end
// threads happened to take it (glibc keeps up to 8 arenas per core, each holding what its thread freed).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace maskmaker::rt {

class InferenceThreads {
 public:
  explicit InferenceThreads(int count);
  ~InferenceThreads();  // finishes the queued work, then joins
  InferenceThreads(const InferenceThreads&) = delete;
  InferenceThreads& operator=(const InferenceThreads&) = delete;

  // Runs fn on one of the threads and returns its result (or rethrows what it threw), blocking the caller.
  template <class Fn>
  std::invoke_result_t<Fn> run(Fn&& fn) {
    std::packaged_task<std::invoke_result_t<Fn>()> task(std::forward<Fn>(fn));
    auto done = task.get_future();
    post([&task] { task(); });
    return done.get();
  }

  int size() const { return static_cast<int>(threads_.size()); }

 private:
  void post(std::function<void()> work);
  void loop();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace maskmaker::rt
