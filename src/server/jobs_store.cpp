#include "server/jobs_store.hpp"

#include <sqlite3.h>

#include "maskmaker/maskmaker.hpp"

namespace maskmaker::server {
namespace {

struct Stmt {
  sqlite3* db;
  sqlite3_stmt* s = nullptr;
  Stmt(sqlite3* d, const char* sql) : db(d) {
    if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) != SQLITE_OK)
      throw Error(ErrorCode::Internal, std::string("jobs database: ") + sqlite3_errmsg(db));
  }
  ~Stmt() { sqlite3_finalize(s); }
  Stmt& bind(int i, int64_t v) { sqlite3_bind_int64(s, i, v); return *this; }
  Stmt& bind(int i, int v) { sqlite3_bind_int64(s, i, v); return *this; }
  Stmt& bind(int i, double v) { sqlite3_bind_double(s, i, v); return *this; }
  Stmt& bind(int i, const std::string& v) {
    sqlite3_bind_text(s, i, v.c_str(), int(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind_text_or_null(int i, const std::string& v) {
    if (v.empty()) sqlite3_bind_null(s, i); else bind(i, v);
    return *this;
  }
  Stmt& bind(int i, const std::optional<int64_t>& v) {
    if (v) sqlite3_bind_int64(s, i, *v); else sqlite3_bind_null(s, i);
    return *this;
  }
  Stmt& bind(int i, const std::vector<uint8_t>& v) {
    if (v.empty()) sqlite3_bind_null(s, i);
    else sqlite3_bind_blob64(s, i, v.data(), sqlite3_uint64(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  int step() {
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
      throw Error(ErrorCode::Internal, std::string("jobs database: ") + sqlite3_errmsg(db));
    return rc;
  }
  std::string text(int col) const {
    auto p = sqlite3_column_text(s, col);
    return p ? std::string(reinterpret_cast<const char*>(p), size_t(sqlite3_column_bytes(s, col))) : "";
  }
  std::vector<uint8_t> blob(int col) const {
    auto p = static_cast<const uint8_t*>(sqlite3_column_blob(s, col));
    int n = sqlite3_column_bytes(s, col);
    return p ? std::vector<uint8_t>(p, p + n) : std::vector<uint8_t>{};
  }
  std::optional<int64_t> opt_int(int col) const {
    if (sqlite3_column_type(s, col) == SQLITE_NULL) return std::nullopt;
    return sqlite3_column_int64(s, col);
  }
  double real(int col) const { return sqlite3_column_double(s, col); }
  int64_t int64(int col) const { return sqlite3_column_int64(s, col); }
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

JobStore::JobStore(std::string path, bool open_now) : path_(std::move(path)) {
  if (open_now) {
    std::lock_guard lock(mutex_);
    open_locked();
  }
}

JobStore::~JobStore() { sqlite3_close(db_); }

bool JobStore::is_open() {
  std::lock_guard lock(mutex_);
  return db_ != nullptr;
}

void JobStore::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    throw Error(ErrorCode::Internal, "jobs database " + path_ + ": " + msg);
  }
}

void JobStore::open_locked() {
  if (db_) return;
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
  } catch (...) {
    sqlite3_close(db_);
    db_ = nullptr;
    throw;
  }
}

bool JobStore::insert(const JobRow& row, int64_t max_queued) {
  std::lock_guard lock(mutex_);
  try {
    open_locked();  // the first job of a server whose file is made on demand
  } catch (const Error& e) {
    throw Error(ErrorCode::Internal, e.what());  // a 500 for the client, not a 400
  }
  // One statement: the count and the insert are atomic, also across processes sharing the file.
  Stmt st(db_, "INSERT INTO jobs (id, key_id, status, request, image, webhook_url, created_at) "
               "SELECT ?, ?, 'QUEUED', ?, ?, ?, ? WHERE (SELECT COUNT(*) FROM jobs WHERE status = 'QUEUED') < ?");
  st.bind(1, row.id).bind(2, row.key_id).bind(3, row.request).bind(4, row.image).bind_text_or_null(5, row.webhook_url)
      .bind(6, row.created_at).bind(7, max_queued);
  st.step();
  return sqlite3_changes(db_) == 1;
}

std::optional<JobRow> JobStore::claim(const std::string& owner, double now) {
  std::lock_guard lock(mutex_);
  if (!db_) return std::nullopt;
  Stmt st(db_, "UPDATE jobs SET status = 'PROCESSING', attempts = attempts + 1, owner = ?1, started_at = ?2, "
               "heartbeat_at = ?2 WHERE id = (SELECT id FROM jobs WHERE status = 'QUEUED' ORDER BY created_at, rowid "
               "LIMIT 1) AND status = 'QUEUED' "
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
  while (sqlite3_step(st.s) == SQLITE_ROW) {}  // finish the statement before the lock is released
  return r;
}

void JobStore::release(const std::string& id, const std::string& owner) {
  std::lock_guard lock(mutex_);
  if (!db_) return;
  Stmt st(db_, "UPDATE jobs SET status = 'QUEUED', attempts = MAX(0, attempts - 1), owner = NULL, started_at = NULL, "
               "heartbeat_at = NULL WHERE id = ? AND owner = ? AND status = 'PROCESSING'");
  st.bind(1, id).bind(2, owner).step();
}

bool JobStore::complete(const std::string& id, const std::string& owner, const std::string& result,
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

bool JobStore::fail(const std::string& id, const std::string& owner, const std::string& error,
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

std::optional<JobRow> JobStore::get(const std::string& id, bool with_result) {
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

int64_t JobStore::queue_position(const std::string& id) {
  std::lock_guard lock(mutex_);
  if (!db_) return 0;
  Stmt st(db_, "SELECT COUNT(*) FROM jobs j, (SELECT created_at c, rowid r FROM jobs WHERE id = ?) me "
               "WHERE j.status = 'QUEUED' AND (j.created_at < me.c OR (j.created_at = me.c AND j.rowid < me.r))");
  st.bind(1, id).step();
  return st.int64(0);
}

int64_t JobStore::count(JobStatus status) {
  std::lock_guard lock(mutex_);
  if (!db_) return 0;
  Stmt st(db_, "SELECT COUNT(*) FROM jobs WHERE status = ?");
  st.bind(1, std::string(job_status_name(status))).step();
  return st.int64(0);
}

std::vector<JobRow> JobStore::processing() {
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

void JobStore::heartbeat(const std::string& owner, double now) {
  std::lock_guard lock(mutex_);
  if (!db_) return;
  Stmt st(db_, "UPDATE jobs SET heartbeat_at = ? WHERE owner = ? AND status = 'PROCESSING'");
  st.bind(1, now).bind(2, owner).step();
}

bool JobStore::recover(const std::string& id, const std::string& owner, int max_attempts, const std::string& error,
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
  while (sqlite3_step(st.s) == SQLITE_ROW) {}
  return true;
}

int64_t JobStore::expire_finished_before(double cutoff, double now) {
  std::lock_guard lock(mutex_);
  if (!db_) return 0;
  Stmt st(db_, "UPDATE jobs SET status = 'EXPIRED', expired_at = ?, request = NULL, image = NULL, result = NULL, "
               "result_image = NULL, result_bytes = 0 "
               "WHERE status IN ('COMPLETED', 'FAILED') AND finished_at < ?");
  st.bind(1, now).bind(2, cutoff).step();
  return sqlite3_changes(db_);
}

int64_t JobStore::evict_results_over(int64_t budget, double now) {
  std::lock_guard lock(mutex_);
  if (!db_) return 0;
  // The oldest results go first: a running total from the newest, and every result beyond the budget expires.
  Stmt st(db_, "UPDATE jobs SET status = 'EXPIRED', expired_at = ?1, request = NULL, image = NULL, result = NULL, "
               "result_image = NULL, result_bytes = 0 WHERE id IN ("
               "SELECT id FROM (SELECT id, SUM(result_bytes) OVER (ORDER BY finished_at DESC, rowid DESC) AS total "
               "FROM jobs WHERE status = 'COMPLETED') WHERE total > ?2)");
  st.bind(1, now).bind(2, budget).step();
  return sqlite3_changes(db_);
}

int64_t JobStore::result_bytes_total() {
  std::lock_guard lock(mutex_);
  if (!db_) return 0;
  Stmt st(db_, "SELECT COALESCE(SUM(result_bytes), 0) FROM jobs WHERE status = 'COMPLETED'");
  st.step();
  return st.int64(0);
}

void JobStore::delete_expired_before(double cutoff) {
  std::lock_guard lock(mutex_);
  if (!db_) return;
  Stmt st(db_, "DELETE FROM jobs WHERE status = 'EXPIRED' AND expired_at < ?");
  st.bind(1, cutoff).step();
}

std::vector<JobRow> JobStore::pending_webhooks() {
  std::lock_guard lock(mutex_);
  std::vector<JobRow> out;
  if (!db_) return out;
  Stmt st(db_, "SELECT id, owner FROM jobs WHERE webhook_state = 1 AND status IN ('COMPLETED', 'FAILED')");
  while (st.step() == SQLITE_ROW) {
    JobRow r;
    r.id = st.text(0);
    r.owner = st.text(1);
    out.push_back(std::move(r));
  }
  return out;
}

void JobStore::set_webhook(const std::string& id, WebhookState state) {
  std::lock_guard lock(mutex_);
  if (!db_) return;
  Stmt st(db_, "UPDATE jobs SET webhook_state = ? WHERE id = ?");
  st.bind(1, int64_t(state)).bind(2, id).step();
}

}  // namespace maskmaker::server
