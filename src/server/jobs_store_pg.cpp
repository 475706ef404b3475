// The PostgreSQL job store (jobs_store.hpp): the jobs of every replica in one table, maskmaker_jobs, so that any
// replica takes a submit, answers for any job, and runs any queued job.
//
// - Claim: UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1): a queued row is taken by exactly one
//   worker, and workers racing for the head of the queue skip each other's rows instead of waiting.
// - Insert: the limits' counts and the INSERT in one transaction under an advisory lock (exact across replicas).
// - Wake-up: LISTEN/NOTIFY. An insert (and a requeue) sends NOTIFY maskmaker_jobs at commit; one listening
//   connection per process wakes its workers. The workers' one-second poll stays as the fallback (a notification
//   lost while the listener reconnects).
// - Sweeps (expiry, deletion) run under pg_try_advisory_xact_lock: one replica at a time, the others skip; the results
//   budget under a waiting advisory lock, so that every eviction sees every result committed before it.
// - Timestamps are the replicas' own clocks (Unix seconds): keep them in sync (NTP) to within the lease.
#include <poll.h>

#include <atomic>
#include <cstdio>
#include <functional>
#include <thread>

#include <libpq-fe.h>
#include <spdlog/spdlog.h>

#include "maskmaker/maskmaker.hpp"
#include "server/jobs_store.hpp"
#include "service/pg_pool.hpp"

namespace maskmaker::server {
namespace {

using service::PgParam;
using service::PgResult;

constexpr const char* kWhat = "jobs database";
constexpr const char* kChannel = "maskmaker_jobs";
constexpr const char* kInsertLock = "7157252014";  // advisory lock keys: the queue's limits,
constexpr const char* kSweepLock = "7157252015";   // expiry and deletion,
constexpr const char* kBudgetLock = "7157252016";  // the results budget

const std::vector<const char*> kMigrations = {
    R"(CREATE TABLE IF NOT EXISTS maskmaker_jobs (
         seq BIGSERIAL NOT NULL,
         id TEXT PRIMARY KEY,
         key_id BIGINT,
         status TEXT NOT NULL,
         request TEXT,
         image BYTEA,
         input_bytes BIGINT NOT NULL DEFAULT 0,
         charged BOOLEAN NOT NULL DEFAULT false,
         webhook_url TEXT,
         webhook_state INTEGER NOT NULL DEFAULT 0,
         webhook_owner TEXT,
         webhook_lease DOUBLE PRECISION,
         attempts INTEGER NOT NULL DEFAULT 0,
         owner TEXT,
         heartbeat_at DOUBLE PRECISION,
         error TEXT,
         result TEXT,
         result_image BYTEA,
         result_bytes BIGINT NOT NULL DEFAULT 0,
         metrics TEXT,
         created_at DOUBLE PRECISION NOT NULL,
         started_at DOUBLE PRECISION,
         finished_at DOUBLE PRECISION,
         expired_at DOUBLE PRECISION))",
    "CREATE INDEX IF NOT EXISTS maskmaker_jobs_queued ON maskmaker_jobs (created_at, seq) WHERE status = 'QUEUED'",
    "CREATE INDEX IF NOT EXISTS maskmaker_jobs_by_status ON maskmaker_jobs (status, finished_at)",
    "CREATE INDEX IF NOT EXISTS maskmaker_jobs_by_key ON maskmaker_jobs (key_id, status)",
    "CREATE INDEX IF NOT EXISTS maskmaker_jobs_webhooks ON maskmaker_jobs (webhook_state) WHERE webhook_state = 1",
    // Images and PNG results are compressed already: stored out of line without another try at compressing them.
    "ALTER TABLE maskmaker_jobs ALTER COLUMN image SET STORAGE EXTERNAL, "
    "ALTER COLUMN result_image SET STORAGE EXTERNAL",
};

