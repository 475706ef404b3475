// Checks of the parameter table (maskmaker/params.hpp) on MaskParams, and the wording of its rules.
#include <cmath>

#include "maskmaker/maskmaker.hpp"

namespace maskmaker {
namespace {

std::string number_text(double v) {
  if (v == std::floor(v)) return std::to_string(int64_t(v));
  std::string s = std::to_string(v);
  while (!s.empty() && s.back() == '0') s.pop_back();
  return s;
}

void check_range(std::string_view name, double value) {
  const ParamSpec& spec = *find_param(name);
  if (!(value >= spec.min && value <= spec.max))
    throw Error(ErrorCode::InvalidArgument, std::string(name) + " " + param_rule(spec), std::string(name));
}

}  // namespace

std::string param_rule(const ParamSpec& spec, bool compatible_api) {
  const double lo = compatible_api ? spec.compatible_min : spec.min;
  switch (spec.type) {
    case ParamType::Boolean: return "must be a boolean (true or false)";
    case ParamType::Number: return "must be a number between " + number_text(lo) + " and " + number_text(spec.max);
    case ParamType::Integer: return "must be an integer between " + number_text(lo) + " and " + number_text(spec.max);
    case ParamType::Text: return "must be a string";
    case ParamType::Phrases: return "must be a string or a list of strings";
    case ParamType::Object: return "must be an object";
    case ParamType::Choice: {
      std::string list(spec.choices);
      size_t bars = 0;
      for (char& c : list) bars += c == '|';
      if (bars == 1) return "must be " + list.replace(list.find('|'), 1, " or ");
      for (size_t at; (at = list.find('|')) != std::string::npos;) list.replace(at, 1, ", ");
      return "must be one of " + list;
    }
  }
  return "is invalid";
}

void validate(const MaskParams& p) {
  check_range("confidence_thresh", p.confidence_thresh);
  check_range("iou_thresh", p.iou_thresh);
  check_range("grow_mask", p.grow_mask);
  check_range("max_detections", p.max_detections);
  check_range("feather", p.feather);
}

}  // namespace maskmaker
