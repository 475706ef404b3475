// parse_mask_request on arbitrary bodies. The server turns maskmaker::Error into its 4xx answer; anything else
// escaping (nlohmann type errors, std::out_of_range, ...) would be a 500 for bad input, so it is a finding.
// The first byte picks the endpoint; the rest is the body.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "service/request.hpp"

using namespace maskmaker;
using namespace maskmaker::service;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const Endpoint endpoint = (data[0] & 1) ? Endpoint::Native : Endpoint::Compatible;
  std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  (void)json_nesting_depth(body);
  try {
    MaskRequest r = parse_mask_request(body, endpoint);
    // What validation promises to the rest of the server.
    if (split_prompt(r.prompt).empty()) __builtin_trap();
    if (r.image.empty()) __builtin_trap();
    const MaskParams& p = r.params;
    if (!(p.confidence_thresh >= 0.f && p.confidence_thresh <= 1.f)) __builtin_trap();
    if (!(p.iou_thresh >= 0.f && p.iou_thresh <= 1.f)) __builtin_trap();
    if (p.grow_mask < -100 || p.grow_mask > 100) __builtin_trap();
    if (p.feather < 0 || p.feather > 100 || p.max_detections < 0 || p.max_detections > 1000) __builtin_trap();
    if (r.crop) {  // a parsed crop is a valid one (crop_for_inpainting validates it again)
      try {
        validate(*r.crop);
      } catch (...) {
        __builtin_trap();
      }
    }
  } catch (const Error& e) {
    if (e.code() != ErrorCode::InvalidArgument) __builtin_trap();  // a body error is always a 400
  }
  return 0;
}
