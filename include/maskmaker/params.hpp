// The request parameters, declared once: name, type, range, default and help of each. This table drives the JSON
// and multipart parsing (service), `validate`, the command line's flags, and the OpenAPI document
// (`maskmaker params --json` feeds scripts/gen_openapi.py). To add a parameter: a row here, a field where it
// lands (MaskParams or MaskRequest), one case in src/service/params.cpp's `assign`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>

namespace maskmaker {

enum class ParamType {
  Boolean,
  Number,   // a real number in [min, max]
  Integer,  // a whole number in [min, max]
  Text,     // a string
  Choice,   // one of `choices` ("a|b|c"), case-insensitive
  Phrases,  // a comma-separated string or a list of strings
  Object,   // a JSON object with fields of its own (in a multipart form: its JSON text)
};

// Where a parameter is accepted: bits.
enum ParamApi : unsigned {
  kApiCompatible = 1u,  // POST /v1/inpaint-mask-maker (the hosted API's contract)
  kApiNative = 2u,      // POST /v1/masks
  kApiJobs = 4u,        // POST /v2/inpaint-mask-maker (the compatible contract, queued)
  kApiCli = 8u,         // maskmaker run
};

struct ParamSpec {
  std::string_view name;  // the JSON / form field; the CLI flag is --name with '_' as '-'
  ParamType type;
  unsigned apis;
  double min = 0, max = 0;      // Number, Integer
  double compatible_min = 0;    // the compatible API's lower bound (it is the hosted API's, and narrower)
  double default_value = 0;     // Boolean (0/1), Number, Integer
  std::string_view default_text = {};  // Choice
  std::string_view choices = {};       // Choice: "a|b|c"
  std::string_view help = {};
};

namespace param_table {
constexpr unsigned kMaskApis = kApiCompatible | kApiNative | kApiJobs | kApiCli;
constexpr ParamSpec boolean(std::string_view name, unsigned apis, bool def, std::string_view help) {
  return {name, ParamType::Boolean, apis, 0, 0, 0, def ? 1.0 : 0.0, {}, {}, help};
}
constexpr ParamSpec number(std::string_view name, unsigned apis, double lo, double hi, double def, std::string_view help) {
  return {name, ParamType::Number, apis, lo, hi, lo, def, {}, {}, help};
}
constexpr ParamSpec integer(std::string_view name, unsigned apis, double lo, double hi, double def, std::string_view help,
                            double compatible_lo) {
  return {name, ParamType::Integer, apis, lo, hi, compatible_lo, def, {}, {}, help};
}
constexpr ParamSpec choice(std::string_view name, unsigned apis, std::string_view choices, std::string_view def,
                           std::string_view help) {
  return {name, ParamType::Choice, apis, 0, 0, 0, 0, def, choices, help};
}
constexpr ParamSpec of_type(ParamType type, std::string_view name, unsigned apis, std::string_view help) {
  return {name, type, apis, 0, 0, 0, 0, {}, {}, help};
}
}  // namespace param_table

// Longest prompt in bytes (also of a phrase list joined with ", "), and most phrases: phrases that match nothing
// come back in the X-Unmatched-Phrases header, and HTTP clients refuse header lines over 64 KiB.
inline constexpr std::size_t kMaxPromptBytes = 4096;
inline constexpr std::size_t kMaxPhrases = 64;

inline constexpr ParamSpec kMaskParams[] = {
    param_table::of_type(ParamType::Text, "prompt", param_table::kMaskApis,
        "What to find: phrases separated by commas (at most 64 phrases and 4096 bytes of UTF-8); trimmed, empty "
        "ones dropped, duplicates merged case-insensitively"),
    param_table::of_type(ParamType::Phrases, "phrases", kApiNative,
        "Instead of prompt: a list of phrases (or one comma-separated string); wins over prompt. At most 64 "
        "phrases and 4096 bytes (joined with \", \")"),
    param_table::of_type(ParamType::Text, "image", kApiCompatible | kApiNative | kApiJobs,
        "An http(s) URL (fetched by the server; private addresses refused unless --allow-private-urls), a "
        "`data:image/...;base64,` URI, or bare base64 (standard or URL-safe, padding optional). JPEG, PNG, WebP, "
        "BMP, GIF (first frame) or TIFF; EXIF orientation applied, alpha dropped"),
    param_table::boolean("invert_mask", param_table::kMaskApis, false, "Swap mask and background"),
    param_table::number("confidence_thresh", param_table::kMaskApis, 0, 1, 0.5,
                        "Keep detections scoring at least this"),
    param_table::number("iou_thresh", param_table::kMaskApis, 0, 1, 0.2,
                        "Non-maximum suppression overlap threshold, per phrase"),
    param_table::integer("grow_mask", param_table::kMaskApis, -100, 100, 10,
                         "Grow the mask by this many pixels of the original image (round kernel); negative values "
                         "erode it (not on the compatible API, whose range is 0 to 100)", 0),
    param_table::boolean("return_mask", kApiCompatible | kApiNative | kApiJobs | kApiCli, false,
                         "true: answer the mask; false: the annotated image (the native API accepts it, "
                         "type-checked, and ignores it: see output)"),
    param_table::boolean("base64", kApiCompatible | kApiNative | kApiJobs, false,
                         "Answer JSON with the image as base64 instead of the raw bytes (the native API and /v2 jobs "
                         "accept it, type-checked, and ignore it: their answers are JSON, the image in base64)"),
    param_table::of_type(ParamType::Phrases, "negative_prompt", kApiNative | kApiCli,
        "Phrases whose instances are subtracted from the union mask after growing (reported in negative_instances). "
        "A phrase that names the same detector class as a prompt phrase finds nothing with the closed-set packs: "
        "the prompt phrase takes the instances. At most 64 phrases and 4096 bytes"),
    param_table::integer("feather", kApiNative | kApiCli, 0, 100, 0,
                         "Width in px of a soft edge outside the mask: a pixel at distance d = 1..feather gets "
                         "255 * (1 - d / (feather + 1)); applied after grow and negatives, before invert", 0),
    param_table::integer("max_detections", kApiNative | kApiCli, 0, 1000, 100,
                         "Keep at most this many instances (highest scores first; negatives not counted); on a photo over "
                         "5.4 MP at most 512 Mi / its pixels (e.g. 42 at 12 MP), since each keeps a full-size mask", 0),
    param_table::choice("output", kApiNative | kApiCli, "mask|annotated|cutout|none", "mask",
                        "The image in the answer: mask (8-bit grayscale PNG, 255 = inpaint), annotated (JPEG for "
                        "a JPEG input, PNG otherwise), cutout (RGBA PNG, the mask as alpha), none (no image). "
                        "Case-insensitive"),
    param_table::choice("mask_format", kApiNative, "rle|png", "rle",
                        "Encoding of the union and instance masks: COCO compressed RLE, or a PNG data URI. RLE is "
                        "binary (pixels > 127); a feathered mask keeps its soft edge only as PNG. Case-insensitive"),
    param_table::boolean("instance_masks", kApiNative, true,
                         "false: leave out each instance's mask (boxes, scores and areas only)"),
    param_table::of_type(ParamType::Object, "crop", kApiNative,
        "Also answer a crop around the mask for inpainting models that work at a fixed size: padding (px) and "
        "padding_fraction (of the mask's box) of context, multiple_of, target_size, min_size, aspect_ratio; "
        "see docs/inpainting.md"),
    param_table::of_type(ParamType::Text, "webhook_url", kApiJobs,
        "Optional: called (POST, JSON = the job's final body, as GET /v2/requests/{request_id} answers it) when "
        "the job ends, COMPLETED or FAILED. http(s) only, and the same address guard as image URLs (private "
        "addresses refused unless --allow-private-urls); redirects are not followed; a non-2xx answer or a failed "
        "connection is retried after 1 s and 4 s (3 tries)"),
};

// Indices, not pointers: GCC cannot constant-evaluate a pointer comparison under -fsanitize=undefined.
constexpr std::size_t param_index(std::string_view name) {
  std::size_t i = 0;
  while (i < std::size(kMaskParams) && kMaskParams[i].name != name) ++i;
  return i;  // std::size(kMaskParams) when not found
}
constexpr const ParamSpec* find_param(std::string_view name) {
  const std::size_t i = param_index(name);
  return i < std::size(kMaskParams) ? &kMaskParams[i] : nullptr;
}
// The default of a Boolean, Number or Integer parameter; a name not in the table fails to compile.
consteval double param_default(std::string_view name) {
  const std::size_t i = param_index(name);
  if (i >= std::size(kMaskParams)) throw "not a parameter";
  return kMaskParams[i].default_value;
}

// What a valid value looks like, for error messages and help: "must be a number between 0 and 1".
std::string param_rule(const ParamSpec& spec, bool compatible_api = false);

}  // namespace maskmaker
