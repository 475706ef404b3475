// rt::parallel_for: every index once, errors surface, concurrent callers do not block each other.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "runtime/ort_runtime.hpp"
#include "runtime/work_pool.hpp"

using namespace maskmaker;

TEST(WorkPool, RunsEveryIndexExactlyOnce) {
  for (size_t n : {0u, 1u, 2u, 5u, 97u}) {
    std::vector<std::atomic<int>> seen(n);
    rt::parallel_for(n, [&](size_t i) { seen[i]++; });
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(seen[i].load(), 1) << "n=" << n << " i=" << i;
  }
}

TEST(WorkPool, WidthFollowsTheRuntimeThreads) {
  EXPECT_EQ(rt::parallel_width(), rt::thread_count());
  EXPECT_GE(rt::parallel_width(), 1);
}

TEST(WorkPool, RethrowsTheFirstErrorAfterAllIndicesRan) {
  std::atomic<int> ran{0};
  EXPECT_THROW(rt::parallel_for(8, [&](size_t i) {
                 ran++;
                 if (i == 3) throw std::runtime_error("index 3 failed");
               }),
               std::runtime_error);
  EXPECT_EQ(ran.load(), 8);
}

TEST(WorkPool, UsesMoreThanOneThreadWhenItHasThem) {
  if (rt::parallel_width() < 2) GTEST_SKIP() << "one thread configured";
  // Two indices that each wait for the other: finishes only if they run at the same time.
  std::atomic<int> arrived{0};
  rt::parallel_for(2, [&](size_t) {
    arrived++;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (arrived.load() < 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  });
  EXPECT_EQ(arrived.load(), 2);
  // Distinct threads were used: record their ids over many short tasks.
  std::mutex m;
  std::set<std::thread::id> ids;
  std::atomic<int> started{0};
  rt::parallel_for(2, [&](size_t) {
    started++;
    while (started.load() < 2) std::this_thread::yield();
    std::lock_guard lock(m);
    ids.insert(std::this_thread::get_id());
  });
  EXPECT_EQ(ids.size(), 2u);
}

TEST(WorkPool, ConcurrentCallersAllFinish) {
  std::atomic<int> total{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 6; ++c) {
    callers.emplace_back([&] {
      for (int round = 0; round < 50; ++round) rt::parallel_for(7, [&](size_t) { total++; });
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(total.load(), 6 * 50 * 7);
}
