// API keys, credits and per-key limits. KeyStore is the interface the server and `maskmaker keys` use; it is
// opened from a path (SQLite, WAL; one short transaction per change) or a postgresql:// URL (keys_pg.hpp: many
// replicas sharing one database). Keys are stored as SHA-256 hashes; the plain key is shown once, when created.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace maskmaker::service {

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

class KeyStore {
 public:
  virtual ~KeyStore() = default;

  // Returns the new plain key (shown once) and its record.
  virtual std::pair<std::string, KeyRecord> add(const std::string& name, std::optional<int64_t> credits,
                                                std::optional<int64_t> rate_per_minute,
                                                const std::string& endpoints = "*") = 0;
  virtual std::optional<KeyRecord> find_by_key(const std::string& plain_key) = 0;
  virtual std::optional<KeyRecord> find(const std::string& id_or_name) = 0;
  virtual std::vector<KeyRecord> list() = 0;
  virtual bool set_disabled(int64_t id, bool disabled) = 0;
  // Adds (or with a negative amount removes) credits; returns the new balance.
  virtual std::optional<int64_t> add_credits(int64_t id, int64_t amount) = 0;
  virtual bool set_unlimited(int64_t id) = 0;
  // Takes one credit if one is left (or the key is unlimited): true on success; `remaining` gets the balance.
  // Atomic in the database (one UPDATE ... WHERE credits > 0 RETURNING), so exact across processes and replicas.
  virtual bool consume(int64_t id, std::optional<int64_t>& remaining) = 0;
  // Gives back one credit that consume() took, for work that was paid for and then not done (an asynchronous job
  // that failed): credits + 1 (unless unlimited) and used - 1. False when the key is gone.
  virtual bool refund(int64_t id) = 0;
  virtual size_t active_count() = 0;

  // Whether the database answers; on failure `why` says what is wrong (for /readyz). Never throws.
  virtual bool reachable(std::string& why) = 0;
  // True when take_rate() keeps the token buckets in the database, shared by every replica; otherwise the
  // server keeps them in memory, per process.
  virtual bool shared_rate_limits() const { return false; }
  // One request against the key's bucket (`per_minute` a minute, `burst` at once): 0 = allowed, otherwise the
  // seconds to wait (for Retry-After). Only called when shared_rate_limits().
  virtual int64_t take_rate(int64_t id, double per_minute, double burst) { return 0; }
  // Where the keys live, for logs: the path, or the URL without its password.
  virtual std::string describe() const = 0;

  static std::string hash_key(const std::string& plain_key);
  // A new random key: "mk_" and 48 hex digits.
  static std::string new_key();
};

// postgresql:// or postgres:// URLs open the PostgreSQL store; anything else is a SQLite file.
bool is_postgres_url(const std::string& path_or_url);
std::unique_ptr<KeyStore> open_key_store(const std::string& path_or_url);

}  // namespace maskmaker::service
