// The asynchronous jobs' table (jobs.hpp) behind one interface, JobStore; its SQLite backend keeps queued, running
// and finished jobs in one file, so that they survive a restart and processes on one machine that share the file
// share the queue. The database is the queue: a worker takes a QUEUED row with one UPDATE (atomic across
// processes), and each PROCESSING row names its owner (host, pid, a random token) and carries a heartbeat, so that
// a job whose process died is found.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

struct sqlite3;

namespace maskmaker::server {

enum class JobStatus { Queued, Processing, Completed, Failed, Expired };
const char* job_status_name(JobStatus status);  // QUEUED, PROCESSING, COMPLETED, FAILED, EXPIRED

// The default folder of the jobs database, the first that can be made of: $STATE_DIRECTORY (systemd),
// $XDG_STATE_HOME/maskmaker (else ~/.local/state/maskmaker), $TMPDIR/maskmaker-<uid> (/tmp); created 0700, and
// refused (Error) when it belongs to another user or others may write to it.
std::string private_state_dir();
// Creates `path` 0600 when it is not there (SQLite gives its -wal and -shm files the same mode); refuses (Error) one
// that is not a regular file or belongs to another user.
void prepare_private_file(const std::string& path);

// Webhook delivery state of a job.
enum class WebhookState { None = 0, Pending = 1, Delivered = 2, GaveUp = 3 };

struct JobRow {
  std::string id;
  std::optional<int64_t> key_id;   // the key that submitted it (nullopt: open access)
  JobStatus status = JobStatus::Queued;
  std::string request;             // the request's fields as JSON (its image only when that is a URL)
  std::vector<uint8_t> image;      // the input image's bytes, when it was given inline
  std::string webhook_url;
  WebhookState webhook = WebhookState::None;
  int attempts = 0;                // times a worker has taken it
  std::string owner;               // the process that runs (or ran) it
  double heartbeat_at = 0;
  std::string error;               // FAILED: why
  std::string result;              // COMPLETED: JSON (content_type, detections, unmatched, instances)
  std::vector<uint8_t> result_image;
  std::string metrics;             // JSON: times
  int64_t input_bytes = 0;         // the inline image's size (counted against the key's --jobs-bytes-per-key)
  bool charged = false;            // a credit was taken at submit (given back if the job fails)
  std::string webhook_owner;       // the process that holds the webhook's delivery, until webhook_lease
  double webhook_lease = 0;
  double created_at = 0, started_at = 0, finished_at = 0, expired_at = 0;  // Unix seconds
};

// What insert() may refuse: the queue (all keys) or one key's share of it is full.
enum class InsertResult { Queued, QueueFull, KeyJobsFull, KeyBytesFull };
struct QueueLimits {
  int64_t max_queued = 1000;      // QUEUED jobs, all keys
  int64_t per_key_jobs = 32;      // unfinished (QUEUED, PROCESSING) jobs of one key
  int64_t per_key_bytes = 256 << 20;  // their inline images' bytes
};

// Every database failure throws Error: StorageUnavailable (503, logged) for what passes (busy, locked, disk full,
// I/O error, read-only, cannot open), Internal otherwise. The jobs use only this interface: the PostgreSQL backend,
// shared by several machines (jobs_store_pg.cpp), implements the same contract.
class JobStore {
 public:
  virtual ~JobStore() = default;

  // Where the jobs are, for logs.
  virtual std::string describe() const = 0;
  virtual bool is_open() = 0;

  // Adds a QUEUED job unless a limit is reached (checked and inserted in one transaction, exact across processes).
  // Limits per key apply to jobs with a key_id.
  virtual InsertResult insert(const JobRow& row, const QueueLimits& limits) = 0;
  // A QUEUED job becomes PROCESSING, owned by `owner`, attempts + 1; with its request and image. Round robin between
  // keys: the key whose last job started longest ago (or never) goes first, then its oldest job, so that one key's
  // backlog (or its jobs whose image URLs stall) cannot hold every other key's jobs behind it.
  virtual std::optional<JobRow> claim(const std::string& owner, double now) = 0;
  // A job taken but not run (the server stops): QUEUED again, as if never taken.
  virtual void release(const std::string& id, const std::string& owner) = 0;
  // PROCESSING -> COMPLETED / FAILED, only while `owner` still holds it; false otherwise. The input image is
  // dropped; the webhook becomes pending when the job has one.
  virtual bool complete(const std::string& id, const std::string& owner, const std::string& result,
                        const std::vector<uint8_t>& result_image, const std::string& metrics, double now) = 0;
  virtual bool fail(const std::string& id, const std::string& owner, const std::string& error,
                    const std::string& metrics, double now) = 0;

  virtual std::optional<JobRow> get(const std::string& id, bool with_result) = 0;
  // Jobs queued before this one (0 = next).
  virtual int64_t queue_position(const std::string& id) = 0;
  virtual int64_t count(JobStatus status) = 0;

