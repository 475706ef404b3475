#include <atomic>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "runtime/inference_threads.hpp"

using maskmaker::rt::InferenceThreads;

TEST(InferenceThreads, ReturnsTheResultFromAnotherThread) {
  InferenceThreads threads(2);
  const auto caller = std::this_thread::get_id();
  auto ran_on = threads.run([] { return std::this_thread::get_id(); });
  EXPECT_NE(ran_on, caller);
  EXPECT_EQ(threads.run([] { return std::string("mask"); }), "mask");
}

TEST(InferenceThreads, RethrowsWhatTheWorkThrew) {
  InferenceThreads threads(1);
  EXPECT_THROW(threads.run([]() -> int { throw std::runtime_error("decoder failed"); }), std::runtime_error);
  EXPECT_EQ(threads.run([] { return 7; }), 7);  // the thread survived
}

// Many callers, few threads: every piece of work runs on one of the fixed threads (so the malloc arenas an
// inference touches are those threads', not the callers').
TEST(InferenceThreads, ManyCallersShareTheFixedThreads) {
  InferenceThreads threads(3);
  std::mutex mutex;
  std::set<std::thread::id> seen, callers;
  std::atomic<int> done{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 16; ++c) {
    clients.emplace_back([&] {
      { std::lock_guard lock(mutex); callers.insert(std::this_thread::get_id()); }
      for (int i = 0; i < 50; ++i) {
        auto id = threads.run([] { return std::this_thread::get_id(); });
        std::lock_guard lock(mutex);
        seen.insert(id);
        ++done;
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(done.load(), 800);
  EXPECT_LE(seen.size(), 3u);
  for (auto id : seen) EXPECT_EQ(callers.count(id), 0u);
}
