// The one way through: every front end (the synchronous HTTP endpoints, the /v2 job worker, `maskmaker run`)
// hands a parsed MaskRequest to MaskService, which resolves the image, waits for an inference slot, decodes,
// runs the pipeline, renders the answer and charges the key, in that order, once. Transport-free: no HTTP here;
// errors are maskmaker::Error, which the front ends map (HTTP statuses: src/server/http_errors.cpp).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "maskmaker/maskmaker.hpp"
#include "runtime/inference_threads.hpp"
#include "service/admission.hpp"
#include "service/api.hpp"
#include "service/fetch_slots.hpp"
#include "service/keys_db.hpp"
#include "service/rate_limit.hpp"
#include "maskmaker/service.hpp"
#include "service/request.hpp"
#include "service/url_fetch.hpp"

namespace maskmaker::service {

struct ServiceConfig {
  int64_t max_pixels = 50'000'000;
  FetchLimits fetch;
  double rate_limit_per_minute = 0;  // default per-key rate (0 = unlimited); a key's own rate overrides it
  double rate_burst = 10;
  int max_fetches = 16;          // image URLs being fetched at once by requests (503 past it)
  int max_fetches_per_key = 4;   // ... by one key's requests (429 past it)
};

// How a run gets its inference slot.
struct AdmitPolicy {
  std::chrono::steady_clock::time_point deadline;  // foreground: wait at most until then (504 after)
  long timeout_ms = 0;                              // the deadline as a duration, for the 504's message
  // Background work (jobs): a slot only when no foreground request waits; `give_up` is polled while waiting and,
  // once true, the run ends with NotStarted.
  bool background = false;
  std::function<bool()> give_up;
};
// Thrown by a background run that gave up before it started: nothing was done, nothing charged.
struct NotStarted {};

enum class Charge { OnSuccess, None };

// Each instance keeps a mask at the photo's resolution: a request's instances may hold at most this many mask pixels
// in all (512 MiB of 8-bit masks), so max_detections is lowered on large photos (100 up to 5.4 MP, 10 at 54 MP).
// Without it one request (1000 detections asked, confidence 0, a 50 MP photo) could ask for 50 GB.
constexpr int64_t kInstanceMaskPixelBudget = int64_t(512) << 20;
void bound_instances_by_pixels(MaskParams& params, size_t pixels);

// Requests in flight per key, held against the key's credits (CreditHold).
struct CreditHolds {
  std::mutex mutex;
  std::map<int64_t, int64_t> in_flight;
};
class CreditHold {
 public:
  // Throws NoCredits when the key's requests in flight already match its credits.
  CreditHold(CreditHolds& holds, int64_t key_id, int64_t credits);
  ~CreditHold();
  CreditHold(const CreditHold&) = delete;
  CreditHold& operator=(const CreditHold&) = delete;

 private:
  CreditHolds& holds_;
  int64_t key_id_;
};

class MaskService {
 public:
  // `pipeline` answers the loaded pipeline, or nullptr while the models load (runs then fail with NotReady).
  MaskService(ServiceConfig config, KeyStore* keys, Admission& admission, std::function<Pipeline*()> pipeline);

  bool open_access() const { return keys_ == nullptr; }
  bool ready() const { return pipeline_() != nullptr; }
  KeyStore* keys() const { return keys_; }
  Admission& admission() const { return admission_; }
  const ServiceConfig& config() const { return config_; }

  // The caller's key for reading (job status): 401 missing/unknown, 403 disabled. nullopt on an open server.
  std::optional<KeyRecord> authenticate(const std::string& api_key) const;
  // The caller's key for a run on `endpoint` (its path): authenticate, then 403 not allowed there, 429 over its
  // rate (Error::retry_after set), 406 no credits.
  std::optional<KeyRecord> authorise(const std::string& api_key, const std::string& endpoint);

  // The image's bytes: the upload, or the URL fetched / the data URI or base64 decoded.
  std::vector<uint8_t> resolve_image(const MaskRequest& request, double* fetch_ms = nullptr) const;

  // resolve → admit → decode → run → render → charge. Throws Error (or NotStarted, see AdmitPolicy).
  MaskAnswer run(MaskRequest request, const std::optional<KeyRecord>& key, const AdmitPolicy& admit,
                 Charge charge = Charge::OnSuccess);

 private:
  void admit(const AdmitPolicy& policy);

  ServiceConfig config_;
  KeyStore* keys_;
  Admission& admission_;
  std::function<Pipeline*()> pipeline_;
  RateLimiter rate_limiter_;
  FetchSlots fetches_;
  CreditHolds credit_holds_;
  rt::InferenceThreads inference_;  // one per admission slot: decode, run and render happen there
};

}  // namespace maskmaker::service
