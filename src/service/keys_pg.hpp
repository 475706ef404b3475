// The PostgreSQL key store: many `maskmaker serve` replicas share one database (postgresql:// URL, libpq).
//
// - Credits: consume() is one statement, UPDATE ... WHERE credits > 0 RETURNING, so a credit is taken exactly
//   once per successful call whichever replica served it, and never below zero.
// - Rate limits: shared by every replica, one row per key in maskmaker_rate_limits holding the GCRA "theoretical
//   arrival time" (equivalent to a token bucket of `burst` tokens refilled at `per_minute`), updated by a single
//   INSERT ... ON CONFLICT DO UPDATE ... WHERE under the row lock, on the database's clock.
// - Schema: created and migrated at first use, under an advisory lock (replicas starting together are safe);
//   tables maskmaker_keys, maskmaker_rate_limits, maskmaker_schema_version.
// - Connections: a small pool (4 per process, pg_pool.hpp), opened on demand with connect_timeout=5, TCP keepalives,
//   tcp_user_timeout=15000 and a statement_timeout of 10 s (each overridable in the URL). The database being
//   down is not fatal: calls throw Error(NotReady) (HTTP 503) and reachable() reports it for /readyz until it
//   is back.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "service/keys_db.hpp"
#include "service/pg_pool.hpp"

namespace maskmaker::service {

class PgKeyStore : public KeyStore {
 public:
  explicit PgKeyStore(const std::string& url, int max_connections = 4);  // checks the URL; connects lazily
  ~PgKeyStore() override;
  PgKeyStore(const PgKeyStore&) = delete;
  PgKeyStore& operator=(const PgKeyStore&) = delete;

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
  bool shared_rate_limits() const override { return true; }
  int64_t take_rate(int64_t id, double per_minute, double burst) override;
  std::string describe() const override { return redacted_; }

  // The URL with any password replaced by ***.
  static std::string redact(const std::string& url);

 private:
  void with_conn(bool retry, const std::function<void(PGconn*)>& fn);

  PgPool pool_;
  std::string redacted_;
  std::mutex mutex_;  // the last check's answer
  std::atomic<bool> checking_{false};
  std::atomic<int64_t> check_started_ms_{0};
  bool last_check_ok_ = true;
  std::string last_check_why_;
};

}  // namespace maskmaker::service
