// Admission of asynchronous jobs (jobs_impl.hpp): what POST /v2/inpaint-mask-maker checks and stores.
#include <algorithm>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include <spdlog/spdlog.h>

#include "service/api.hpp"
#include "server/jobs_impl.hpp"
#include "service/mask_service.hpp"
#include "service/keys_db.hpp"
#include "service/url_fetch.hpp"

namespace maskmaker::server {

using namespace jobs_detail;

std::string Jobs::Impl::enqueue(MaskRequest request, std::optional<int64_t> key_id) {
  std::vector<uint8_t> image = std::move(request.upload);
  request.upload.clear();
  check_image_size(image.size(), ctx.masks->config().fetch);
  if (image.empty()) {
    if (is_image_url(request.image)) {
      check_url(request.image, ctx.masks->config().fetch);  // scheme, syntax, guard: 400 now; the fetch comes later
    } else {
      image = ctx.masks->resolve_image(request);  // data URI or base64: 400/413 as /v1
    }
  }
  // What decoding would refuse from the header is a 400 now rather than a FAILED job.
  if (!image.empty()) check_image_header(image, DecodeLimits{config.max_pixels});
  const std::string webhook_url = request.webhook_url;
  if (!webhook_url.empty())
    guard_url(webhook_url, config.allow_private_urls,
              Clock::now() + std::chrono::milliseconds(ctx.masks->config().fetch.connect_timeout_ms), webhook_url_role());
  json stored = to_json(request);  // the job is the request itself; an inline image is kept beside it
  if (!image.empty()) stored["image"] = "inline";

  JobRow row;
  row.id = random_hex(16);
  row.key_id = key_id;
  row.request = dump(stored);
  row.input_bytes = int64_t(image.size());
  row.image = std::move(image);
  row.webhook_url = webhook_url;
  row.created_at = unix_now();
  if (row.key_id && row.input_bytes > config.jobs_bytes_per_key)  // could never be queued: not a retry matter
    throw Error(ErrorCode::PayloadTooLarge, "the image is " + std::to_string(row.input_bytes) +
                                                " bytes, more than one key's queued jobs may hold (" +
                                                std::to_string(config.jobs_bytes_per_key) + " bytes)", "image");

  // The credit is taken now, so that a key cannot queue more work than it can pay for; a job that fails gives it
  // back (refund_failed).
  if (row.key_id  && ctx.masks->keys()) {
    std::optional<int64_t> remaining;
    if (!ctx.masks->keys()->consume(*row.key_id, remaining))
      throw Error(ErrorCode::NoCredits, "this API key has no credits left");
    row.charged = true;
  }
  InsertResult result;
  try {
    QueueLimits limits;
    limits.max_queued = config.jobs_queue_length;
    limits.per_key_jobs = config.jobs_per_key;
    limits.per_key_bytes = config.jobs_bytes_per_key;
    result = store->insert(row, limits);
  } catch (...) {
    if (row.charged) give_back_credit(*row.key_id, row.id);
    throw;
  }
  if (result != InsertResult::Queued && row.charged) give_back_credit(*row.key_id, row.id);
  switch (result) {
    case InsertResult::Queued: break;
    case InsertResult::QueueFull:
      throw Error(ErrorCode::Overloaded, "the job queue is full (" + std::to_string(config.jobs_queue_length) +
                                             " jobs waiting): retry shortly");
    case InsertResult::KeyJobsFull:
      throw Error(ErrorCode::RateLimited, "this API key has " + std::to_string(config.jobs_per_key) +
                                              " unfinished jobs, the most it may have: submit more when some finish");
    case InsertResult::KeyBytesFull:
      throw Error(ErrorCode::RateLimited, "this API key's unfinished jobs hold images of up to " +
                                              std::to_string(config.jobs_bytes_per_key) +
                                              " bytes in all: submit more when some finish");
  }
  submitted->Increment();
  queued_gauge->Increment();
  notify_workers();
  return row.id;
}

void Jobs::Impl::give_back_credit(int64_t key_id, const std::string& job_id) {
  try {
    if (ctx.masks->keys()) ctx.masks->keys()->refund(key_id);
  } catch (const std::exception& e) {  // the key keeps one credit less: logged, to be put right by hand
    spdlog::error("job id={}: giving back the credit of key {} failed: {}", job_id, key_id, e.what());
  }
}

void Jobs::Impl::refund_failed(const std::string& job_id) {
  try {
    if (auto key = store->take_refund(job_id)) {
      give_back_credit(*key, job_id);
      refunded->Increment();
    }
  } catch (const std::exception& e) {
    spdlog::error("job id={}: giving back its credit failed: {}", job_id, e.what());
  }
}

}  // namespace maskmaker::server
