// maskmaker bench latency: per-stage times over N runs, cold (new image) and warm (same image, other prompt).
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "image/geometry.hpp"
#include "pipeline/model_pack.hpp"
#include "runtime/ort_runtime.hpp"

namespace maskmaker::cli {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

double resident_mib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0;
}

struct Series {
  std::vector<double> v;
  double pct(double p) const {
    if (v.empty()) return 0;
    std::vector<double> s = v;
    std::sort(s.begin(), s.end());
    size_t i = std::min(s.size() - 1, size_t(p * double(s.size() - 1) + 0.5));
    return s[i];
  }
  double max() const { return v.empty() ? 0 : *std::max_element(v.begin(), v.end()); }
};

struct LatencyOptions {
  std::vector<std::string> images;
  std::string prompt = "person";
  std::string warm_prompt = "dog";
  int runs = 10;
  std::string json_out;
  bool raw = true;
};

// Each model alone on the first image (same threads): the floor the pipeline's overhead is measured against.
nlohmann::json raw_model_times(const LatencyOptions& o, const CommonOptions& common, const cv::Mat& bgr) {
  std::string dir = common.models.empty() ? default_models_dir() : common.models;
  ModelPack pack = load_model_pack(dir, rt::SessionConfig{common.threads, common.device}, false);
  std::map<std::string, Series> t;
  Box box{bgr.cols * 0.25f, bgr.rows * 0.25f, bgr.cols * 0.75f, bgr.rows * 0.75f};
  auto emb = pack.segmenter->encode(bgr);  // warm-up
  for (int i = 0; i < o.runs; ++i) {
    auto s = Clock::now();
    pack.detector->detect(bgr, {"person"}, 0.3f);
    t["detector (all tiles)"].v.push_back(ms_since(s));
    s = Clock::now();
    emb = pack.segmenter->encode(bgr);
    t["segmenter encoder"].v.push_back(ms_since(s));
    s = Clock::now();
    pack.segmenter->segment_box(*emb, box);
    t["segmenter decoder (1 box)"].v.push_back(ms_since(s));

  }
  nlohmann::json out;
  std::cout << "\nraw model times (" << o.runs << " runs)\n" << std::left << std::setw(28) << "model" << std::right
            << std::setw(10) << "p50 ms" << std::setw(10) << "p95 ms" << "\n";
  for (auto& [name, s] : t) {
    std::cout << std::left << std::setw(28) << name << std::right << std::fixed << std::setprecision(1)
              << std::setw(10) << s.pct(0.5) << std::setw(10) << s.pct(0.95) << "\n";
    out[name] = {{"p50", s.pct(0.5)}, {"p95", s.pct(0.95)}};
  }
  return out;
}

void print_table(const std::string& title, std::map<std::string, Series>& stages, nlohmann::json& out) {
  std::cout << "\n" << title << "\n" << std::left << std::setw(12) << "stage" << std::right << std::setw(10) << "p50 ms"
            << std::setw(10) << "p95 ms" << std::setw(10) << "max ms" << "\n";
  for (const char* name : {"decode", "detect", "encode", "segment", "post", "output", "total"}) {
    auto& s = stages[name];
    std::cout << std::left << std::setw(12) << name << std::right << std::fixed << std::setprecision(1)
              << std::setw(10) << s.pct(0.5) << std::setw(10) << s.pct(0.95) << std::setw(10) << s.max() << "\n";
    out[title][name] = {{"p50", s.pct(0.5)}, {"p95", s.pct(0.95)}, {"max", s.max()}, {"n", s.v.size()}};
  }
  const double boxes = stages["boxes"].pct(0.5);
  out[title]["boxes"] = boxes;
  if (boxes > 0) {
    out[title]["segment_per_box_ms"] = stages["segment"].pct(0.5) / boxes;
    std::cout << std::setprecision(0) << boxes << " box(es) per run: segment " << std::setprecision(1)
              << stages["segment"].pct(0.5) / boxes << " ms per box\n";
  }
}

