#include "server/jobs_store.hpp"

#include <sqlite3.h>

#include <vector>

#include <spdlog/spdlog.h>

#include "maskmaker/maskmaker.hpp"
#include "maskmaker/keys.hpp"
#include "service/sqlite_stmt.hpp"

namespace maskmaker::server {
namespace {

[[noreturn]] void db_error(sqlite3* db, int rc) { service::sqlite_fail(db, rc, "jobs database"); }

struct Stmt : service::SqliteStmt {
  Stmt(sqlite3* db, const char* sql) : SqliteStmt(db, sql, "jobs database") {}
};

JobStatus status_from(const std::string& s) {
  if (s == "QUEUED") return JobStatus::Queued;
  if (s == "PROCESSING") return JobStatus::Processing;
  if (s == "COMPLETED") return JobStatus::Completed;
  if (s == "FAILED") return JobStatus::Failed;
  return JobStatus::Expired;
}

}  // namespace

const char* job_status_name(JobStatus status) {
  switch (status) {
    case JobStatus::Queued: return "QUEUED";
    case JobStatus::Processing: return "PROCESSING";
    case JobStatus::Completed: return "COMPLETED";
    case JobStatus::Failed: return "FAILED";
    case JobStatus::Expired: return "EXPIRED";
  }
  return "EXPIRED";
}

SqliteJobStore::SqliteJobStore(std::string path, bool open_now) : path_(std::move(path)) {
  if (open_now) {
    std::lock_guard lock(mutex_);
    open_locked();
  }
}

SqliteJobStore::~SqliteJobStore() { sqlite3_close(db_); }

bool SqliteJobStore::is_open() {
  std::lock_guard lock(mutex_);
  return db_ != nullptr;
}

void SqliteJobStore::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    sqlite3_free(err);
    db_error(db_, sqlite3_errcode(db_));
  }
}

void SqliteJobStore::open_locked() {
  if (db_) return;
  prepare_private_file(path_);
  if (sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw Error(ErrorCode::InvalidArgument, "cannot open the jobs database " + path_ + ": " + msg);
  }
  try {
    sqlite3_busy_timeout(db_, 5000);
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=NORMAL");
    exec(R"sql(CREATE TABLE IF NOT EXISTS jobs (
            id TEXT PRIMARY KEY,
            key_id INTEGER,
            status TEXT NOT NULL,
            request TEXT,
            image BLOB,
            webhook_url TEXT,
            webhook_state INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            owner TEXT,
            heartbeat_at REAL,
            error TEXT,
            result TEXT,
            result_image BLOB,
            result_bytes INTEGER NOT NULL DEFAULT 0,
            metrics TEXT,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            expired_at REAL))sql");
    exec("CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, created_at)");
    // Columns added since the first version: files made by it gain them.
    for (const char* column : {"input_bytes INTEGER NOT NULL DEFAULT 0", "charged INTEGER NOT NULL DEFAULT 0",
                               "webhook_owner TEXT", "webhook_lease REAL"}) {
      const std::string name = std::string(column).substr(0, std::string(column).find(' '));
      Stmt has(db_, "SELECT COUNT(*) FROM pragma_table_info('jobs') WHERE name = ?");
      has.bind(1, name).step();
      if (has.int64(0) == 0) exec(("ALTER TABLE jobs ADD COLUMN " + std::string(column)).c_str());
    }
    exec("CREATE INDEX IF NOT EXISTS jobs_by_key ON jobs (key_id, status)");
    exec("CREATE INDEX IF NOT EXISTS jobs_by_webhook ON jobs (webhook_state)");
  } catch (...) {
    sqlite3_close(db_);
    db_ = nullptr;
    throw;
  }
}

