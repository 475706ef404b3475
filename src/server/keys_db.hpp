// API keys, credits and per-key limits in SQLite (WAL; one short transaction per change).
// Keys are stored as SHA-256 hashes; the plain key is shown once, when it is created.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

struct sqlite3;

namespace maskmaker::server {

struct KeyRecord {
  int64_t id = 0;
  std::string name;
  std::string prefix;               // first characters of the key, for people to recognise it
  std::optional<int64_t> credits;   // nullopt = unlimited
  int64_t used = 0;
  bool disabled = false;
  std::optional<int64_t> rate_per_minute;  // nullopt = the server's default
  std::string endpoints = "*";      // "*" or comma-separated paths this key may call
  std::string created_at;
};

class KeysDb {
 public:
  explicit KeysDb(const std::string& path);  // creates or migrates the schema
  ~KeysDb();
  KeysDb(const KeysDb&) = delete;
  KeysDb& operator=(const KeysDb&) = delete;

  // Returns the new plain key (shown once) and its record.
  std::pair<std::string, KeyRecord> add(const std::string& name, std::optional<int64_t> credits,
                                        std::optional<int64_t> rate_per_minute, const std::string& endpoints = "*");
  std::optional<KeyRecord> find_by_key(const std::string& plain_key);
  std::optional<KeyRecord> find(const std::string& id_or_name);
  std::vector<KeyRecord> list();
  bool set_disabled(int64_t id, bool disabled);
  // Adds (or with a negative amount removes) credits; returns the new balance.
  std::optional<int64_t> add_credits(int64_t id, int64_t amount);
  bool set_unlimited(int64_t id);
  // Takes one credit if one is left (or the key is unlimited): true on success; `remaining` gets the balance.
  bool consume(int64_t id, std::optional<int64_t>& remaining);
  size_t active_count();

  static std::string hash_key(const std::string& plain_key);

 private:
  void exec(const char* sql);
  sqlite3* db_ = nullptr;
  std::mutex mutex_;
};

}  // namespace maskmaker::server