std::string num(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.6f", v);
  return buf;
}
std::string num(int64_t v) { return std::to_string(v); }
PgParam opt(const std::optional<int64_t>& v) { return v ? PgParam(num(*v)) : PgParam(std::nullopt); }
PgParam text_or_null(const std::string& s) { return s.empty() ? PgParam(std::nullopt) : PgParam(s); }

JobStatus status_from(const std::string& s) {
  for (JobStatus st : {JobStatus::Queued, JobStatus::Processing, JobStatus::Completed, JobStatus::Failed})
    if (s == job_status_name(st)) return st;
  return JobStatus::Expired;
}

class PgJobStore final : public JobStore {
 public:
  PgJobStore(const std::string& url, int connections)
      : pool_(url, connections, kWhat, kMigrations, "maskmaker_jobs_schema_version") {}
  ~PgJobStore() override { watch(nullptr); }

  std::string describe() const override { return pool_.redacted(); }
  bool is_open() override { return true; }

  InsertResult insert(const JobRow& row, const QueueLimits& limits) override {
    InsertResult result = InsertResult::Queued;
    // Not repeated on a lost connection: the transaction may have been committed before the answer was lost.
    with(false, [&](PGconn* c) {
      run(c, "BEGIN");
      run(c, "SELECT pg_advisory_xact_lock($1::bigint)", {kInsertLock});
      PgResult queued = run(c, "SELECT COUNT(*) FROM maskmaker_jobs WHERE status = 'QUEUED'");
      if (std::stoll(service::pg_str(queued.get(), 0, 0)) >= limits.max_queued) result = InsertResult::QueueFull;
      if (result == InsertResult::Queued && row.key_id) {
        PgResult mine = run(c, "SELECT COUNT(*), COALESCE(SUM(input_bytes), 0) FROM maskmaker_jobs "
                               "WHERE key_id = $1::bigint AND status IN ('QUEUED', 'PROCESSING')",
                            {num(*row.key_id)});
        if (std::stoll(service::pg_str(mine.get(), 0, 0)) >= limits.per_key_jobs) result = InsertResult::KeyJobsFull;
        else if (std::stoll(service::pg_str(mine.get(), 0, 1)) + row.input_bytes > limits.per_key_bytes)
          result = InsertResult::KeyBytesFull;
      }
      if (result == InsertResult::Queued) {
        run(c, "INSERT INTO maskmaker_jobs (id, key_id, status, request, image, input_bytes, charged, webhook_url, "
               "created_at) VALUES ($1, $2::bigint, 'QUEUED', $3, $4::bytea, $5::bigint, $6::boolean, $7, $8::float8)",
            {row.id, opt(row.key_id), row.request, row.image.empty() ? PgParam(std::nullopt) : PgParam::bytes(row.image),
             num(row.input_bytes), row.charged ? "true" : "false", text_or_null(row.webhook_url), num(row.created_at)});
        run(c, "SELECT pg_notify($1, '')", {kChannel});  // delivered at commit
      }
      run(c, "COMMIT");
    });
    return result;
  }

  std::optional<JobRow> claim(const std::string& owner, double now) override {
    std::optional<JobRow> out;
    with(false, [&](PGconn* c) {
      PgResult r = run(c, "UPDATE maskmaker_jobs SET status = 'PROCESSING', attempts = attempts + 1, owner = $1, "
                          "started_at = $2::float8, heartbeat_at = $2::float8 WHERE id = ("
                          "SELECT id FROM maskmaker_jobs q WHERE status = 'QUEUED' ORDER BY "
                          // Round robin between keys, as in SQLite (jobs_store.cpp).
                          "(SELECT COALESCE(MAX(p.started_at), 0) FROM maskmaker_jobs p WHERE p.key_id IS NOT DISTINCT "
                          "FROM q.key_id AND p.status <> 'QUEUED'), created_at, seq "
                          "FOR UPDATE SKIP LOCKED LIMIT 1) AND status = 'QUEUED' "
                          "RETURNING id, key_id, request, image, webhook_url, attempts, created_at",
                       {owner, num(now)});
      if (service::pg_rows(r.get()) == 0) return;
      JobRow j;
      const PGresult* p = r.get();
      j.id = service::pg_str(p, 0, 0);
      j.key_id = service::pg_opt_int(p, 0, 1);
      j.status = JobStatus::Processing;
      j.request = service::pg_str(p, 0, 2);
      j.image = service::pg_bytes(p, 0, 3);
      j.webhook_url = service::pg_str(p, 0, 4);
      j.attempts = int(std::stoll(service::pg_str(p, 0, 5)));
      j.created_at = service::pg_real(p, 0, 6);
      j.owner = owner;
      j.started_at = now;
      out = std::move(j);
    });
    return out;
  }

