// A small libpq connection pool shared by the PostgreSQL stores (keys_pg.hpp, server/jobs_store_pg.cpp).
//
// - Connections are opened on demand, at most `max_connections`, with connect_timeout=5, TCP keepalives,
//   tcp_user_timeout=15000 and a statement_timeout of 10 s (each overridable in the URL); a caller waits up to
//   15 s for a free one, then gets StorageUnavailable.
// - Schema: the store's migrations run once per process at first use, in one transaction under an advisory lock
//   (replicas starting together are safe), recorded in the store's own version table.
// - Errors: a lost connection (or one that gave no answer within 15 s) becomes Error(StorageUnavailable) (HTTP 503
//   + Retry-After) after one retry on a fresh connection where the caller allows it; what passes on the server
//   (statement timeout, lack of resources, read-only standby, lock and serialisation conflicts, I/O) is
//   StorageUnavailable too; other SQL errors are Internal.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

typedef struct pg_conn PGconn;
typedef struct pg_result PGresult;

namespace maskmaker::service {

// Thrown by pg_run when the connection itself failed (as opposed to an SQL error); PgPool::with_conn maps it.
struct PgConnectionLost {
  std::string message;
};

// A statement parameter: text (nullopt = NULL), or bytes sent in binary (bytea).
struct PgParam {
  std::optional<std::string> value;
  bool binary = false;
  PgParam(std::nullopt_t) {}
  PgParam(std::string v) : value(std::move(v)) {}
  PgParam(const char* v) : value(std::string(v)) {}
  PgParam(std::optional<std::string> v) : value(std::move(v)) {}
  static PgParam bytes(const std::vector<uint8_t>& b) {
    PgParam p(std::string(b.begin(), b.end()));
    p.binary = true;
    return p;
  }
};

using PgResult = std::unique_ptr<PGresult, void (*)(PGresult*)>;

// One statement. `what` names the database in messages ("keys database", "jobs database").
PgResult pg_run(PGconn* conn, const char* what, const char* sql, const std::vector<PgParam>& params = {});
std::string pg_str(const PGresult* r, int row, int col);
std::optional<int64_t> pg_opt_int(const PGresult* r, int row, int col);
std::vector<uint8_t> pg_bytes(const PGresult* r, int row, int col);  // a bytea column (text format)
double pg_real(const PGresult* r, int row, int col);                 // NULL: 0
int pg_rows(const PGresult* r);
int64_t pg_changed(const PGresult* r);  // rows an UPDATE/DELETE touched
// libpq's messages on one line.
std::string pg_trim(const std::string& s);
// The URL with any password replaced by ***.
std::string pg_redact(const std::string& url);

class PgPool {
 public:
  // Checks the URL (InvalidArgument when libpq cannot parse it); connects lazily. `migrations` move the schema
  // from version i to i + 1, recorded in `version_table`.
  PgPool(std::string url, int max_connections, std::string what, std::vector<const char*> migrations,
         std::string version_table);
  ~PgPool();
  PgPool(const PgPool&) = delete;
  PgPool& operator=(const PgPool&) = delete;

  // Runs `fn` on a pooled connection (schema ensured). A lost connection drops the idle pool; with `retry` the
  // call is repeated once on a fresh connection (only for statements that are safe to repeat).
  void with_conn(bool retry, const std::function<void(PGconn*)>& fn);
  // A new connection outside the pool (a LISTEN connection), with the pool's settings; throws PgConnectionLost.
  PGconn* connect_dedicated() const;

  const std::string& redacted() const { return redacted_; }
  const std::string& what() const { return what_; }
  std::string last_error();  // the last connection failure
  int max_connections() const { return max_connections_; }

 private:
  PGconn* acquire(bool& pooled);  // pooled: an idle connection, else a new one
  void release(PGconn* conn, bool healthy);
  void migrate(PGconn* conn);

  std::string url_, redacted_, what_;
  int max_connections_;
  std::vector<const char*> migrations_;
  std::string version_table_;
  std::mutex mutex_;
  std::condition_variable available_;
  std::vector<PGconn*> idle_;
  int open_ = 0;
  std::string last_error_;
  std::atomic<bool> migrated_{false};
  std::mutex migrate_mutex_;  // one migration at a time in this process
};

}  // namespace maskmaker::service
