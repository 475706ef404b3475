// maskmaker: image + text prompt -> inpainting mask. Thin front end over the library.
#include <cstdlib>
#include <iostream>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

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

void add_mask_options(CLI::App& app, MaskParams& p) {
  app.add_option("--confidence-thresh", p.confidence_thresh, "Keep detections scoring at least this (0-1)")
      ->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app.add_option("--iou-thresh", p.iou_thresh, "NMS IoU threshold per phrase (0-1)")
      ->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app.add_option("--grow-mask", p.grow_mask, "Grow the mask by this many pixels (negative erodes)")
      ->check(CLI::Range(-100, 100))->capture_default_str();
  app.add_flag("--invert-mask", p.invert_mask, "Swap mask and background");
  app.add_option("--max-detections", p.max_detections, "Keep at most this many instances")
      ->check(CLI::Range(0, 1000))->capture_default_str();
  app.add_option("--feather", p.feather, "Soft edge width in pixels")->check(CLI::Range(0, 100));
  app.add_option("--negative-prompt", p.negative_phrases, "Phrases whose instances are subtracted")
      ->delimiter(',');
}

std::unique_ptr<Pipeline> load_pipeline(const CommonOptions& common) {
  PipelineOptions options;
  options.models_dir = common.models;
  options.device = common.device;
  options.threads = common.threads;
  return Pipeline::load(options);
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