  void release(const std::string& id, const std::string& owner) override {
    exec(false, "UPDATE maskmaker_jobs SET status = 'QUEUED', attempts = GREATEST(0, attempts - 1), owner = NULL, "
                "started_at = NULL, heartbeat_at = NULL WHERE id = $1 AND owner = $2 AND status = 'PROCESSING'",
         {id, owner});
    exec(false, "SELECT pg_notify($1, '')", {kChannel});
  }

  bool complete(const std::string& id, const std::string& owner, const std::string& result,
                const std::vector<uint8_t>& result_image, const std::string& metrics, double now) override {
    return exec(false, "UPDATE maskmaker_jobs SET status = 'COMPLETED', result = $1, result_image = $2::bytea, "
                       "result_bytes = $3::bigint, metrics = $4, finished_at = $5::float8, image = NULL, "
                       "webhook_state = CASE WHEN webhook_url IS NULL THEN 0 ELSE 1 END "
                       "WHERE id = $6 AND owner = $7 AND status = 'PROCESSING'",
                {result, PgParam::bytes(result_image), num(int64_t(result_image.size())), metrics, num(now), id,
                 owner}) == 1;
  }

  bool fail(const std::string& id, const std::string& owner, const std::string& error, const std::string& metrics,
            double now) override {
    return exec(false, "UPDATE maskmaker_jobs SET status = 'FAILED', error = $1, metrics = $2, finished_at = $3::float8, "
                       "image = NULL, webhook_state = CASE WHEN webhook_url IS NULL THEN 0 ELSE 1 END "
                       "WHERE id = $4 AND owner = $5 AND status = 'PROCESSING'",
                {error, text_or_null(metrics), num(now), id, owner}) == 1;
  }

  std::optional<JobRow> get(const std::string& id, bool with_result) override {
    std::optional<JobRow> out;
    with(true, [&](PGconn* c) {
      PgResult r = run(c, with_result ? "SELECT id, key_id, status, error, result, metrics, created_at, started_at, "
                                        "finished_at, expired_at, attempts, webhook_url, result_image "
                                        "FROM maskmaker_jobs WHERE id = $1"
                                      : "SELECT id, key_id, status, error, result, metrics, created_at, started_at, "
                                        "finished_at, expired_at, attempts, webhook_url FROM maskmaker_jobs WHERE id = $1",
                       {id});
      const PGresult* p = r.get();
      if (service::pg_rows(p) == 0) return;
      JobRow j;
      j.id = service::pg_str(p, 0, 0);
      j.key_id = service::pg_opt_int(p, 0, 1);
      j.status = status_from(service::pg_str(p, 0, 2));
      j.error = service::pg_str(p, 0, 3);
      j.result = service::pg_str(p, 0, 4);
      j.metrics = service::pg_str(p, 0, 5);
      j.created_at = service::pg_real(p, 0, 6);
      j.started_at = service::pg_real(p, 0, 7);
      j.finished_at = service::pg_real(p, 0, 8);
      j.expired_at = service::pg_real(p, 0, 9);
      j.attempts = int(service::pg_real(p, 0, 10));
      j.webhook_url = service::pg_str(p, 0, 11);
      if (with_result) j.result_image = service::pg_bytes(p, 0, 12);
      out = std::move(j);
    });
    return out;
  }

