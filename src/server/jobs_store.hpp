// The asynchronous jobs' table (jobs.hpp): queued, running and finished jobs in one SQLite file, so that they
// survive a restart and processes on one machine that share the file share the queue. The database is the queue:
// a worker takes the oldest QUEUED row with one UPDATE (atomic across processes), and each PROCESSING row names
// its owner (host, pid, a random token) and carries a heartbeat, so that a job whose process died is found.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

struct sqlite3;

namespace maskmaker::server {

enum class JobStatus { Queued, Processing, Completed, Failed, Expired };
const char* job_status_name(JobStatus status);  // QUEUED, PROCESSING, COMPLETED, FAILED, EXPIRED

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
  double created_at = 0, started_at = 0, finished_at = 0, expired_at = 0;  // Unix seconds
};

class JobStore {
 public:
  // Opens (creates) the file now, or, with open_now false, at the first write: a server that never gets a job
  // leaves no file behind.
  JobStore(std::string path, bool open_now);
  ~JobStore();
  JobStore(const JobStore&) = delete;
  JobStore& operator=(const JobStore&) = delete;

  const std::string& path() const { return path_; }
  bool is_open();

  // Adds a QUEUED job unless `max_queued` jobs already wait: false then.
  bool insert(const JobRow& row, int64_t max_queued);
  // The oldest QUEUED job becomes PROCESSING, owned by `owner`, attempts + 1; with its request and image.
  std::optional<JobRow> claim(const std::string& owner, double now);
  // A job taken but not run (the server stops): QUEUED again, as if never taken.
  void release(const std::string& id, const std::string& owner);
  // PROCESSING -> COMPLETED / FAILED, only while `owner` still holds it; false otherwise. The input image is
  // dropped; the webhook becomes pending when the job has one.
  bool complete(const std::string& id, const std::string& owner, const std::string& result,
                const std::vector<uint8_t>& result_image, const std::string& metrics, double now);
  bool fail(const std::string& id, const std::string& owner, const std::string& error, const std::string& metrics,
            double now);

  std::optional<JobRow> get(const std::string& id, bool with_result);
  // Jobs queued before this one (0 = next).
  int64_t queue_position(const std::string& id);
  int64_t count(JobStatus status);

  // PROCESSING rows (id, owner, heartbeat_at, attempts): for finding jobs whose process died.
  std::vector<JobRow> processing();
  void heartbeat(const std::string& owner, double now);
  // A dead owner's PROCESSING job: QUEUED again (true) when it has been taken fewer than `max_attempts` times,
  // else FAILED with `error`. Only when `owner` still holds it.
  bool recover(const std::string& id, const std::string& owner, int max_attempts, const std::string& error,
               double now, bool& requeued);

  // Finished jobs older than `cutoff` become EXPIRED (their request and result dropped); returns how many.
  int64_t expire_finished_before(double cutoff, double now);
  // Oldest COMPLETED results become EXPIRED until the results total at most `budget` bytes; returns how many.
  int64_t evict_results_over(int64_t budget, double now);
  int64_t result_bytes_total();
  // EXPIRED rows older than `cutoff` are deleted (the id is then unknown).
  void delete_expired_before(double cutoff);

  // Finished jobs whose webhook is pending (id and owner).
  std::vector<JobRow> pending_webhooks();
  void set_webhook(const std::string& id, WebhookState state);

 private:
  void open_locked();
  void exec(const char* sql);
  std::string path_;
  sqlite3* db_ = nullptr;
  std::mutex mutex_;
};

}  // namespace maskmaker::server
