// Admission of asynchronous jobs (jobs_impl.hpp): what POST /v2/inpaint-mask-maker checks and stores.
#include <algorithm>
#include <cctype>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include "server/api.hpp"
#include "server/jobs_impl.hpp"
#include "server/url_fetch.hpp"

namespace maskmaker::server {
namespace {

bool is_http_url(const std::string& s) {
  std::string head = s.substr(0, std::min<size_t>(s.size(), 8));
  std::transform(head.begin(), head.end(), head.begin(), ::tolower);
  return head.rfind("http://", 0) == 0 || head.rfind("https://", 0) == 0;
}

}  // namespace

using namespace jobs_detail;

std::string Jobs::Impl::enqueue(const MaskRequest& request, std::vector<uint8_t> image,
                                std::optional<int64_t> key_id, const std::string& webhook_url) {
  json stored = {{"prompt", request.prompt},
                 {"invert_mask", request.params.invert_mask},
                 {"confidence_thresh", request.params.confidence_thresh},
                 {"iou_thresh", request.params.iou_thresh},
                 {"grow_mask", request.params.grow_mask},
                 {"return_mask", request.return_mask},
                 {"image", "inline"}};
  if (image.empty()) {
    if (is_http_url(request.image)) {
      check_url(request.image, ctx.fetch_limits);  // scheme, syntax, guard: 400 now; the fetch comes later
      stored["image"] = request.image;
    } else {
      image = resolve_image_bytes(request.image, ctx.fetch_limits);  // data URI or base64: 400/413 as /v1
    }
  }
  // What decoding would refuse from the header is a 400 now rather than a FAILED job.
  if (!image.empty()) check_image_header(image, DecodeLimits{config.max_pixels});
  if (!webhook_url.empty())
    guard_url(webhook_url, config.allow_private_urls,
              Clock::now() + std::chrono::milliseconds(ctx.fetch_limits.connect_timeout_ms), webhook_url_role());

  JobRow row;
  row.id = random_hex(16);
  row.key_id = key_id;
  row.request = dump(stored);
  row.image = std::move(image);
  row.webhook_url = webhook_url;
  row.created_at = unix_now();
  if (!store->insert(row, config.jobs_queue_length))
    throw Error(ErrorCode::Overloaded, "the job queue is full (" + std::to_string(config.jobs_queue_length) +
                                           " jobs waiting): retry shortly");
  submitted->Increment();
  queued_gauge->Increment();
  notify_workers();
  return row.id;
}

}  // namespace maskmaker::server