  // PROCESSING rows (id, owner, heartbeat_at, attempts): for finding jobs whose process died.
  virtual std::vector<JobRow> processing() = 0;
  // The jobs `owner` runs (`ids`): heartbeat_at = now. A PROCESSING row of `owner` that it does not run (its
  // finish was lost with the database) is left to go stale, and so is recovered.
  virtual void heartbeat(const std::string& owner, const std::vector<std::string>& ids, double now) = 0;
  // A dead owner's PROCESSING job: QUEUED again (true) when it has been taken fewer than `max_attempts` times,
  // else FAILED with `error`. Only when `owner` still holds it.
  virtual bool recover(const std::string& id, const std::string& owner, int max_attempts, const std::string& error,
                       double now, bool& requeued) = 0;

  // Finished jobs older than `cutoff` become EXPIRED (their request and result dropped); returns how many.
  virtual int64_t expire_finished_before(double cutoff, double now) = 0;
  // Oldest COMPLETED results become EXPIRED until the results total at most `budget` bytes; returns how many.
  virtual int64_t evict_results_over(int64_t budget, double now) = 0;
  virtual int64_t result_bytes_total() = 0;
  // EXPIRED rows older than `cutoff` are deleted (the id is then unknown).
  virtual void delete_expired_before(double cutoff) = 0;

  // A FAILED job's credit, once: the key to refund (and the job is no longer charged), or nullopt.
  virtual std::optional<int64_t> take_refund(const std::string& id) = 0;

  // Finished jobs whose webhook is pending (id, owner, webhook_url, webhook_owner, webhook_lease).
  virtual std::vector<JobRow> pending_webhooks() = 0;
  // Takes (or extends) the delivery of a pending webhook until now + lease_s: true when `owner` holds it now, that
  // is when nobody did, `owner` did, the holder's lease ran out, or the holder is `dead_owner`.
  virtual bool claim_webhook(const std::string& id, const std::string& owner, double now, double lease_s,
                             const std::string& dead_owner = "") = 0;
  // The deliveries `owner` holds and has not made: free for anyone at once (a clean stop).
  virtual void release_webhooks(const std::string& owner) = 0;
  virtual void set_webhook(const std::string& id, WebhookState state) = 0;

  // Calls `on_queued`, from a thread of the store, when another process may have queued a job (PostgreSQL:
  // LISTEN/NOTIFY); an empty function stops that. A backend without notifications does nothing: workers poll.
  virtual void watch(std::function<void()> on_queued) { (void)on_queued; }
};

// The SQLite backend: one file, shared by the processes of one machine. The file is created 0600; one owned by
// another user is refused.
class SqliteJobStore final : public JobStore {
 public:
  // Opens (creates) the file now, or, with open_now false, at the first write: a server that never gets a job
  // leaves no file behind.
  SqliteJobStore(std::string path, bool open_now);
  ~SqliteJobStore() override;
  SqliteJobStore(const SqliteJobStore&) = delete;
  SqliteJobStore& operator=(const SqliteJobStore&) = delete;

  std::string describe() const override { return path_; }
  bool is_open() override;
  InsertResult insert(const JobRow& row, const QueueLimits& limits) override;
  std::optional<JobRow> claim(const std::string& owner, double now) override;
  void release(const std::string& id, const std::string& owner) override;
  bool complete(const std::string& id, const std::string& owner, const std::string& result,
                const std::vector<uint8_t>& result_image, const std::string& metrics, double now) override;
  bool fail(const std::string& id, const std::string& owner, const std::string& error, const std::string& metrics,
            double now) override;
  std::optional<JobRow> get(const std::string& id, bool with_result) override;
  int64_t queue_position(const std::string& id) override;
  int64_t count(JobStatus status) override;
  std::vector<JobRow> processing() override;
  void heartbeat(const std::string& owner, const std::vector<std::string>& ids, double now) override;
  bool recover(const std::string& id, const std::string& owner, int max_attempts, const std::string& error,
               double now, bool& requeued) override;
  int64_t expire_finished_before(double cutoff, double now) override;
  int64_t evict_results_over(int64_t budget, double now) override;
  int64_t result_bytes_total() override;
  void delete_expired_before(double cutoff) override;
  std::optional<int64_t> take_refund(const std::string& id) override;
  std::vector<JobRow> pending_webhooks() override;
  bool claim_webhook(const std::string& id, const std::string& owner, double now, double lease_s,
                     const std::string& dead_owner) override;
  void release_webhooks(const std::string& owner) override;
  void set_webhook(const std::string& id, WebhookState state) override;

 private:
  void open_locked();
  void exec(const char* sql);
  std::string path_;
  sqlite3* db_ = nullptr;
  std::mutex mutex_;
};

// The PostgreSQL backend (jobs_store_pg.cpp): one table, maskmaker_jobs, shared by every replica; at most
// `connections` pooled connections, plus one that listens for new jobs while watch() is on.
std::unique_ptr<JobStore> open_pg_job_store(const std::string& url, int connections);

// A postgresql:// (or postgres://) URL opens the PostgreSQL backend (connecting lazily); anything else is a
// SQLite file.
std::unique_ptr<JobStore> open_job_store(const std::string& path_or_url, bool open_now, int connections = 4);

}  // namespace maskmaker::server
