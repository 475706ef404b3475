#include "service/keys_pg.hpp"

#include <poll.h>

#include <algorithm>
#include <cerrno>
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

// Thrown inside with_conn when the connection itself failed (as opposed to an SQL error).
struct ConnectionLost {
  std::string message;
};

// libpq's messages end in a newline and may span lines ("...failed: ...\n\tIs the server running..."): one line.
std::string trim(std::string s) {
  std::string out;
  for (char ch : s) {
    if (ch == '\n' || ch == '\t' || ch == '\r') ch = ' ';
    if (ch == ' ' && (out.empty() || out.back() == ' ')) continue;
    out += ch;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

void ignore_notice(void*, const char*) {}  // "relation ... already exists, skipping" and the like

using Result = std::unique_ptr<PGresult, decltype(&PQclear)>;
using Param = std::optional<std::string>;

// The longest a statement may take, on this side: above the server's statement_timeout (10 s), so that a slow
// server cancels first; a server that stopped answering altogether (the TCP connection still up) is given up on.
constexpr int kQueryTimeoutMs = 15000;

// Waits for the statement's result without blocking past the deadline; nullptr with `timed_out` on a timeout.
PGresult* wait_result(PGconn* conn, bool& timed_out) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kQueryTimeoutMs);
  timed_out = false;
  while (PQisBusy(conn)) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      return nullptr;
    }
    pollfd p{PQsocket(conn), POLLIN, 0};
    int r = poll(&p, 1, int(left.count()));
    if (r < 0 && errno != EINTR) return nullptr;
    if (r > 0 && !PQconsumeInput(conn)) return nullptr;
  }
  PGresult* result = PQgetResult(conn);
  while (PGresult* extra = PQgetResult(conn)) PQclear(extra);  // one statement: nothing more is expected
  return result;
}

// One statement with text parameters (nullopt = NULL). SQL errors throw Error(Internal); a broken connection, or
// one that gave no answer within kQueryTimeoutMs, throws ConnectionLost; a statement cancelled by the server's
// statement_timeout, refused for lack of resources (disk full, out of memory, too many connections), by a read-only
// (standby) server, by a lock or serialisation conflict, or failing I/O throws Error(StorageUnavailable) (503 +
// Retry-After, nothing charged).
Result run(PGconn* conn, const char* sql, const std::vector<Param>& params = {}) {
  std::vector<const char*> values;
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  bool timed_out = false;
  Result r(nullptr, &PQclear);
  if (PQsendQueryParams(conn, sql, int(values.size()), nullptr, values.data(), nullptr, nullptr, 0))
    r.reset(wait_result(conn, timed_out));
  if (timed_out) throw ConnectionLost{"no answer within " + std::to_string(kQueryTimeoutMs / 1000) + " s"};
  ExecStatusType st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
  std::string message = trim(r ? PQresultErrorMessage(r.get()) : PQerrorMessage(conn));
  if (message.empty()) message = trim(PQerrorMessage(conn));
  if (!r || PQstatus(conn) == CONNECTION_BAD) throw ConnectionLost{message};
  // The server ending our session (admin shutdown, crash recovery) is a connection problem too.
  const std::string state = PQresultErrorField(r.get(), PG_DIAG_SQLSTATE) ? PQresultErrorField(r.get(), PG_DIAG_SQLSTATE) : "";
  if (state.rfind("57P", 0) == 0 || state.rfind("08", 0) == 0) throw ConnectionLost{message};
  if (state == "57014" || state.rfind("53", 0) == 0 || state.rfind("58", 0) == 0 || state == "25006" ||
      state == "40001" || state == "40P01" || state == "55P03" || state == "55006" || state.rfind("XX", 0) == 0) {
    spdlog::error("keys database: {} (SQLSTATE {})", message, state);
    throw Error(ErrorCode::StorageUnavailable, "the keys database is busy: retry shortly");
  }
  throw Error(ErrorCode::Internal, "keys database: " + message);
}

std::string str(const PGresult* r, int row, int col) { return PQgetvalue(r, row, col); }
std::optional<int64_t> opt_int(const PGresult* r, int row, int col) {
  if (PQgetisnull(r, row, col)) return std::nullopt;
  return std::stoll(PQgetvalue(r, row, col));
}
Param opt_param(const std::optional<int64_t>& v) { return v ? Param(std::to_string(*v)) : std::nullopt; }

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
constexpr int kSchemaVersion = int(sizeof kMigrations / sizeof kMigrations[0]);
constexpr const char* kMigrationLock = "7157252013";  // pg_advisory_xact_lock key: "maskmaker schema"

}  // namespace