  int64_t queue_position(const std::string& id) override {
    return scalar("SELECT COUNT(*) FROM maskmaker_jobs j, (SELECT created_at c, seq s FROM maskmaker_jobs "
                  "WHERE id = $1) me WHERE j.status = 'QUEUED' AND (j.created_at < me.c OR "
                  "(j.created_at = me.c AND j.seq < me.s))",
                  {id});
  }

  int64_t count(JobStatus status) override {
    return scalar("SELECT COUNT(*) FROM maskmaker_jobs WHERE status = $1", {job_status_name(status)});
  }

  std::vector<JobRow> processing() override {
    std::vector<JobRow> out;
    with(true, [&](PGconn* c) {
      out.clear();
      PgResult r = run(c, "SELECT id, owner, heartbeat_at, attempts FROM maskmaker_jobs WHERE status = 'PROCESSING'");
      for (int i = 0; i < service::pg_rows(r.get()); ++i) {
        JobRow j;
        j.status = JobStatus::Processing;
        j.id = service::pg_str(r.get(), i, 0);
        j.owner = service::pg_str(r.get(), i, 1);
        j.heartbeat_at = service::pg_real(r.get(), i, 2);
        j.attempts = int(service::pg_real(r.get(), i, 3));
        out.push_back(std::move(j));
      }
    });
    return out;
  }

  void heartbeat(const std::string& owner, const std::vector<std::string>& ids, double now) override {
    if (ids.empty()) return;
    with(true, [&](PGconn* c) {
      for (const std::string& id : ids)
        run(c, "UPDATE maskmaker_jobs SET heartbeat_at = $1::float8 WHERE id = $2 AND owner = $3 "
               "AND status = 'PROCESSING'",
            {num(now), id, owner});
    });
  }

  bool recover(const std::string& id, const std::string& owner, int max_attempts, const std::string& error,
               double now, bool& requeued) override {
    bool done = false;
    with(false, [&](PGconn* c) {
      // The CASEs read the row as it was: attempts < max_attempts decides both ways at once.
      PgResult r = run(c, "UPDATE maskmaker_jobs SET "
                          "status = CASE WHEN attempts < $1::int THEN 'QUEUED' ELSE 'FAILED' END, "
                          "error = CASE WHEN attempts < $1::int THEN NULL ELSE $2 END, "
                          "finished_at = CASE WHEN attempts < $1::int THEN NULL ELSE $3::float8 END, "
                          "image = CASE WHEN attempts < $1::int THEN image ELSE NULL END, "
                          "webhook_state = CASE WHEN attempts < $1::int OR webhook_url IS NULL THEN webhook_state "
                          "ELSE 1 END, "
                          "owner = CASE WHEN attempts < $1::int THEN NULL ELSE owner END, "
                          "started_at = CASE WHEN attempts < $1::int THEN NULL ELSE started_at END "
                          "WHERE id = $4 AND owner = $5 AND status = 'PROCESSING' RETURNING status",
                       {num(int64_t(max_attempts)), error, num(now), id, owner});
      if (service::pg_rows(r.get()) == 0) return;
      done = true;
      requeued = service::pg_str(r.get(), 0, 0) == "QUEUED";
      if (requeued) run(c, "SELECT pg_notify($1, '')", {kChannel});
    });
    return done;
  }

  int64_t expire_finished_before(double cutoff, double now) override {
    return locked(kSweepLock, false,
                  "UPDATE maskmaker_jobs SET status = 'EXPIRED', expired_at = $1::float8, request = NULL, image = NULL, "
                  "result = NULL, result_image = NULL, result_bytes = 0 "
                  "WHERE status IN ('COMPLETED', 'FAILED') AND finished_at < $2::float8",
                  {num(now), num(cutoff)});
  }

