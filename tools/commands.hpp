// maskmaker's sub-commands; each returns the process exit code (0 ok, 1 some inputs failed, 2 usage).
#pragma once

#include <CLI/CLI.hpp>

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
void add_mask_options(CLI::App& app, MaskParams& params);
std::unique_ptr<Pipeline> load_pipeline(const CommonOptions& common);

void register_run(CLI::App& root, CommonOptions& common);
void register_bench(CLI::App& root, CommonOptions& common);
void register_serve(CLI::App& root, CommonOptions& common);
void register_keys(CLI::App& root);
void register_models(CLI::App& root, CommonOptions& common);

}  // namespace maskmaker::cli
