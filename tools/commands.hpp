// maskmaker's sub-commands; each returns the process exit code (0 ok, 1 some inputs failed, 2 usage).
#pragma once

#include <memory>
#include <set>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "maskmaker/maskmaker.hpp"

namespace maskmaker::cli {

struct CommonOptions {
  std::string models;
  std::string device = "cpu";
  int threads = 0;
  bool verbose = false;
};

// Set by a sub-command's callback; main returns it.
int& exit_code();

void add_common_options(CLI::App& app, CommonOptions& common);
// The request parameters the command line takes (kApiCli in maskmaker/params.hpp) as flags: each flag given sets
// its value in `given`, which the service's codec then reads as it reads a JSON body.
void add_param_flags(CLI::App& app, std::shared_ptr<nlohmann::json> given, const std::set<std::string>& except = {});
std::unique_ptr<Pipeline> load_pipeline(const CommonOptions& common);

void register_run(CLI::App& root, CommonOptions& common);
void register_bench(CLI::App& root, CommonOptions& common);
void register_serve(CLI::App& root, CommonOptions& common);
void register_keys(CLI::App& root);
void register_models(CLI::App& root, CommonOptions& common);
void register_params(CLI::App& root);

}  // namespace maskmaker::cli