  int64_t evict_results_over(int64_t budget, double now) override {
    // Fair to the keys, as in SQLite (jobs_store.cpp): kept in order of the key's running total from its newest.
    return locked(kBudgetLock, true,
                  "UPDATE maskmaker_jobs SET status = 'EXPIRED', expired_at = $1::float8, request = NULL, image = NULL, "
                  "result = NULL, result_image = NULL, result_bytes = 0 WHERE id IN ("
                  "SELECT id FROM (SELECT id, SUM(result_bytes) OVER (ORDER BY key_total, finished_at DESC, seq DESC) "
                  "AS total FROM (SELECT id, seq, finished_at, result_bytes, SUM(result_bytes) OVER (PARTITION BY key_id "
                  "ORDER BY finished_at DESC, seq DESC) AS key_total FROM maskmaker_jobs WHERE status = 'COMPLETED') k) t "
                  "WHERE total > $2::bigint) AND status = 'COMPLETED'",
                  {num(now), num(budget)});
  }

  int64_t result_bytes_total() override {
    return scalar("SELECT COALESCE(SUM(result_bytes), 0) FROM maskmaker_jobs WHERE status = 'COMPLETED'", {});
  }

  void delete_expired_before(double cutoff) override {
    locked(kSweepLock, false, "DELETE FROM maskmaker_jobs WHERE status = 'EXPIRED' AND expired_at < $1::float8",
           {num(cutoff)});
  }

  std::optional<int64_t> take_refund(const std::string& id) override {
    std::optional<int64_t> key;
    // One statement, not repeated: a refund is taken by one caller only.
    with(false, [&](PGconn* c) {
      PgResult r = run(c, "UPDATE maskmaker_jobs SET charged = false WHERE id = $1 AND charged AND status = 'FAILED' "
                          "AND key_id IS NOT NULL RETURNING key_id",
                       {id});
      if (service::pg_rows(r.get()) == 1) key = service::pg_opt_int(r.get(), 0, 0);
    });
    return key;
  }

  std::vector<JobRow> pending_webhooks() override {
    std::vector<JobRow> out;
    with(true, [&](PGconn* c) {
      out.clear();
      PgResult r = run(c, "SELECT id, owner, webhook_url, webhook_owner, webhook_lease FROM maskmaker_jobs "
                          "WHERE webhook_state = 1 AND status IN ('COMPLETED', 'FAILED')");
      for (int i = 0; i < service::pg_rows(r.get()); ++i) {
        JobRow j;
        j.id = service::pg_str(r.get(), i, 0);
        j.owner = service::pg_str(r.get(), i, 1);
        j.webhook_url = service::pg_str(r.get(), i, 2);
        j.webhook_owner = service::pg_str(r.get(), i, 3);
        j.webhook_lease = service::pg_real(r.get(), i, 4);
        out.push_back(std::move(j));
      }
    });
    return out;
  }

  bool claim_webhook(const std::string& id, const std::string& owner, double now, double lease_s,
                     const std::string& dead_owner) override {
    return exec(false, "UPDATE maskmaker_jobs SET webhook_owner = $1, webhook_lease = $2::float8 WHERE id = $3 AND "
                       "webhook_state = 1 AND (webhook_owner IS NULL OR webhook_owner = $1 OR webhook_lease IS NULL "
                       "OR webhook_lease < $4::float8 OR webhook_owner = $5)",
                {owner, num(now + lease_s), id, num(now), dead_owner.empty() ? owner : dead_owner}) == 1;
  }

  void release_webhooks(const std::string& owner) override {
    exec(false, "UPDATE maskmaker_jobs SET webhook_lease = 0 WHERE webhook_owner = $1 AND webhook_state = 1", {owner});
  }

