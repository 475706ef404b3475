// maskmaker serve: the hosted "Inpaint Mask Maker" API and the native API over HTTP.
#pragma once

#include <string>

#include "maskmaker/maskmaker.hpp"

namespace maskmaker::server {

struct ServerConfig {
  std::string host = "127.0.0.1";
  int port = 8080;
  PipelineOptions pipeline;
  int max_concurrent = 1;          // inferences at once (each uses `threads` intra-op threads)
  int queue_length = 32;           // requests waiting for a slot; beyond -> 503
  size_t max_body_bytes = 32 * 1024 * 1024;
  int64_t max_pixels = 50'000'000;
  long fetch_timeout_ms = 15000;
  size_t fetch_max_bytes = 20 * 1024 * 1024;
  int max_fetches = 16;             // image URLs being fetched at once for requests; beyond -> 503
  int max_fetches_per_key = 4;      // ... for one key's requests; beyond -> 429
  long request_timeout_ms = 60000;  // waiting for a slot past this -> 504
  std::string keys_db;              // empty = open access
  double rate_limit_per_minute = 0; // default per-key rate (0 = unlimited); a key's own rate overrides it
  double rate_burst = 10;
  bool allow_private_urls = false;
  std::string public_url;           // for absolute URLs in answers; default from Host
  // The HTTP front end's limits (http_server.hpp)
  size_t max_header_bytes = 16 * 1024;        // request line + headers; 431 above
  size_t max_header_count = 100;              // 431 above
  size_t max_connections = 512;               // open connections; 503 and close above
  size_t max_connections_per_client = 64;     // per client address; 0 = no cap
  long head_timeout_ms = 10000;               // the whole request head; 408 after
  long body_read_timeout_ms = 30000;          // each read of the body; 408 after
  long keep_alive_timeout_ms = 5000;          // idle keep-alive connections are closed after this
  size_t max_multipart_parts = 64;            // parts of a multipart/form-data body; 400 above
  // Asynchronous jobs (/v2, src/server/jobs.hpp)
  std::string jobs_db;              // empty: the PostgreSQL keys_db itself, beside a SQLite keys_db
                                    // ("keys.db" -> "keys-jobs.db"), else private_state_dir()
  int jobs_queue_length = 1000;     // jobs waiting; beyond -> 503
  int jobs_per_key = 32;            // unfinished jobs of one key; beyond -> 429
  int64_t jobs_bytes_per_key = int64_t(256) * 1024 * 1024;  // their inline images' bytes; beyond -> 429
  long jobs_webhook_timeout_ms = 10000;  // one webhook try, DNS included
  int64_t jobs_ttl_seconds = 3600;  // finished jobs are kept this long
  int64_t jobs_max_result_bytes = int64_t(512) * 1024 * 1024;  // results kept, in all (the oldest go first)
  double jobs_lease_seconds = 30;   // a running job whose process has not heartbeated this long is taken over
};

// Runs until SIGTERM/SIGINT; returns the process exit code.
int run_server(const ServerConfig& config);

}  // namespace maskmaker::server
