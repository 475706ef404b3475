#include "service/mask_service.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include <spdlog/spdlog.h>

#include "runtime/ascii.hpp"

namespace maskmaker::service {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// A key's endpoint allow-list: "*" or comma-separated paths (spaces around them ignored).
bool endpoint_allowed(const std::string& allow_list, const std::string& endpoint) {
  if (rt::trim_blanks(allow_list) == "*") return true;
  std::stringstream ss(allow_list);
  for (std::string p; std::getline(ss, p, ',');)
    if (rt::trim_blanks(p) == endpoint) return true;
  return false;
}

// The rendered answer as bytes to send; a JSON answer also reports its inference time.
void serialise(ApiResponse rendered, double infer_ms, MaskAnswer& out) {
  if (rendered.json_body) {
    (*rendered.json_body)["infer_time_ms"] = std::round(infer_ms * 10) / 10;
    out.body = rendered.json_body->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    out.content_type = "application/json";
  } else {
    out.body.assign(rendered.bytes.begin(), rendered.bytes.end());
    out.content_type = rendered.content_type;
  }
}

// cache_scope: the caller's key, so that tenants never share cache entries (a cache hit would tell one key that
// another sent the same image).
MaskAnswer render(Pipeline& pipeline, const MaskRequest& request, const DecodedImage& image, double decode_ms,
                  const std::string& cache_scope = {}) {
  MaskAnswer out;
  out.result = pipeline.run(image, request.prompt, request.params, cache_scope);
  out.result.times.decode_ms = decode_ms;
  auto t = Clock::now();
  ApiResponse rendered;
  if (request.endpoint == Endpoint::Native) {
    rendered = native_response(image, out.result, request);
  } else if (request.endpoint == Endpoint::Cli) {  // the image alone, as a file
    RenderedImage file = render_image(image, out.result, request.output);
    rendered.bytes = std::move(file.bytes);
    rendered.content_type = file.content_type;
  } else {
    rendered = compatible_response(image, out.result, request);
  }
  out.infer_ms = out.result.times.total_ms();  // output_ms not yet counted: not part of the inference time
  serialise(std::move(rendered), out.infer_ms, out);
  out.result.times.output_ms = ms_since(t);
  out.detections = int(positive_count(out.result));
  return out;
}

}  // namespace

MaskService::MaskService(ServiceConfig config, KeyStore* keys, Admission& admission, std::function<Pipeline*()> pipeline)
    : config_(std::move(config)),
      keys_(keys),
      admission_(admission),
      pipeline_(std::move(pipeline)),
      fetches_(config_.max_fetches, config_.max_fetches_per_key),
      inference_(admission.max_active()) {}

CreditHold::CreditHold(CreditHolds& holds, int64_t key_id, int64_t credits) : holds_(holds), key_id_(key_id) {
  std::lock_guard lock(holds_.mutex);
  int64_t& n = holds_.in_flight[key_id_];
  if (n >= credits) {
    if (n == 0) holds_.in_flight.erase(key_id_);
    throw Error(ErrorCode::NoCredits, "this API key has no credits left for another request while " +
                                          std::to_string(n) + " are running");
  }
  ++n;
}

CreditHold::~CreditHold() {
  std::lock_guard lock(holds_.mutex);
  if (--holds_.in_flight[key_id_] <= 0) holds_.in_flight.erase(key_id_);
}

std::optional<KeyRecord> MaskService::authenticate(const std::string& api_key) const {
  if (!keys_) return std::nullopt;
  if (api_key.empty()) throw Error(ErrorCode::Unauthorized, "missing x-api-key header");
  auto record = keys_->find_by_key(api_key);
  if (!record) throw Error(ErrorCode::Unauthorized, "unknown API key");
  if (record->disabled) throw Error(ErrorCode::Forbidden, "this API key is disabled");
  return record;
}

std::optional<KeyRecord> MaskService::authorise(const std::string& api_key, const std::string& endpoint) {
  auto record = authenticate(api_key);
  if (!record) return record;
  if (!endpoint_allowed(record->endpoints, endpoint))
    throw Error(ErrorCode::Forbidden, "this API key is not allowed to call " + endpoint);
  const double rate = record->rate_per_minute ? double(*record->rate_per_minute) : config_.rate_limit_per_minute;
  // PostgreSQL keeps the buckets in the database (shared by the replicas); SQLite, per process in memory.
  const double burst = std::max(1.0, config_.rate_burst);
  if (int64_t wait = keys_->shared_rate_limits() ? keys_->take_rate(record->id, rate, burst)
                                                 : rate_limiter_.take(record->id, rate, burst))
    throw Error(ErrorCode::RateLimited, "rate limit exceeded for this API key: retry in " + std::to_string(wait) + " s")
        .with_retry_after(int(wait));
  if (record->credits && *record->credits <= 0) throw Error(ErrorCode::NoCredits, "this API key has no credits left");
  return record;
}