  void set_webhook(const std::string& id, WebhookState state) override {
    exec(false, "UPDATE maskmaker_jobs SET webhook_state = $1::int WHERE id = $2", {num(int64_t(state)), id});
  }

  void watch(std::function<void()> on_queued) override {
    if (listener_.joinable()) {
      listening_.store(false);
      listener_.join();
    }
    if (!on_queued) return;
    listening_.store(true);
    listener_ = std::thread([this, fn = std::move(on_queued)] { listen_loop(fn); });
  }

 private:
  static PgResult run(PGconn* c, const char* sql, const std::vector<PgParam>& params = {}) {
    return service::pg_run(c, kWhat, sql, params);
  }
  void with(bool retry, const std::function<void(PGconn*)>& fn) { pool_.with_conn(retry, fn); }
  int64_t exec(bool retry, const char* sql, const std::vector<PgParam>& params) {
    int64_t n = 0;
    with(retry, [&](PGconn* c) { n = service::pg_changed(run(c, sql, params).get()); });
    return n;
  }
  int64_t scalar(const char* sql, const std::vector<PgParam>& params) {
    int64_t n = 0;
    with(true, [&](PGconn* c) { n = std::stoll(service::pg_str(run(c, sql, params).get(), 0, 0)); });
    return n;
  }
  // One statement under an advisory transaction lock: waited for (`wait`), or skipped (0) while another holds it.
  int64_t locked(const char* lock, bool wait, const char* sql, const std::vector<PgParam>& params) {
    int64_t n = 0;
    with(false, [&](PGconn* c) {
      run(c, "BEGIN");
      if (wait) {
        run(c, "SELECT pg_advisory_xact_lock($1::bigint)", {lock});
      } else if (service::pg_str(run(c, "SELECT pg_try_advisory_xact_lock($1::bigint)", {lock}).get(), 0, 0) != "t") {
        run(c, "COMMIT");
        return;
      }
      n = service::pg_changed(run(c, sql, params).get());
      run(c, "COMMIT");
    });
    return n;
  }

  // One connection of its own LISTENs; each notification (and each reconnection, which may have missed some)
  // calls `fn`. Checks for a stop every 200 ms.
  void listen_loop(const std::function<void()>& fn) {
    PGconn* conn = nullptr;
    int backoff_ms = 250;
    while (listening_.load()) {
      if (!conn) {
        try {
          conn = pool_.connect_dedicated();
          run(conn, "LISTEN maskmaker_jobs");
          backoff_ms = 250;
          fn();
        } catch (const service::PgConnectionLost& e) {
          spdlog::warn("jobs database {}: cannot listen for new jobs: {}", pool_.redacted(), e.message);
        } catch (const std::exception& e) {
          spdlog::warn("jobs database {}: cannot listen for new jobs: {}", pool_.redacted(), e.what());
        }
        if (conn && PQstatus(conn) != CONNECTION_OK) PQfinish(conn), conn = nullptr;
        if (!conn) {
          for (int waited = 0; waited < backoff_ms && listening_.load(); waited += 50)
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
          backoff_ms = std::min(backoff_ms * 2, 5000);
          continue;
        }
      }
      pollfd p{PQsocket(conn), POLLIN, 0};
      if (poll(&p, 1, 200) <= 0) continue;
      if (!PQconsumeInput(conn)) {
        PQfinish(conn);
        conn = nullptr;
        continue;
      }
      bool any = false;
      while (PGnotify* n = PQnotifies(conn)) {
        any = true;
        PQfreemem(n);
      }
      if (any) fn();
    }
    PQfinish(conn);
  }

  service::PgPool pool_;
  std::atomic<bool> listening_{false};
  std::thread listener_;
};

}  // namespace

std::unique_ptr<JobStore> open_pg_job_store(const std::string& url, int connections) {
  return std::make_unique<PgJobStore>(url, connections);
}

}  // namespace maskmaker::server
