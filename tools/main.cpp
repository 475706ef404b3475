// maskmaker: image + text prompt -> inpainting mask. Thin front end over the library.
#include <algorithm>
#include <cstdlib>
#include <set>
#include <sstream>
#include <iostream>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "commands.hpp"

namespace maskmaker::cli {

int& exit_code() {
  static int code = 0;
  return code;
}

void add_common_options(CLI::App& app, CommonOptions& common) {
  app.add_option("--models", common.models, "Model pack folder (with pack.json); default: models/default")
      ->envname("MASKMAKER_MODELS");
  app.add_option("--device", common.device, "Inference device: cpu or cuda")->envname("MASKMAKER_DEVICE")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--threads", common.threads, "Intra-op threads shared by all models (0 = all cores)")
      ->envname("MASKMAKER_THREADS")->check(CLI::Range(0, 256));
}

namespace {
std::string flag_name(std::string_view param) {
  std::string flag = "--" + std::string(param);
  std::replace(flag.begin(), flag.end(), '_', '-');
  return flag;
}
std::string default_text(const ParamSpec& spec) {
  std::ostringstream out;
  out << spec.default_value;
  return out.str();
}
}  // namespace

void add_param_flags(CLI::App& app, std::shared_ptr<nlohmann::json> given, const std::set<std::string>& except) {
  for (const ParamSpec& spec : kMaskParams) {
    if (!(spec.apis & kApiCli) || except.count(std::string(spec.name))) continue;
    const std::string name(spec.name), flag = flag_name(spec.name), help(spec.help);
    switch (spec.type) {
      case ParamType::Boolean:
        app.add_flag_function(flag, [given, name](int64_t n) { (*given)[name] = n > 0; }, help);
        break;
      case ParamType::Number:
        app.add_option_function<double>(flag, [given, name](double v) { (*given)[name] = v; }, help)
            ->check(CLI::Range(spec.min, spec.max))->default_str(default_text(spec));
        break;
      case ParamType::Integer:
        app.add_option_function<int64_t>(flag, [given, name](int64_t v) { (*given)[name] = v; }, help)
            ->check(CLI::Range(int64_t(spec.min), int64_t(spec.max)))->default_str(default_text(spec));
        break;
      case ParamType::Choice: {
        std::vector<std::string> choices;
        std::stringstream ss{std::string(spec.choices)};
        for (std::string c; std::getline(ss, c, '|');) choices.push_back(c);
        app.add_option_function<std::string>(flag, [given, name](const std::string& v) { (*given)[name] = v; }, help)
            ->check(CLI::IsMember(choices, CLI::ignore_case));
        break;
      }
      case ParamType::Phrases:
        app.add_option_function<std::vector<std::string>>(
               flag, [given, name](const std::vector<std::string>& v) { (*given)[name] = v; }, help)
            ->delimiter(',');
        break;
      case ParamType::Text:
        app.add_option_function<std::string>(flag, [given, name](const std::string& v) { (*given)[name] = v; }, help);
        break;
      case ParamType::Object: break;  // not a flag: the command offers its own (run --crop ...)
    }
  }
}

std::unique_ptr<Pipeline> load_pipeline(const CommonOptions& common) {
  PipelineOptions options;
  options.models_dir = common.models;
  options.device = common.device;
  options.threads = common.threads;
  return Pipeline::load(options);
}

void register_params(CLI::App& root) {
  CLI::App* cmd = root.add_subcommand("params", "Print the request parameters' table as JSON (scripts/gen_openapi.py reads it)");
  cmd->callback([] {
    nlohmann::json table = nlohmann::json::array();
    for (const ParamSpec& spec : kMaskParams) {
      static const char* types[] = {"boolean", "number", "integer", "string", "choice", "phrases", "object"};
      nlohmann::json apis = nlohmann::json::array();
      for (auto [bit, api] : {std::pair{kApiCompatible, "compatible"}, {kApiNative, "native"}, {kApiJobs, "jobs"},
                              {kApiCli, "cli"}})
        if (spec.apis & bit) apis.push_back(api);
      nlohmann::json row = {{"name", spec.name}, {"type", types[int(spec.type)]}, {"apis", apis}, {"help", spec.help}};
      auto number = [](double v) { return v == double(int64_t(v)) ? nlohmann::json(int64_t(v)) : nlohmann::json(v); };
      if (spec.type == ParamType::Number || spec.type == ParamType::Integer) {
        row["minimum"] = number(spec.min);
        row["maximum"] = number(spec.max);
        row["compatible_minimum"] = number(spec.compatible_min);
      }
      if (spec.type == ParamType::Boolean) row["default"] = spec.default_value != 0;
      else if (spec.type == ParamType::Number) row["default"] = spec.default_value;
      else if (spec.type == ParamType::Integer) row["default"] = int64_t(spec.default_value);
      else if (spec.type == ParamType::Choice) {
        row["default"] = spec.default_text;
        std::vector<std::string> choices;
        std::stringstream ss{std::string(spec.choices)};
        for (std::string c; std::getline(ss, c, '|');) choices.push_back(c);
        row["choices"] = choices;
      }
      if (spec.apis & kApiCli && spec.type != ParamType::Object) row["cli_flag"] = flag_name(spec.name);
      table.push_back(std::move(row));
    }
    std::cout << nlohmann::json{{"parameters", table}, {"max_prompt_bytes", kMaxPromptBytes},
                                {"max_phrases", kMaxPhrases}}.dump(2) << "\n";
  });
}

}  // namespace maskmaker::cli

int main(int argc, char** argv) {
  using namespace maskmaker::cli;
  // Logs go to stderr: stdout carries results (a new key, JSON) that scripts read.
  spdlog::set_default_logger(spdlog::stderr_color_mt("maskmaker"));
  CLI::App app{"maskmaker " + maskmaker::version() + ": turn an image and a text prompt into an inpainting mask"};
  app.require_subcommand(1);
  app.set_version_flag("--version", maskmaker::version());
  CommonOptions common;
  register_run(app, common);
  register_serve(app, common);
  register_bench(app, common);
  register_keys(app);
  register_models(app, common);
  register_params(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  } catch (const maskmaker::Error& e) {
    spdlog::error("{}", e.what());
    return e.code() == maskmaker::ErrorCode::InvalidArgument ? 2 : 1;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  return exit_code();
}