std::vector<uint8_t> MaskService::resolve_image(const MaskRequest& request, double* fetch_ms) const {
  if (!request.upload.empty()) {
    check_image_size(request.upload.size(), config_.fetch);
    return request.upload;
  }
  auto t = Clock::now();
  std::vector<uint8_t> bytes = resolve_image_bytes(request.image, config_.fetch);
  if (fetch_ms) *fetch_ms = ms_since(t);
  return bytes;
}

void MaskService::admit(const AdmitPolicy& policy) {
  if (policy.background) {
    while (!admission_.enter_background(std::min(policy.deadline, Clock::now() + std::chrono::milliseconds(250)))) {
      if ((policy.give_up && policy.give_up()) || Clock::now() >= policy.deadline) throw NotStarted{};
    }
    return;
  }
  switch (admission_.enter(policy.deadline)) {
    case Admission::Result::Admitted: return;
    case Admission::Result::QueueFull: throw Error(ErrorCode::Overloaded, "the server is busy (queue full): retry shortly");
    case Admission::Result::TimedOut: {
      throw Error(ErrorCode::Timeout, "the request waited longer than " + std::to_string(policy.timeout_ms) +
                                          " ms for a free worker");
    }
    case Admission::Result::ShuttingDown: throw Error(ErrorCode::NotReady, "the server is shutting down");
  }
}

MaskAnswer MaskService::run(MaskRequest request, const std::optional<KeyRecord>& key, const AdmitPolicy& policy,
                            Charge charge) {
  Pipeline* pipeline = pipeline_();
  if (!pipeline) throw Error(ErrorCode::NotReady, "the server is starting: models are loading");
  // A key's credits bound its requests in flight in this process (fetching, waiting or running), not only those
  // that finished: otherwise one credit would buy an inference per queue place, each refused at the charge.
  std::optional<CreditHold> hold;
  if (key && key->credits && keys_ && charge == Charge::OnSuccess) hold.emplace(credit_holds_, key->id, *key->credits);
  double fetch_ms = 0;
  // An upload is moved, not copied (up to --max-body-bytes per request).
  std::vector<uint8_t> bytes;
  if (!request.upload.empty()) {
    check_image_size(request.upload.size(), config_.fetch);
    bytes = std::move(request.upload);
  } else if (policy.background) {  // job workers: a fixed few, already bounded
    bytes = resolve_image(request, &fetch_ms);
  } else {
    std::optional<FetchSlot> slot;
    if (is_image_url(request.image)) slot.emplace(fetches_, key ? std::optional<int64_t>(key->id) : std::nullopt);
    bytes = resolve_image(request, &fetch_ms);
  }
  request.upload.clear();
  auto t_wait = Clock::now();
  admit(policy);
  AdmissionSlot slot(admission_);
  const double wait_ms = ms_since(t_wait);

  auto t = Clock::now();
  DecodeLimits limits;
  limits.max_pixels = config_.max_pixels;
  MaskAnswer answer = inference_.run([&] {
    DecodedImage image = decode_image(bytes, limits);
    bound_instances_by_pixels(request.params, image.bgr.total());
    return render(*pipeline, request, image, ms_since(t), key ? std::to_string(key->id) : std::string());
  });
  answer.fetch_ms = fetch_ms;
  answer.wait_ms = wait_ms;

  // Charged last, once the answer exists as bytes: nothing is charged for an answer that cannot be made.
  if (key && keys_ && charge == Charge::OnSuccess) {
    if (!keys_->consume(key->id, answer.remaining_credits))
      throw Error(ErrorCode::NoCredits, "this API key has no credits left");
    answer.charged = true;
  }
  return answer;
}

void bound_instances_by_pixels(MaskParams& params, size_t pixels) {
  const int64_t most = std::max<int64_t>(1, kInstanceMaskPixelBudget / int64_t(std::max<size_t>(pixels, 1)));
  params.max_detections = int(std::min<int64_t>(params.max_detections, most));
}

MaskAnswer run_local(Pipeline& pipeline, MaskRequest request, const DecodeLimits& limits) {
  auto t = Clock::now();
  DecodedImage image = decode_image(request.upload, limits);
  request.upload.clear();
  bound_instances_by_pixels(request.params, image.bgr.total());
  MaskAnswer answer = render(pipeline, request, image, ms_since(t));
  answer.image = std::move(image);
  return answer;
}

}  // namespace maskmaker::service
