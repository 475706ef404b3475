// A small thread-safe LRU map with hit/miss counters, bounded by a total cost: each entry costs 1 unless put()
// says otherwise (e.g. its size in bytes), and the least recently used entries go until the total fits.
#pragma once

#include <atomic>
#include <list>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace maskmaker {

template <typename Key, typename Value, typename Hash = std::hash<Key>>
class LruCache {
 public:
  explicit LruCache(size_t capacity) : capacity_(capacity) {}

  std::optional<Value> get(const Key& key) {
    std::lock_guard lock(mutex_);
    auto it = index_.find(key);
    if (it == index_.end()) { ++misses_; return std::nullopt; }
    order_.splice(order_.begin(), order_, it->second);
    ++hits_;
    return it->second->value;
  }

  void put(const Key& key, Value value, size_t cost = 1) {
    if (capacity_ == 0 || cost > capacity_) return;
    std::lock_guard lock(mutex_);
    auto it = index_.find(key);
    if (it != index_.end()) {
      total_ -= it->second->cost;
      it->second->value = std::move(value);
      it->second->cost = cost;
      total_ += cost;
      order_.splice(order_.begin(), order_, it->second);
    } else {
      order_.push_front(Entry{key, std::move(value), cost});
      index_[key] = order_.begin();
      total_ += cost;
    }
    while (total_ > capacity_ && !order_.empty()) {
      total_ -= order_.back().cost;
      index_.erase(order_.back().key);
      order_.pop_back();
    }
  }

  size_t size() const { std::lock_guard lock(mutex_); return order_.size(); }
  size_t total_cost() const { std::lock_guard lock(mutex_); return total_; }
  uint64_t hits() const { return hits_; }
  uint64_t misses() const { return misses_; }

 private:
  struct Entry {
    Key key;
    Value value;
    size_t cost;
  };
  size_t capacity_;
  size_t total_ = 0;
  mutable std::mutex mutex_;
  std::list<Entry> order_;
  std::unordered_map<Key, typename std::list<Entry>::iterator, Hash> index_;
  std::atomic<uint64_t> hits_{0}, misses_{0};
};

}  // namespace maskmaker
