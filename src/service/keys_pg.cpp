#include "service/keys_pg.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <memory>
#include <optional>

#include <libpq-fe.h>
#include <spdlog/spdlog.h>

#include "maskmaker/maskmaker.hpp"

namespace maskmaker::service {
namespace {

using Result = PgResult;
using Param = PgParam;

Result run(PGconn* conn, const char* sql, const std::vector<Param>& params = {}) {
  return pg_run(conn, "keys database", sql, params);
}
std::string str(const PGresult* r, int row, int col) { return pg_str(r, row, col); }
std::optional<int64_t> opt_int(const PGresult* r, int row, int col) { return pg_opt_int(r, row, col); }
Param opt_param(const std::optional<int64_t>& v) { return v ? Param(std::to_string(*v)) : Param(std::nullopt); }

constexpr const char* kColumns =
    "id, name, prefix, credits, used, disabled, rate_per_minute, endpoints, "
    "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')";

KeyRecord read_record(const PGresult* r, int row) {
  KeyRecord k;
  k.id = std::stoll(str(r, row, 0));
  k.name = str(r, row, 1);
  k.prefix = str(r, row, 2);
  k.credits = opt_int(r, row, 3);
  k.used = std::stoll(str(r, row, 4));
  k.disabled = str(r, row, 5) == "t";
  k.rate_per_minute = opt_int(r, row, 6);
  k.endpoints = str(r, row, 7);
  k.created_at = str(r, row, 8);
  return k;
}

std::string select_keys(const char* where) { return std::string("SELECT ") + kColumns + " FROM maskmaker_keys " + where; }

// Schema versions, applied in order under an advisory lock; each entry moves the schema from version i to i+1.
const char* const kMigrations[] = {
    R"(CREATE TABLE IF NOT EXISTS maskmaker_keys (
         id BIGSERIAL PRIMARY KEY,
         name TEXT NOT NULL,
         key_hash TEXT NOT NULL UNIQUE,
         prefix TEXT NOT NULL,
         credits BIGINT,
         used BIGINT NOT NULL DEFAULT 0,
         disabled BOOLEAN NOT NULL DEFAULT false,
         rate_per_minute BIGINT,
         endpoints TEXT NOT NULL DEFAULT '*',
         created_at TIMESTAMPTZ NOT NULL DEFAULT now()))",
    R"(CREATE TABLE IF NOT EXISTS maskmaker_rate_limits (
         key_id BIGINT PRIMARY KEY REFERENCES maskmaker_keys (id) ON DELETE CASCADE,
         tat DOUBLE PRECISION NOT NULL))",
};

}  // namespace

PgKeyStore::PgKeyStore(const std::string& url, int max_connections)
    : pool_(url, max_connections, "keys database", std::vector<const char*>(std::begin(kMigrations), std::end(kMigrations)),
            "maskmaker_schema_version"),
      redacted_(pool_.redacted()) {}

PgKeyStore::~PgKeyStore() = default;

std::string PgKeyStore::redact(const std::string& url) { return pg_redact(url); }

void PgKeyStore::with_conn(bool retry, const std::function<void(PGconn*)>& fn) { pool_.with_conn(retry, fn); }

std::pair<std::string, KeyRecord> PgKeyStore::add(const std::string& name, std::optional<int64_t> credits,
                                                  std::optional<int64_t> rate, const std::string& endpoints) {
  std::string key = new_key();
  KeyRecord rec;
  with_conn(false, [&](PGconn* c) {
    Result r = run(c, (std::string("INSERT INTO maskmaker_keys (name, key_hash, prefix, credits, rate_per_minute, "
                                   "endpoints) VALUES ($1, $2, $3, $4::bigint, $5::bigint, $6) RETURNING ") + kColumns).c_str(),
                   {name, hash_key(key), key.substr(0, 7), opt_param(credits), opt_param(rate), endpoints});
    rec = read_record(r.get(), 0);
  });
  return {key, rec};
}

std::optional<KeyRecord> PgKeyStore::find_by_key(const std::string& plain_key) {
  std::optional<KeyRecord> out;
  with_conn(true, [&](PGconn* c) {
    Result r = run(c, select_keys("WHERE key_hash = $1").c_str(), {hash_key(plain_key)});
    if (PQntuples(r.get()) > 0) out = read_record(r.get(), 0);
  });
  return out;
}

std::optional<KeyRecord> PgKeyStore::find(const std::string& id_or_name) {
  std::optional<KeyRecord> out;
  with_conn(true, [&](PGconn* c) {
    Result r = run(c, select_keys("WHERE id::text = $1 OR name = $1 ORDER BY id LIMIT 1").c_str(), {id_or_name});
    if (PQntuples(r.get()) > 0) out = read_record(r.get(), 0);
  });
  return out;
}

std::vector<KeyRecord> PgKeyStore::list() {
  std::vector<KeyRecord> out;
  with_conn(true, [&](PGconn* c) {
    out.clear();
    Result r = run(c, select_keys("ORDER BY id").c_str());
    for (int i = 0; i < PQntuples(r.get()); ++i) out.push_back(read_record(r.get(), i));
  });
  return out;
}

bool PgKeyStore::set_disabled(int64_t id, bool disabled) {
  bool changed = false;
  with_conn(true, [&](PGconn* c) {
    Result r = run(c, "UPDATE maskmaker_keys SET disabled = $1::boolean WHERE id = $2::bigint",
                   {std::string(disabled ? "true" : "false"), std::to_string(id)});
    changed = std::string(PQcmdTuples(r.get())) == "1";
  });
  return changed;
}