InsertResult SqliteJobStore::insert(const JobRow& row, const QueueLimits& limits) {
  std::lock_guard lock(mutex_);
  try {
    open_locked();  // the first job of a server whose file is made on demand
  } catch (const Error& e) {
    if (e.code() != ErrorCode::StorageUnavailable) spdlog::error("{}", e.what());
    throw Error(ErrorCode::StorageUnavailable, "the jobs database is unavailable: retry shortly");
  }
  // The counts and the insert in one write transaction: exact across processes sharing the file.
  exec("BEGIN IMMEDIATE");
  try {
    InsertResult result = InsertResult::Queued;
    Stmt queued(db_, "SELECT COUNT(*) FROM jobs WHERE status = 'QUEUED'");
    queued.step();
    if (queued.int64(0) >= limits.max_queued) result = InsertResult::QueueFull;
    if (result == InsertResult::Queued && row.key_id) {
      Stmt mine(db_, "SELECT COUNT(*), COALESCE(SUM(input_bytes), 0) FROM jobs "
                     "WHERE key_id = ? AND status IN ('QUEUED', 'PROCESSING')");
      mine.bind(1, row.key_id).step();
      if (mine.int64(0) >= limits.per_key_jobs) result = InsertResult::KeyJobsFull;
      else if (mine.int64(1) + row.input_bytes > limits.per_key_bytes) result = InsertResult::KeyBytesFull;
    }
    if (result == InsertResult::Queued) {
      Stmt st(db_, "INSERT INTO jobs (id, key_id, status, request, image, input_bytes, charged, webhook_url, "
                   "created_at) VALUES (?, ?, 'QUEUED', ?, ?, ?, ?, ?, ?)");
      st.bind(1, row.id).bind(2, row.key_id).bind(3, row.request).bind(4, row.image).bind(5, row.input_bytes)
          .bind(6, row.charged).bind_text_or_null(7, row.webhook_url).bind(8, row.created_at);
      st.step();
    }
    exec("COMMIT");
    return result;
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

std::optional<JobRow> SqliteJobStore::claim(const std::string& owner, double now) {
  std::lock_guard lock(mutex_);
  if (!db_) return std::nullopt;
  Stmt st(db_, "UPDATE jobs SET status = 'PROCESSING', attempts = attempts + 1, owner = ?1, started_at = ?2, "
               "heartbeat_at = ?2 WHERE id = (SELECT id FROM jobs q WHERE status = 'QUEUED' ORDER BY "
               // Round robin between keys: the key whose last job started longest ago goes first, then the oldest job.
               "(SELECT COALESCE(MAX(p.started_at), 0) FROM jobs p WHERE p.key_id IS q.key_id AND p.status <> 'QUEUED'), "
               "created_at, rowid LIMIT 1) AND status = 'QUEUED' "
               "RETURNING id, key_id, request, image, webhook_url, attempts, created_at");
  st.bind(1, owner).bind(2, now);
  if (st.step() != SQLITE_ROW) return std::nullopt;
  JobRow r;
  r.id = st.text(0);
  r.key_id = st.opt_int(1);
  r.status = JobStatus::Processing;
  r.request = st.text(2);
  r.image = st.blob(3);
  r.webhook_url = st.text(4);
  r.attempts = int(st.int64(5));
  r.created_at = st.real(6);
  r.owner = owner;
  r.started_at = now;
  st.finish();  // finish the statement before the lock is released
  return r;
}

void SqliteJobStore::release(const std::string& id, const std::string& owner) {
  std::lock_guard lock(mutex_);
  if (!db_) return;
  Stmt st(db_, "UPDATE jobs SET status = 'QUEUED', attempts = MAX(0, attempts - 1), owner = NULL, started_at = NULL, "
               "heartbeat_at = NULL WHERE id = ? AND owner = ? AND status = 'PROCESSING'");
  st.bind(1, id).bind(2, owner).step();
}

bool SqliteJobStore::complete(const std::string& id, const std::string& owner, const std::string& result,
                        const std::vector<uint8_t>& result_image, const std::string& metrics, double now) {
  std::lock_guard lock(mutex_);
  if (!db_) return false;
  Stmt st(db_, "UPDATE jobs SET status = 'COMPLETED', result = ?, result_image = ?, result_bytes = ?, metrics = ?, "
               "finished_at = ?, image = NULL, webhook_state = CASE WHEN webhook_url IS NULL THEN 0 ELSE 1 END "
               "WHERE id = ? AND owner = ? AND status = 'PROCESSING'");
  st.bind(1, result).bind(2, result_image).bind(3, int64_t(result_image.size())).bind(4, metrics).bind(5, now)
      .bind(6, id).bind(7, owner);
  st.step();
  return sqlite3_changes(db_) == 1;
}

bool SqliteJobStore::fail(const std::string& id, const std::string& owner, const std::string& error,
                    const std::string& metrics, double now) {
  std::lock_guard lock(mutex_);
  if (!db_) return false;
  Stmt st(db_, "UPDATE jobs SET status = 'FAILED', error = ?, metrics = ?, finished_at = ?, image = NULL, "
               "webhook_state = CASE WHEN webhook_url IS NULL THEN 0 ELSE 1 END "
               "WHERE id = ? AND owner = ? AND status = 'PROCESSING'");
  st.bind(1, error).bind_text_or_null(2, metrics).bind(3, now).bind(4, id).bind(5, owner);
  st.step();
  return sqlite3_changes(db_) == 1;
}

std::optional<JobRow> SqliteJobStore::get(const std::string& id, bool with_result) {
  std::lock_guard lock(mutex_);
  if (!db_) return std::nullopt;
  Stmt st(db_, with_result
                   ? "SELECT id, key_id, status, error, result, metrics, created_at, started_at, finished_at, "
                     "expired_at, attempts, webhook_url, result_image FROM jobs WHERE id = ?"
                   : "SELECT id, key_id, status, error, result, metrics, created_at, started_at, finished_at, "
                     "expired_at, attempts, webhook_url FROM jobs WHERE id = ?");
  st.bind(1, id);
  if (st.step() != SQLITE_ROW) return std::nullopt;
  JobRow r;
  r.id = st.text(0);
  r.key_id = st.opt_int(1);
  r.status = status_from(st.text(2));
  r.error = st.text(3);
  r.result = st.text(4);
  r.metrics = st.text(5);
  r.created_at = st.real(6);
  r.started_at = st.real(7);
  r.finished_at = st.real(8);
  r.expired_at = st.real(9);
  r.attempts = int(st.int64(10));
  r.webhook_url = st.text(11);
  if (with_result) r.result_image = st.blob(12);
  return r;
}

int64_t SqliteJobStore::queue_position(const std::string& id) {
  std::lock_guard lock(mutex_);
  if (!db_) return 0;
  Stmt st(db_, "SELECT COUNT(*) FROM jobs j, (SELECT created_at c, rowid r FROM jobs WHERE id = ?) me "
               "WHERE j.status = 'QUEUED' AND (j.created_at < me.c OR (j.created_at = me.c AND j.rowid < me.r))");
  st.bind(1, id).step();
  return st.int64(0);
}

int64_t SqliteJobStore::count(JobStatus status) {
  std::lock_guard lock(mutex_);
  if (!db_) return 0;
  Stmt st(db_, "SELECT COUNT(*) FROM jobs WHERE status = ?");
  st.bind(1, std::string(job_status_name(status))).step();
  return st.int64(0);
}

std::vector<JobRow> SqliteJobStore::processing() {
  std::lock_guard lock(mutex_);
  std::vector<JobRow> out;
  if (!db_) return out;
  Stmt st(db_, "SELECT id, owner, heartbeat_at, attempts FROM jobs WHERE status = 'PROCESSING'");
  while (st.step() == SQLITE_ROW) {
    JobRow r;
    r.status = JobStatus::Processing;
    r.id = st.text(0);
    r.owner = st.text(1);
    r.heartbeat_at = st.real(2);
    r.attempts = int(st.int64(3));
    out.push_back(std::move(r));
  }
  return out;
}

void SqliteJobStore::heartbeat(const std::string& owner, const std::vector<std::string>& ids, double now) {
  std::lock_guard lock(mutex_);
  if (!db_) return;
  for (const std::string& id : ids) {
    Stmt st(db_, "UPDATE jobs SET heartbeat_at = ? WHERE id = ? AND owner = ? AND status = 'PROCESSING'");
    st.bind(1, now).bind(2, id).bind(3, owner).step();
  }
}

bool SqliteJobStore::recover(const std::string& id, const std::string& owner, int max_attempts, const std::string& error,
                       double now, bool& requeued) {
  std::lock_guard lock(mutex_);
  if (!db_) return false;
  Stmt st(db_, "UPDATE jobs SET "
               "status = CASE WHEN attempts < ?1 THEN 'QUEUED' ELSE 'FAILED' END, "
               "error = CASE WHEN attempts < ?1 THEN NULL ELSE ?2 END, "
               "finished_at = CASE WHEN attempts < ?1 THEN NULL ELSE ?3 END, "
               "image = CASE WHEN attempts < ?1 THEN image ELSE NULL END, "
               "webhook_state = CASE WHEN attempts < ?1 OR webhook_url IS NULL THEN webhook_state ELSE 1 END, "
               "owner = CASE WHEN attempts < ?1 THEN NULL ELSE owner END, started_at = CASE WHEN attempts < ?1 THEN "
               "NULL ELSE started_at END "
               "WHERE id = ?4 AND owner = ?5 AND status = 'PROCESSING' RETURNING status");
  st.bind(1, max_attempts).bind(2, error).bind(3, now).bind(4, id).bind(5, owner);
  if (st.step() != SQLITE_ROW) return false;
  requeued = st.text(0) == "QUEUED";
  st.finish();
  return true;
}

int64_t SqliteJobStore::expire_finished_before(double cutoff, double now) {
  std::lock_guard lock(mutex_);
  if (!db_) return 0;
  Stmt st(db_, "UPDATE jobs SET status = 'EXPIRED', expired_at = ?, request = NULL, image = NULL, result = NULL, "
               "result_image = NULL, result_bytes = 0 "
               "WHERE status IN ('COMPLETED', 'FAILED') AND finished_at < ?");
  st.bind(1, now).bind(2, cutoff).step();
  return sqlite3_changes(db_);
}

int64_t SqliteJobStore::evict_results_over(int64_t budget, double now) {
  std::lock_guard lock(mutex_);
  if (!db_) return 0;
  // Fair to the keys: results are kept in order of their key's running total from its newest (each key's newest
  // first, whoever holds most gives up its oldest first), and every result beyond the budget expires. One key's
  // flood of results then evicts its own, not another key's unread (paid) answer.
  Stmt st(db_, "UPDATE jobs SET status = 'EXPIRED', expired_at = ?1, request = NULL, image = NULL, result = NULL, "
               "result_image = NULL, result_bytes = 0 WHERE id IN ("
               "SELECT id FROM (SELECT id, SUM(result_bytes) OVER (ORDER BY key_total, finished_at DESC, rid DESC) "
               "AS total FROM (SELECT id, rowid AS rid, finished_at, result_bytes, SUM(result_bytes) OVER "
               "(PARTITION BY key_id ORDER BY finished_at DESC, rowid DESC) AS key_total FROM jobs "
               "WHERE status = 'COMPLETED')) WHERE total > ?2)");
  st.bind(1, now).bind(2, budget).step();
  return sqlite3_changes(db_);
}

int64_t SqliteJobStore::result_bytes_total() {
  std::lock_guard lock(mutex_);
  if (!db_) return 0;
  Stmt st(db_, "SELECT COALESCE(SUM(result_bytes), 0) FROM jobs WHERE status = 'COMPLETED'");
  st.step();
  return st.int64(0);
}

void SqliteJobStore::delete_expired_before(double cutoff) {
  std::lock_guard lock(mutex_);
  if (!db_) return;
  Stmt st(db_, "DELETE FROM jobs WHERE status = 'EXPIRED' AND expired_at < ?");
  st.bind(1, cutoff).step();
}

std::optional<int64_t> SqliteJobStore::take_refund(const std::string& id) {
  std::lock_guard lock(mutex_);
  if (!db_) return std::nullopt;
  Stmt st(db_, "UPDATE jobs SET charged = 0 WHERE id = ? AND charged = 1 AND status = 'FAILED' "
               "AND key_id IS NOT NULL RETURNING key_id");
  st.bind(1, id);
  if (st.step() != SQLITE_ROW) return std::nullopt;
  auto key = st.opt_int(0);
  st.finish();
  return key;
}

std::vector<JobRow> SqliteJobStore::pending_webhooks() {
  std::lock_guard lock(mutex_);
  std::vector<JobRow> out;
  if (!db_) return out;
  Stmt st(db_, "SELECT id, owner, webhook_url, webhook_owner, webhook_lease FROM jobs "
               "WHERE webhook_state = 1 AND status IN ('COMPLETED', 'FAILED')");
  while (st.step() == SQLITE_ROW) {
    JobRow r;
    r.id = st.text(0);
    r.owner = st.text(1);
    r.webhook_url = st.text(2);
    r.webhook_owner = st.text(3);
    r.webhook_lease = st.real(4);
    out.push_back(std::move(r));
  }
  return out;
}

bool SqliteJobStore::claim_webhook(const std::string& id, const std::string& owner, double now, double lease_s,
                             const std::string& dead_owner) {
  std::lock_guard lock(mutex_);
  if (!db_) return false;
  Stmt st(db_, "UPDATE jobs SET webhook_owner = ?1, webhook_lease = ?2 WHERE id = ?3 AND webhook_state = 1 AND "
               "(webhook_owner IS NULL OR webhook_owner = ?1 OR webhook_lease IS NULL OR webhook_lease < ?4 OR "
               "webhook_owner = ?5)");
  st.bind(1, owner).bind(2, now + lease_s).bind(3, id).bind(4, now).bind(5, dead_owner.empty() ? owner : dead_owner);
  st.step();
  return sqlite3_changes(db_) == 1;
}

void SqliteJobStore::release_webhooks(const std::string& owner) {
  std::lock_guard lock(mutex_);
  if (!db_) return;
  Stmt st(db_, "UPDATE jobs SET webhook_lease = 0 WHERE webhook_owner = ? AND webhook_state = 1");
  st.bind(1, owner).step();
}

void SqliteJobStore::set_webhook(const std::string& id, WebhookState state) {
  std::lock_guard lock(mutex_);
  if (!db_) return;
  Stmt st(db_, "UPDATE jobs SET webhook_state = ? WHERE id = ?");
  st.bind(1, int64_t(state)).bind(2, id).step();
}

std::unique_ptr<JobStore> open_job_store(const std::string& path_or_url, bool open_now, int connections) {
  if (service::is_postgres_url(path_or_url)) return open_pg_job_store(path_or_url, connections);
  return std::make_unique<SqliteJobStore>(path_or_url, open_now);
}

}  // namespace maskmaker::server