int run_latency(const LatencyOptions& o, const CommonOptions& common) {
  auto t0 = Clock::now();
  auto pipeline = load_pipeline(common);
  double ready_ms = ms_since(t0);
  double rss_loaded = resident_mib();
  std::vector<std::vector<uint8_t>> files;
  for (const auto& path : o.images) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(ErrorCode::InvalidArgument, "cannot open " + path);
    files.emplace_back((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  MaskParams params;  // the API defaults
  std::map<std::string, Series> cold, warm;
  size_t instances = 0;
  auto measure = [&](const std::vector<uint8_t>& bytes, const std::string& prompt, cv::Mat tweak,
                     std::map<std::string, Series>& into) {
    // The benchmark decodes and runs the pipeline itself (not MaskService) to time each stage on its own.
    auto t = Clock::now();
    DecodedImage image = decode_image(bytes);
    if (!tweak.empty()) image.bgr = tweak;  // a "new" image: defeats the embedding cache
    double decode = ms_since(t);
    MaskResult r = pipeline->run(image, prompt, params);
    t = Clock::now();
    auto png = encode_png(r.mask);
    double output = ms_since(t);
    instances += r.instances.size();
    into["decode"].v.push_back(decode);
    into["detect"].v.push_back(r.times.detect_ms);
    into["encode"].v.push_back(r.times.encode_ms);
    into["segment"].v.push_back(r.times.segment_ms);
    into["post"].v.push_back(r.times.post_ms);
    into["output"].v.push_back(output);
    into["boxes"].v.push_back(double(r.instances.size()));
    into["total"].v.push_back(decode + r.times.detect_ms + r.times.encode_ms + r.times.segment_ms + r.times.post_ms + output);
  };
  for (int run = 0; run < o.runs; ++run) {
    for (const auto& bytes : files) {
      // Cold: a pixel-different copy so that the image-embedding cache cannot answer.
      cv::Mat fresh = decode_image(bytes).bgr.clone();
      fresh.at<cv::Vec3b>(0, 0)[0] ^= uint8_t(1 + run);
      measure(bytes, o.prompt, fresh, cold);
      measure(bytes, o.warm_prompt, fresh, warm);  // same image again, another prompt
    }
  }
  nlohmann::json out = {{"ready_ms", ready_ms}, {"rss_loaded_mib", rss_loaded}, {"pack", pipeline->pack_name()},
                        {"runs", o.runs}, {"images", o.images}, {"prompt", o.prompt}};
  std::cout << "pack '" << pipeline->pack_name() << "', " << files.size() << " image(s) x " << o.runs
            << " runs, prompt '" << o.prompt << "' then '" << o.warm_prompt << "', " << instances << " instances\n";
  std::cout << std::fixed << std::setprecision(0) << "ready after " << ready_ms << " ms; resident memory "
            << rss_loaded << " MiB loaded, " << resident_mib() << " MiB after the runs\n";
  print_table("cold (new image)", cold, out);
  print_table("warm (same image, another prompt)", warm, out);
  out["rss_after_mib"] = resident_mib();
  if (o.raw && !files.empty()) {
    nlohmann::json raw = raw_model_times(o, common, decode_image(files[0]).bgr);
    out["raw_models"] = raw;
    double floor = 0;
    for (const char* name : {"detector (all tiles)", "segmenter encoder", "segmenter decoder (1 box)"})
      floor += raw[name]["p50"].get<double>();
    double e2e = cold["total"].pct(0.5);
    out["overhead_ratio"] = floor > 0 ? e2e / floor : 0;
    std::cout << "end-to-end cold p50 / sum of raw model p50s = " << std::setprecision(2) << e2e / floor << "\n";
  }
  if (!o.json_out.empty()) std::ofstream(o.json_out) << out.dump(2) << "\n";
  return 0;
}

}  // namespace

void register_latency(CLI::App& bench, CommonOptions& common) {
  auto o = std::make_shared<LatencyOptions>();
  CLI::App* lat = bench.add_subcommand("latency", "Per-stage latency, cold and warm, with memory and start-up time");
  lat->add_option("images", o->images, "Image files")->required()->check(CLI::ExistingFile);
  lat->add_option("--prompt", o->prompt)->capture_default_str();
  lat->add_option("--warm-prompt", o->warm_prompt, "Prompt for the warm (cached image) runs")->capture_default_str();
  lat->add_option("--runs,-n", o->runs)->check(CLI::Range(1, 100000))->capture_default_str();
  lat->add_option("--json", o->json_out, "Also write the figures as JSON to this file");
  lat->add_flag("!--no-raw", o->raw, "Skip timing each model alone");
  add_common_options(*lat, common);
  lat->callback([o, &common] { exit_code() = run_latency(*o, common); });
}

}  // namespace maskmaker::cli