std::optional<int64_t> PgKeyStore::add_credits(int64_t id, int64_t amount) {
  std::optional<int64_t> balance;
  with_conn(false, [&](PGconn* c) {
    Result r = run(c, "UPDATE maskmaker_keys SET credits = GREATEST(0, COALESCE(credits, 0) + $1::bigint) "
                      "WHERE id = $2::bigint RETURNING credits",
                   {std::to_string(amount), std::to_string(id)});
    if (PQntuples(r.get()) > 0) balance = opt_int(r.get(), 0, 0);
  });
  return balance;
}

bool PgKeyStore::set_unlimited(int64_t id) {
  bool changed = false;
  with_conn(true, [&](PGconn* c) {
    Result r = run(c, "UPDATE maskmaker_keys SET credits = NULL WHERE id = $1::bigint", {std::to_string(id)});
    changed = std::string(PQcmdTuples(r.get())) == "1";
  });
  return changed;
}

bool PgKeyStore::consume(int64_t id, std::optional<int64_t>& remaining) {
  bool ok = false;
  // Not repeated on a lost connection: the UPDATE may have been committed before the answer was lost.
  with_conn(false, [&](PGconn* c) {
    Result r = run(c, "UPDATE maskmaker_keys SET credits = credits - 1, used = used + 1 "
                      "WHERE id = $1::bigint AND NOT disabled AND (credits IS NULL OR credits > 0) RETURNING credits",
                   {std::to_string(id)});
    if (PQntuples(r.get()) == 1) {
      ok = true;
      remaining = opt_int(r.get(), 0, 0);
    }
  });
  return ok;
}

bool PgKeyStore::refund(int64_t id) {
  bool ok = false;
  // Not repeated on a lost connection either: a refund given twice would be a credit made out of nothing.
  with_conn(false, [&](PGconn* c) {
    Result r = run(c, "UPDATE maskmaker_keys SET credits = credits + 1, used = GREATEST(0, used - 1) "
                      "WHERE id = $1::bigint RETURNING id",
                   {std::to_string(id)});
    ok = PQntuples(r.get()) == 1;
  });
  return ok;
}

size_t PgKeyStore::active_count() {
  size_t n = 0;
  with_conn(true, [&](PGconn* c) {
    Result r = run(c, "SELECT COUNT(*) FROM maskmaker_keys WHERE NOT disabled");
    n = size_t(std::stoll(str(r.get(), 0, 0)));
  });
  return n;
}

bool PgKeyStore::reachable(std::string& why) {
  // One check at a time: probes arriving while a check waits on an unresponsive server get its last answer
  // instead of each holding a worker thread.
  const auto now_ms = [] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  };
  if (checking_.exchange(true)) {
    int64_t waited = now_ms() - check_started_ms_.load();
    std::lock_guard lock(mutex_);
    if (waited > 3000) {  // the check in progress is itself the answer: the database is not answering
      why = "keys database " + redacted_ + " has not answered for " + std::to_string(waited / 1000) + " s";
      return false;
    }
    why = last_check_why_;
    return last_check_ok_;
  }
  check_started_ms_.store(now_ms());
  bool ok = false;
  std::string message;
  try {
    with_conn(true, [&](PGconn* c) { run(c, "SELECT 1"); });
    ok = true;
  } catch (const Error& e) {
    const std::string last = pool_.last_error();
    message = e.code() == ErrorCode::StorageUnavailable && !last.empty()
                  ? "keys database " + redacted_ + " is unreachable: " + last
                  : std::string(e.what());
  } catch (const std::exception& e) {
    message = e.what();
  }
  {
    std::lock_guard lock(mutex_);
    last_check_ok_ = ok;
    last_check_why_ = message;
  }
  checking_.store(false);
  why = message;
  return ok;
}

int64_t PgKeyStore::take_rate(int64_t id, double per_minute, double burst) {
  if (per_minute <= 0) return 0;
  // GCRA: `tat` is when the bucket would be full again. A request conforms when tat - now <= tau, and then
  // moves tat on by one interval; `burst` requests fit at once, then one per interval.
  const double interval = 60.0 / per_minute;
  const double tau = (std::max(1.0, burst) - 1.0) * interval;
  int64_t wait = 0;
  with_conn(true, [&](PGconn* c) {
    char t[32], l[32];
    std::snprintf(t, sizeof t, "%.9g", interval);
    std::snprintf(l, sizeof l, "%.9g", tau);
    // The outer SELECT sees the row as it was before the statement: when the update was refused, the wait.
    Result r = run(c, R"(
      WITH now AS (SELECT extract(epoch FROM statement_timestamp())::float8 AS t),
      up AS (
        INSERT INTO maskmaker_rate_limits AS b (key_id, tat) SELECT $1::bigint, now.t + $2::float8 FROM now
        ON CONFLICT (key_id) DO UPDATE
          SET tat = GREATEST(b.tat, extract(epoch FROM statement_timestamp())::float8) + $2::float8
          WHERE GREATEST(b.tat, extract(epoch FROM statement_timestamp())::float8)
                - extract(epoch FROM statement_timestamp())::float8 <= $3::float8
        RETURNING 1)
      SELECT (SELECT count(*) FROM up),
             COALESCE((SELECT tat FROM maskmaker_rate_limits WHERE key_id = $1::bigint), 0) - (SELECT t FROM now) - $3::float8)",
                   {std::to_string(id), std::string(t), std::string(l)});
    if (std::stoll(str(r.get(), 0, 0)) == 0)
      wait = std::max<int64_t>(1, int64_t(std::ceil(std::stod(str(r.get(), 0, 1)))));
  });
  return wait;
}

}  // namespace maskmaker::service