std::string PgKeyStore::redact(const std::string& url) {
  std::string out = url;
  size_t scheme = out.find("://");
  if (scheme != std::string::npos) {
    size_t start = scheme + 3;
    size_t end = out.find_first_of("/?", start);
    size_t at = out.rfind('@', end == std::string::npos ? std::string::npos : end);
    if (at != std::string::npos && at >= start) {
      size_t colon = out.find(':', start);
      if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  for (size_t p = out.find("password="); p != std::string::npos; p = out.find("password=", p + 1)) {
    size_t v = p + 9, e = out.find('&', v);
    out.replace(v, (e == std::string::npos ? out.size() : e) - v, "***");
  }
  return out;
}

PgKeyStore::PgKeyStore(const std::string& url, int max_connections)
    : url_(url), redacted_(redact(url)), max_connections_(std::max(1, max_connections)) {
  char* err = nullptr;
  PQconninfoOption* options = PQconninfoParse(url.c_str(), &err);
  if (!options) {
    std::string msg = err ? trim(err) : "cannot parse it";
    if (err) PQfreemem(err);
    throw Error(ErrorCode::InvalidArgument, "bad PostgreSQL URL " + redacted_ + ": " + msg);
  }
  PQconninfoFree(options);
}

PgKeyStore::~PgKeyStore() {
  std::lock_guard lock(mutex_);
  for (PGconn* c : idle_) PQfinish(c);
  idle_.clear();
}

PGconn* PgKeyStore::acquire(bool& pooled) {
  {
    std::unique_lock lock(mutex_);
    if (!available_.wait_for(lock, std::chrono::seconds(15),
                             [&] { return !idle_.empty() || open_ < max_connections_; }))
      throw Error(ErrorCode::StorageUnavailable, "keys database: every connection is busy; retry shortly");
    if (!idle_.empty()) {
      PGconn* c = idle_.back();
      idle_.pop_back();
      pooled = true;
      return c;
    }
    ++open_;
    pooled = false;
  }
  // Defaults first: the URL's own settings, expanded from "dbname", come later and win.
  const char* keys[] = {"connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval",
                        "keepalives_count", "tcp_user_timeout", "application_name", "options", "dbname", nullptr};
  const char* values[] = {"5", "1", "10", "5", "3", "15000", "maskmaker", "-c statement_timeout=10000", url_.c_str(),
                          nullptr};
  PGconn* c = PQconnectdbParams(keys, values, 1);
  if (!c || PQstatus(c) != CONNECTION_OK) {
    std::string msg = c ? trim(PQerrorMessage(c)) : "out of memory";
    PQfinish(c);
    {
      std::lock_guard lock(mutex_);
      --open_;
    }
    available_.notify_one();
    throw ConnectionLost{msg};
  }
  PQsetNoticeProcessor(c, ignore_notice, nullptr);
  return c;
}

void PgKeyStore::release(PGconn* conn, bool healthy) {
  std::vector<PGconn*> drop;
  {
    std::lock_guard lock(mutex_);
    if (healthy && PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) == PQTRANS_IDLE) {
      idle_.push_back(conn);
    } else {
      drop.push_back(conn);
      // One connection lost usually means all were (the server restarted): do not hand out the others.
      if (!healthy) drop.insert(drop.end(), idle_.begin(), idle_.end()), idle_.clear();
      open_ -= int(drop.size());
    }
  }
  for (PGconn* c : drop) PQfinish(c);
  available_.notify_all();
}

void PgKeyStore::migrate(PGconn* conn) {
  run(conn, "BEGIN");
  try {
    run(conn, "SELECT pg_advisory_xact_lock($1::bigint)", {std::string(kMigrationLock)});
    run(conn, "CREATE TABLE IF NOT EXISTS maskmaker_schema_version (version INTEGER NOT NULL)");
    Result r = run(conn, "SELECT COALESCE(MAX(version), 0) FROM maskmaker_schema_version");
    int version = std::stoi(str(r.get(), 0, 0));
    for (int v = version; v < kSchemaVersion; ++v) run(conn, kMigrations[v]);
    if (version < kSchemaVersion) {
      run(conn, "DELETE FROM maskmaker_schema_version");
      run(conn, "INSERT INTO maskmaker_schema_version (version) VALUES ($1::int)", {std::to_string(kSchemaVersion)});
      spdlog::info("keys database {}: schema migrated from version {} to {}", redacted_, version, kSchemaVersion);
    } else if (version > kSchemaVersion) {
      spdlog::warn("keys database {}: schema version {} is newer than this binary's {}", redacted_, version,
                   kSchemaVersion);
    }
    run(conn, "COMMIT");
  } catch (const Error&) {
    PQclear(PQexec(conn, "ROLLBACK"));
    throw;
  }
}

void PgKeyStore::with_conn(bool retry, const std::function<void(PGconn*)>& fn) {
  for (int attempt = 0;; ++attempt) {
    PGconn* conn = nullptr;
    bool pooled = false;
    try {
      conn = acquire(pooled);
      if (!migrated_.load()) {
        migrate(conn);
        migrated_.store(true);
      }
      fn(conn);
      release(conn, true);
      return;
    } catch (const ConnectionLost& e) {
      if (conn) release(conn, false);
      // A pooled connection may have gone stale (the server restarted): once more on a fresh one.
      if (retry && pooled && attempt == 0) continue;
      {
        std::lock_guard lock(mutex_);
        last_error_ = e.message;
      }
      spdlog::warn("keys database {} is unreachable: {}", redacted_, e.message);
      // The details (addresses) go to the log and /readyz, not to API clients.
      throw Error(ErrorCode::StorageUnavailable, "the keys database is unreachable: retry shortly");
    } catch (...) {
      if (conn) release(conn, true);
      throw;
    }
  }
}

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
    std::lock_guard lock(mutex_);
    message = e.code() == ErrorCode::StorageUnavailable && !last_error_.empty()
                  ? "keys database " + redacted_ + " is unreachable: " + last_error_
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
