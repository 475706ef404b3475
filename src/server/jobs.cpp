#include "server/jobs.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "service/api.hpp"
#include "server/http_errors.hpp"
#include "server/jobs_impl.hpp"
#include "service/mask_service.hpp"
#include "service/keys_db.hpp"
#include "service/url_fetch.hpp"

namespace maskmaker::server {
namespace {

using namespace jobs_detail;

void answer_json(HttpResponse& res, int status, const json& body) {
  res.status = status;
  res.set_content(dump(body), "application/json");
}

// A host (and port) fit to put in a URL: no spaces, no slashes, no user info.
bool plausible_host(const std::string& h) {
  if (h.empty() || h.size() > 255) return false;
  return std::all_of(h.begin(), h.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_';
  });
}

std::string first_value(std::string v) {
  v = v.substr(0, v.find(','));
  auto b = v.find_first_not_of(" \t"), e = v.find_last_not_of(" \t");
  return b == std::string::npos ? "" : v.substr(b, e - b + 1);
}

}  // namespace

// ------------------------------------------------------------------------------------------------ paths

bool is_job_path(const std::string& path) {
  const std::string prefix = kRequestsPrefix;
  if (path.size() <= prefix.size() || path.compare(0, prefix.size(), prefix) != 0) return false;
  std::string rest = path.substr(prefix.size());
  size_t slash = rest.find('/');
  if (slash == std::string::npos) return true;
  return slash > 0 && rest.substr(slash) == "/status";
}

std::string job_route_label(const std::string& path) {
  if (path == "/v2/inpaint-mask-maker") return path;
  if (!is_job_path(path)) return "";
  return path.size() > 7 && path.compare(path.size() - 7, 7, "/status") == 0 ? "/v2/requests/{id}/status"
                                                                               : "/v2/requests/{id}";
}

std::string Jobs::database_path(const ServerConfig& config) {
  if (!config.jobs_db.empty()) return config.jobs_db;
  if (is_postgres_url(config.keys_db)) return config.keys_db;  // replicas sharing keys share the jobs too
  if (!config.keys_db.empty() && !is_postgres_url(config.keys_db)) {
    const std::string& k = config.keys_db;
    if (k.size() > 3 && k.compare(k.size() - 3, 3, ".db") == 0) return k.substr(0, k.size() - 3) + "-jobs.db";
    return k + "-jobs.db";
  }
  return private_state_dir() + "/jobs-" + std::to_string(config.port) + ".db";
}

// ------------------------------------------------------------------------------------------------ submit

using namespace jobs_detail;

void Jobs::Impl::submit(const HttpRequest& req, HttpResponse& res, MaskRequest request,
                        std::optional<int64_t> key_id) {
  const std::string id = enqueue(std::move(request), key_id);

  std::string base = base_url(req);
  answer_json(res, 200, {{"request_id", id},
                         {"status", "QUEUED"},
                         {"status_url", base + kRequestsPrefix + id + "/status"},
                         {"response_url", base + kRequestsPrefix + id}});
}

// The scheme and host the client reached us by: --public-url, else X-Forwarded-Proto/-Host (a proxy), else Host.
std::string Jobs::Impl::base_url(const HttpRequest& req) const {
  if (!config.public_url.empty()) {
    std::string b = config.public_url;
    while (!b.empty() && b.back() == '/') b.pop_back();
    return b;
  }
  std::string proto = first_value(req.get_header_value("X-Forwarded-Proto"));
  std::transform(proto.begin(), proto.end(), proto.begin(), ::tolower);
  if (proto != "http" && proto != "https") proto = "http";
  std::string host = first_value(req.get_header_value("X-Forwarded-Host"));
  if (!plausible_host(host)) host = req.get_header_value("Host");
  if (!plausible_host(host)) {
    host = config.host.find(':') != std::string::npos ? "[" + config.host + "]" : config.host;
    host += ":" + std::to_string(config.port);
  }
  return proto + "://" + host;
}

void Jobs::Impl::handle_get(const HttpRequest& req, HttpResponse& res, bool status_only) {
  const std::string id = req.matches.size() > 1 ? std::string(req.matches[1]) : std::string();
  try {
    std::optional<int64_t> key_id;
    if (auto record = ctx.masks->authenticate(req.get_header_value("x-api-key"))) key_id = record->id;
    const std::string shown = id.size() <= 64 ? id : id.substr(0, 64) + "...";
    auto row = store->get(id, !status_only);
    // Another key's job answers as an unknown one: ids cannot be probed.
    if (!row || row->key_id != key_id)
      throw Error(ErrorCode::NotFound, "no request with id '" + shown + "' (submit one with POST /v2/inpaint-mask-maker)");
    if (row->status == JobStatus::Expired)
      throw Error(ErrorCode::NotFound, "request '" + shown + "' expired: finished jobs are kept " +
                                           std::to_string(config.jobs_ttl_seconds) +
                                           " s (and results within the server's storage budget); submit it again");
    json body = status_only ? status_body(*row) : result_body(*row);
    int status = 200;
    if (row->status == JobStatus::Failed) status = 422;
    else if (!status_only && row->status != JobStatus::Completed) status = 202;
    if (row->status == JobStatus::Queued) body["queue_position"] = store->queue_position(id);
    if (status == 202) res.set_header("Retry-After", "1");
    answer_json(res, status, body);
  } catch (const Error& e) {
    const int status = http_status(e.code());
    if (status == 500) spdlog::error("job {}: {}", id.substr(0, 64), e.what());
    if (int seconds = retry_after_seconds(e.code())) res.set_header("Retry-After", std::to_string(seconds));
    set_json_error(res, status, status == 500 ? "internal error reading request '" + id.substr(0, 64) + "'" : e.what());
  } catch (const std::exception& e) {
    spdlog::error("job {}: reading it failed: {}", id, e.what());
    set_json_error(res, 500, "internal error reading request '" + id.substr(0, 64) + "'");
  }
}

Jobs::Jobs(const ServerConfig& config, JobsContext context) : impl_(std::make_unique<Impl>(config, std::move(context))) {
  impl_->start();
}

Jobs::~Jobs() { impl_->stop(); }

void Jobs::install(HttpServer& svr) {
  svr.Get(R"(/v2/requests/([^/]+)/status)", [this](const HttpRequest& req, HttpResponse& res) {
    impl_->handle_get(req, res, true);
  });
  svr.Get(R"(/v2/requests/([^/]+))", [this](const HttpRequest& req, HttpResponse& res) {
    impl_->handle_get(req, res, false);
  });
}

void Jobs::submit(const HttpRequest& req, HttpResponse& res, MaskRequest request, std::optional<int64_t> key_id) {
  impl_->submit(req, res, std::move(request), key_id);
}

}  // namespace maskmaker::server
