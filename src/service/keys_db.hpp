// The SQLite key store (the interface: maskmaker/keys.hpp).
#pragma once

#include <mutex>
#include <string>

#include "maskmaker/keys.hpp"

struct sqlite3;

namespace maskmaker::service {

// The SQLite store: one file, shared by the processes on one machine.
class KeysDb : public KeyStore {
 public:
  explicit KeysDb(const std::string& path);  // creates or migrates the schema
  ~KeysDb() override;
  KeysDb(const KeysDb&) = delete;
  KeysDb& operator=(const KeysDb&) = delete;

  std::pair<std::string, KeyRecord> add(const std::string& name, std::optional<int64_t> credits,
                                        std::optional<int64_t> rate_per_minute,
                                        const std::string& endpoints = "*") override;
  std::optional<KeyRecord> find_by_key(const std::string& plain_key) override;
  std::optional<KeyRecord> find(const std::string& id_or_name) override;
  std::vector<KeyRecord> list() override;
  bool set_disabled(int64_t id, bool disabled) override;
  std::optional<int64_t> add_credits(int64_t id, int64_t amount) override;
  bool set_unlimited(int64_t id) override;
  bool consume(int64_t id, std::optional<int64_t>& remaining) override;
  bool refund(int64_t id) override;
  size_t active_count() override;
  bool reachable(std::string& why) override;
  std::string describe() const override { return path_; }

 private:
  void exec(const char* sql);
  std::string path_;
  sqlite3* db_ = nullptr;
  std::mutex mutex_;
};

}  // namespace maskmaker::service
