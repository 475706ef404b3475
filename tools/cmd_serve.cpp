// maskmaker serve and maskmaker keys: the HTTP service and its key database.
#include <iomanip>
#include <iostream>

#include <spdlog/spdlog.h>

#include "commands.hpp"
#include "maskmaker/keys.hpp"
#include "maskmaker/server.hpp"

namespace maskmaker::cli {

void register_serve(CLI::App& root, CommonOptions& common) {
  auto cfg = std::make_shared<server::ServerConfig>();
  CLI::App* serve = root.add_subcommand("serve", "Serve the Inpaint Mask Maker API, the native API and the web page");
  serve->add_option("--host", cfg->host, "Address to listen on (0.0.0.0 for every interface)")
      ->envname("MASKMAKER_HOST")->capture_default_str();
  serve->add_option("--port", cfg->port, "TCP port")->envname("MASKMAKER_PORT")->check(CLI::Range(0, 65535))
      ->capture_default_str();
  add_common_options(*serve, common);
  serve->add_option("--max-concurrent", cfg->max_concurrent, "Inferences running at once")
      ->envname("MASKMAKER_MAX_CONCURRENT")->check(CLI::Range(1, 256))->capture_default_str();
  serve->add_option("--queue-length", cfg->queue_length, "Requests waiting for a slot before 503")
      ->envname("MASKMAKER_QUEUE_LENGTH")->check(CLI::Range(0, 100000))->capture_default_str();
  serve->add_option("--max-body-bytes", cfg->max_body_bytes, "Largest request body (413 above)")
      ->envname("MASKMAKER_MAX_BODY_BYTES")->capture_default_str();
  serve->add_option("--max-pixels", cfg->max_pixels, "Largest image in pixels, read from its header (400 above)")
      ->envname("MASKMAKER_MAX_PIXELS")->capture_default_str();
  serve->add_option("--fetch-timeout-ms", cfg->fetch_timeout_ms, "Deadline for fetching an image URL (504 after)")
      ->envname("MASKMAKER_FETCH_TIMEOUT_MS")->capture_default_str();
  serve->add_option("--fetch-max-bytes", cfg->fetch_max_bytes, "Largest image fetched from a URL (413 above)")
      ->envname("MASKMAKER_FETCH_MAX_BYTES")->capture_default_str();
  serve->add_option("--max-fetches", cfg->max_fetches,
                    "Image URLs being fetched at once for requests (503 above): slow hosts cannot hold every worker")
      ->envname("MASKMAKER_MAX_FETCHES")->check(CLI::Range(1, 4096))->capture_default_str();
  serve->add_option("--max-fetches-per-key", cfg->max_fetches_per_key,
                    "Image URLs being fetched at once for one key's requests (429 above)")
      ->envname("MASKMAKER_MAX_FETCHES_PER_KEY")->check(CLI::Range(1, 4096))->capture_default_str();
  serve->add_option("--request-timeout-ms", cfg->request_timeout_ms, "Longest wait for a free worker (504 after)")
      ->envname("MASKMAKER_REQUEST_TIMEOUT_MS")->capture_default_str();
  serve->add_option("--max-header-bytes", cfg->max_header_bytes, "Largest request line + headers (431 above)")
      ->envname("MASKMAKER_MAX_HEADER_BYTES")->check(CLI::Range(size_t(1024), size_t(1) << 20))->capture_default_str();
  serve->add_option("--max-header-count", cfg->max_header_count, "Most request headers (431 above)")
      ->envname("MASKMAKER_MAX_HEADER_COUNT")->check(CLI::Range(size_t(8), size_t(10000)))->capture_default_str();
  serve->add_option("--max-connections", cfg->max_connections, "Open connections at once (503 and close above)")
      ->envname("MASKMAKER_MAX_CONNECTIONS")->check(CLI::Range(size_t(1), size_t(1000000)))->capture_default_str();
  serve->add_option("--max-connections-per-client", cfg->max_connections_per_client,
                    "Open connections from one client address (0 = no cap; raise it behind a proxy)")
      ->envname("MASKMAKER_MAX_CONNECTIONS_PER_CLIENT")->capture_default_str();
  serve->add_option("--head-timeout-ms", cfg->head_timeout_ms, "Deadline for a whole request head (408 after)")
      ->envname("MASKMAKER_HEAD_TIMEOUT_MS")->check(CLI::Range(100L, 3600000L))->capture_default_str();
  serve->add_option("--body-timeout-ms", cfg->body_read_timeout_ms, "Deadline for each read of a request body (408 after)")
      ->envname("MASKMAKER_BODY_TIMEOUT_MS")->check(CLI::Range(100L, 3600000L))->capture_default_str();
  serve->add_option("--keep-alive-timeout-ms", cfg->keep_alive_timeout_ms, "Idle keep-alive connections are closed after this")
      ->envname("MASKMAKER_KEEP_ALIVE_TIMEOUT_MS")->check(CLI::Range(100L, 3600000L))->capture_default_str();
  serve->add_option("--max-multipart-parts", cfg->max_multipart_parts, "Most parts in a multipart/form-data body (400 above)")
      ->envname("MASKMAKER_MAX_MULTIPART_PARTS")->check(CLI::Range(size_t(1), size_t(10000)))->capture_default_str();
  serve->add_option("--keys-db,--db", cfg->keys_db,
                    "Key database: a SQLite file, or a postgresql:// URL shared by replicas (see maskmaker keys); "
                    "unset = open access")
      ->envname("MASKMAKER_KEYS_DB");
  serve->add_option("--rate-limit", cfg->rate_limit_per_minute, "Default requests per minute per key (0 = none)")
      ->envname("MASKMAKER_RATE_LIMIT")->capture_default_str();
  serve->add_option("--rate-burst", cfg->rate_burst, "Requests a key may send at once before the rate applies")
      ->envname("MASKMAKER_RATE_BURST")->capture_default_str();
  serve->add_flag("--allow-private-urls", cfg->allow_private_urls,
                  "Allow image URLs on loopback, private and link-local addresses")
      ->envname("MASKMAKER_ALLOW_PRIVATE_URLS");
  serve->add_option("--image-cache", cfg->pipeline.image_cache_entries, "Image embeddings kept (about 4 MiB each); 0 also turns off the instance-mask cache (64 MiB)")
      ->envname("MASKMAKER_IMAGE_CACHE")->capture_default_str();
  serve->add_option("--public-url", cfg->public_url,
                    "Base URL of this server for the absolute URLs in answers (status_url), e.g. "
                    "https://masks.example.com; default: from the request's Host (and X-Forwarded-Proto/-Host)")
      ->envname("MASKMAKER_PUBLIC_URL");
  serve->add_option("--jobs-db", cfg->jobs_db,
                    "Store of the asynchronous jobs (/v2): a SQLite file (one machine), or a postgresql:// URL shared "
                    "by replicas (any replica takes and answers for any job). Default: a PostgreSQL --keys-db itself; "
                    "beside a SQLite --keys-db (keys.db -> keys-jobs.db); else jobs-<port>.db in "
                    "$XDG_STATE_HOME/maskmaker (~/.local/state/maskmaker)")
      ->envname("MASKMAKER_JOBS_DB");
  serve->add_option("--jobs-queue-length", cfg->jobs_queue_length, "Asynchronous jobs waiting before 503")
      ->envname("MASKMAKER_JOBS_QUEUE_LENGTH")->check(CLI::Range(0, 10000000))->capture_default_str();
  serve->add_option("--jobs-per-key", cfg->jobs_per_key,
                    "Unfinished asynchronous jobs (queued or running) one API key may have before 429")
      ->envname("MASKMAKER_JOBS_PER_KEY")->check(CLI::Range(1, 10000000))->capture_default_str();
  serve->add_option("--jobs-bytes-per-key", cfg->jobs_bytes_per_key,
                    "Bytes of inline images one API key's unfinished jobs may hold before 429")
      ->envname("MASKMAKER_JOBS_BYTES_PER_KEY")->check(CLI::Range(int64_t(1), INT64_MAX))->capture_default_str();
  serve->add_option("--jobs-webhook-timeout-ms", cfg->jobs_webhook_timeout_ms,
                    "Time for one webhook try, resolving its host included")
      ->envname("MASKMAKER_JOBS_WEBHOOK_TIMEOUT_MS")->check(CLI::Range(100L, 600000L))->capture_default_str();
  serve->add_option("--jobs-ttl-seconds", cfg->jobs_ttl_seconds, "How long finished jobs and their results are kept")
      ->envname("MASKMAKER_JOBS_TTL_SECONDS")->check(CLI::Range(int64_t(1), int64_t(365) * 86400))->capture_default_str();
  serve->add_option("--jobs-max-result-bytes", cfg->jobs_max_result_bytes,
                    "Results of finished jobs kept, in bytes in all (the oldest expire first)")
      ->envname("MASKMAKER_JOBS_MAX_RESULT_BYTES")->check(CLI::Range(int64_t(1), INT64_MAX))->capture_default_str();
  serve->add_option("--jobs-lease-s", cfg->jobs_lease_seconds,
                    "A running job whose server has not heartbeated for this long (it died, on any machine) is "
                    "taken over by another: queued again once, then FAILED")
      ->envname("MASKMAKER_JOBS_LEASE_S")->check(CLI::Range(1.0, 3600.0))->capture_default_str();
  serve->callback([cfg, &common] {
    cfg->pipeline.models_dir = common.models;
    cfg->pipeline.device = common.device;
    cfg->pipeline.threads = common.threads;
    exit_code() = server::run_server(*cfg);
  });
}

namespace {

void print_key(const service::KeyRecord& k) {
  // setw counts bytes: "…" is 3 bytes and 1 column, so the 10-column prefix field is 12 wide.
  std::cout << std::left << std::setw(5) << k.id << std::setw(20) << k.name << std::setw(12) << (k.prefix + "…")
            << std::setw(12) << (k.credits ? std::to_string(*k.credits) : "unlimited") << std::setw(8) << k.used
            << std::setw(10) << (k.disabled ? "disabled" : "active")
            << std::setw(10) << (k.rate_per_minute ? std::to_string(*k.rate_per_minute) + "/min" : "default")
            << k.endpoints << "\n";
}

service::KeyRecord must_find(service::KeyStore& db, const std::string& which) {
  auto k = db.find(which);
  if (!k) throw Error(ErrorCode::InvalidArgument, "no key with id or name '" + which + "'");
  return *k;
}

}  // namespace

void register_keys(CLI::App& root) {
  struct KeysOptions {
    std::string db = "maskmaker-keys.db";
    std::string name, which, endpoints = "*";
    int64_t credits = -1, rate = -1, amount = 0;
    bool unlimited = false;
  };
  auto o = std::make_shared<KeysOptions>();
  CLI::App* keys = root.add_subcommand("keys", "Manage API keys and credits (SQLite or PostgreSQL)");
  keys->require_subcommand(1);
  keys->add_option("--db,--keys-db", o->db, "Key database: a SQLite file or a postgresql:// URL")
      ->envname("MASKMAKER_KEYS_DB")->capture_default_str();

  CLI::App* add = keys->add_subcommand("add", "Create a key and print it (shown once)");
  add->add_option("name", o->name, "A name for people (who or what uses the key)")->required();
  add->add_option("--credits", o->credits, "Calls the key may make (default: unlimited)")->check(CLI::Range(int64_t(0), INT64_MAX));
  add->add_option("--rate", o->rate, "Requests per minute (default: the server's --rate-limit)")->check(CLI::Range(int64_t(1), INT64_MAX));
  add->add_option("--endpoints", o->endpoints, "Comma-separated paths the key may call, or *")->capture_default_str();
  add->callback([o] {
    auto store = service::open_key_store(o->db);
    auto& db = *store;
    auto [key, rec] = db.add(o->name, o->credits >= 0 ? std::optional<int64_t>(o->credits) : std::nullopt,
                             o->rate > 0 ? std::optional<int64_t>(o->rate) : std::nullopt, o->endpoints);
    std::cout << key << "\n";
    std::cerr << "key " << rec.id << " '" << rec.name << "' created; store it now, it is not shown again\n";
  });

  CLI::App* list = keys->add_subcommand("list", "List keys (never the keys themselves)");
  list->callback([o] {
    auto store = service::open_key_store(o->db);
    auto& db = *store;
    auto all = db.list();
    std::cout << std::left << std::setw(5) << "id" << std::setw(20) << "name" << std::setw(10) << "prefix"
              << std::setw(12) << "credits" << std::setw(8) << "used" << std::setw(10) << "state" << std::setw(10)
              << "rate" << "endpoints\n";
    for (const auto& k : all) print_key(k);
  });

  CLI::App* disable = keys->add_subcommand("disable", "Disable a key (403 from then on)");
  disable->add_option("key", o->which, "Key id or name")->required();
  disable->callback([o] {
    auto store = service::open_key_store(o->db);
    auto& db = *store;
    auto k = must_find(db, o->which);
    db.set_disabled(k.id, true);
    std::cerr << "key " << k.id << " '" << k.name << "' disabled\n";
  });
  CLI::App* enable = keys->add_subcommand("enable", "Enable a disabled key");
  enable->add_option("key", o->which, "Key id or name")->required();
  enable->callback([o] {
    auto store = service::open_key_store(o->db);
    auto& db = *store;
    auto k = must_find(db, o->which);
    db.set_disabled(k.id, false);
    std::cerr << "key " << k.id << " '" << k.name << "' enabled\n";
  });

  CLI::App* credit = keys->add_subcommand("credit", "Add credits to a key (negative removes), or make it unlimited");
  credit->add_option("key", o->which, "Key id or name")->required();
  credit->add_option("amount", o->amount, "Credits to add");
  credit->add_flag("--unlimited", o->unlimited, "No credit limit");
  credit->callback([o] {
    auto store = service::open_key_store(o->db);
    auto& db = *store;
    auto k = must_find(db, o->which);
    if (o->unlimited) {
      db.set_unlimited(k.id);
      std::cout << "unlimited\n";
      return;
    }
    auto balance = db.add_credits(k.id, o->amount);
    std::cout << (balance ? std::to_string(*balance) : "?") << "\n";
  });
}

}  // namespace maskmaker::cli
