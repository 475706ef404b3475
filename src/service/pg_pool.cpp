#include "service/pg_pool.hpp"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>

#include <libpq-fe.h>
#include <spdlog/spdlog.h>

#include "maskmaker/maskmaker.hpp"

namespace maskmaker::service {
namespace {

void ignore_notice(void*, const char*) {}  // "relation ... already exists, skipping" and the like

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

constexpr const char* kMigrationLock = "7157252013";  // pg_advisory_xact_lock key: "maskmaker schema"

}  // namespace

std::string pg_trim(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '\n' || ch == '\t' || ch == '\r') ch = ' ';
    if (ch == ' ' && (out.empty() || out.back() == ' ')) continue;
    out += ch;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// SQL errors throw Error(Internal); a broken connection, or one that gave no answer within kQueryTimeoutMs, throws
// PgConnectionLost; a statement cancelled by the server's statement_timeout, refused for lack of resources (disk
// full, out of memory, too many connections), by a read-only (standby) server, by a lock or serialisation conflict,
// or failing I/O throws Error(StorageUnavailable) (503 + Retry-After, nothing charged).
PgResult pg_run(PGconn* conn, const char* what, const char* sql, const std::vector<PgParam>& params) {
  std::vector<const char*> values;
  std::vector<int> lengths, formats;
  for (const auto& p : params) {
    values.push_back(p.value ? p.value->data() : nullptr);
    lengths.push_back(p.value ? int(p.value->size()) : 0);
    formats.push_back(p.binary ? 1 : 0);
  }
  bool timed_out = false;
  PgResult r(nullptr, &PQclear);
  if (PQsendQueryParams(conn, sql, int(values.size()), nullptr, values.data(), lengths.data(), formats.data(), 0))
    r.reset(wait_result(conn, timed_out));
  if (timed_out) throw PgConnectionLost{"no answer within " + std::to_string(kQueryTimeoutMs / 1000) + " s"};
  ExecStatusType st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
  std::string message = pg_trim(r ? PQresultErrorMessage(r.get()) : PQerrorMessage(conn));
  if (message.empty()) message = pg_trim(PQerrorMessage(conn));
  if (!r || PQstatus(conn) == CONNECTION_BAD) throw PgConnectionLost{message};
  // The server ending our session (admin shutdown, crash recovery) is a connection problem too.
  const char* field = PQresultErrorField(r.get(), PG_DIAG_SQLSTATE);
  const std::string state = field ? field : "";
  if (state.rfind("57P", 0) == 0 || state.rfind("08", 0) == 0) throw PgConnectionLost{message};
  if (state == "57014" || state.rfind("53", 0) == 0 || state.rfind("58", 0) == 0 || state == "25006" ||
      state == "40001" || state == "40P01" || state == "55P03" || state == "55006" || state.rfind("XX", 0) == 0) {
    spdlog::error("{}: {} (SQLSTATE {})", what, message, state);
    throw Error(ErrorCode::StorageUnavailable, std::string("the ") + what + " is busy: retry shortly");
  }
  throw Error(ErrorCode::Internal, std::string(what) + ": " + message);
}

std::string pg_str(const PGresult* r, int row, int col) { return PQgetvalue(r, row, col); }

std::optional<int64_t> pg_opt_int(const PGresult* r, int row, int col) {
  if (PQgetisnull(r, row, col)) return std::nullopt;
  return std::stoll(PQgetvalue(r, row, col));
}

double pg_real(const PGresult* r, int row, int col) {
  if (PQgetisnull(r, row, col)) return 0;
  return std::strtod(PQgetvalue(r, row, col), nullptr);
}

std::vector<uint8_t> pg_bytes(const PGresult* r, int row, int col) {
  if (PQgetisnull(r, row, col)) return {};
  size_t n = 0;
  unsigned char* raw = PQunescapeBytea(reinterpret_cast<const unsigned char*>(PQgetvalue(r, row, col)), &n);
  if (!raw) throw Error(ErrorCode::Internal, "out of memory reading a bytea value");
  std::vector<uint8_t> out(raw, raw + n);
  PQfreemem(raw);
  return out;
}

int pg_rows(const PGresult* r) { return PQntuples(r); }

int64_t pg_changed(const PGresult* r) {
  const char* n = PQcmdTuples(const_cast<PGresult*>(r));
  return n && *n ? std::strtoll(n, nullptr, 10) : 0;
}

std::string pg_redact(const std::string& url) {
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

PgPool::PgPool(std::string url, int max_connections, std::string what, std::vector<const char*> migrations,
               std::string version_table)
    : url_(std::move(url)), redacted_(pg_redact(url_)), what_(std::move(what)),
      max_connections_(std::max(1, max_connections)), migrations_(std::move(migrations)),
      version_table_(std::move(version_table)) {
  char* err = nullptr;
  PQconninfoOption* options = PQconninfoParse(url_.c_str(), &err);
  if (!options) {
    std::string msg = err ? pg_trim(err) : "cannot parse it";
    if (err) PQfreemem(err);
    throw Error(ErrorCode::InvalidArgument, "bad PostgreSQL URL " + redacted_ + ": " + msg);
  }
  PQconninfoFree(options);
}

PgPool::~PgPool() {
  std::lock_guard lock(mutex_);
  for (PGconn* c : idle_) PQfinish(c);
  idle_.clear();
}

std::string PgPool::last_error() {
  std::lock_guard lock(mutex_);
  return last_error_;
}

PGconn* PgPool::connect_dedicated() const {
  // Defaults first: the URL's own settings, expanded from "dbname", come later and win.
  const char* keys[] = {"connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval",
                        "keepalives_count", "tcp_user_timeout", "application_name", "options", "dbname", nullptr};
  const char* values[] = {"5", "1", "10", "5", "3", "15000", "maskmaker", "-c statement_timeout=10000", url_.c_str(),
                          nullptr};
  PGconn* c = PQconnectdbParams(keys, values, 1);
  if (!c || PQstatus(c) != CONNECTION_OK) {
    std::string msg = c ? pg_trim(PQerrorMessage(c)) : "out of memory";
    PQfinish(c);
    throw PgConnectionLost{msg};
  }
  PQsetNoticeProcessor(c, ignore_notice, nullptr);
  return c;
}

PGconn* PgPool::acquire(bool& pooled) {
  {
    std::unique_lock lock(mutex_);
    if (!available_.wait_for(lock, std::chrono::seconds(15),
                             [&] { return !idle_.empty() || open_ < max_connections_; }))
      throw Error(ErrorCode::StorageUnavailable, what_ + ": every connection is busy; retry shortly");
    if (!idle_.empty()) {
      PGconn* c = idle_.back();
      idle_.pop_back();
      pooled = true;
      return c;
    }
    ++open_;
    pooled = false;
  }
  try {
    return connect_dedicated();
  } catch (...) {
    {
      std::lock_guard lock(mutex_);
      --open_;
    }
    available_.notify_one();
    throw;
  }
}

void PgPool::release(PGconn* conn, bool healthy) {
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

void PgPool::migrate(PGconn* conn) {
  const char* what = what_.c_str();
  pg_run(conn, what, "BEGIN");
  try {
    pg_run(conn, what, "SELECT pg_advisory_xact_lock($1::bigint)", {std::string(kMigrationLock)});
    pg_run(conn, what, ("CREATE TABLE IF NOT EXISTS " + version_table_ + " (version INTEGER NOT NULL)").c_str());
    PgResult r = pg_run(conn, what, ("SELECT COALESCE(MAX(version), 0) FROM " + version_table_).c_str());
    const int version = std::stoi(pg_str(r.get(), 0, 0)), latest = int(migrations_.size());
    for (int v = version; v < latest; ++v) pg_run(conn, what, migrations_[size_t(v)]);
    if (version < latest) {
      pg_run(conn, what, ("DELETE FROM " + version_table_).c_str());
      pg_run(conn, what, ("INSERT INTO " + version_table_ + " (version) VALUES ($1::int)").c_str(),
             {std::to_string(latest)});
      spdlog::info("{} {}: schema migrated from version {} to {}", what_, redacted_, version, latest);
    } else if (version > latest) {
      spdlog::warn("{} {}: schema version {} is newer than this binary's {}", what_, redacted_, version, latest);
    }
    pg_run(conn, what, "COMMIT");
  } catch (...) {
    PQclear(PQexec(conn, "ROLLBACK"));
    throw;
  }
}

void PgPool::with_conn(bool retry, const std::function<void(PGconn*)>& fn) {
  for (int attempt = 0;; ++attempt) {
    PGconn* conn = nullptr;
    bool pooled = false;
    try {
      conn = acquire(pooled);
      if (!migrated_.load()) {
        std::lock_guard lock(migrate_mutex_);
        if (!migrated_.load()) {
          migrate(conn);
          migrated_.store(true);
        }
      }
      fn(conn);
      release(conn, true);
      return;
    } catch (const PgConnectionLost& e) {
      if (conn) release(conn, false);
      // A pooled connection may have gone stale (the server restarted): once more on a fresh one.
      if (retry && pooled && attempt == 0) continue;
      {
        std::lock_guard lock(mutex_);
        last_error_ = e.message;
      }
      spdlog::warn("{} {} is unreachable: {}", what_, redacted_, e.message);
      // The details (addresses) go to the log and /readyz, not to API clients.
      throw Error(ErrorCode::StorageUnavailable, "the " + what_ + " is unreachable: retry shortly");
    } catch (...) {
      if (conn) {
        // A statement that failed inside a transaction leaves it open: roll back before the connection is reused.
        if (PQtransactionStatus(conn) != PQTRANS_IDLE) PQclear(PQexec(conn, "ROLLBACK"));
        release(conn, true);
      }
      throw;
    }
  }
}

}  // namespace maskmaker::service
