// maskmaker bench: accuracy on a manifest (same scoring as ../shared/data/score.py) and latency per stage.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <numeric>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <spdlog/spdlog.h>

#include "commands.hpp"

namespace fs = std::filesystem;

namespace maskmaker::cli {
namespace {

struct AccuracyOptions {
  std::vector<std::string> manifests;
  std::string out = "out/accuracy";
  float confidence = 0.3f;
  float iou = 0.45f;
  std::string json_out;
};

// Scores one manifest; prints its summary and returns it as JSON.
nlohmann::json score_manifest(Pipeline& pipeline_ref, const std::string& manifest, const AccuracyOptions& o) {
  std::ifstream in(manifest);
  if (!in) throw Error(ErrorCode::InvalidArgument, "cannot open manifest " + manifest);
  fs::path base = fs::absolute(manifest).parent_path();
  Pipeline* pipeline = &pipeline_ref;
  MaskParams params;
  params.confidence_thresh = o.confidence;
  params.iou_thresh = o.iou;
  params.grow_mask = 0;

  struct Row { std::string prompt; double iou; bool positive; };
  // Time per row: a photo's first row pays for its encoding (new image), later rows hit the caches.
  std::vector<double> new_image_ms, seen_image_ms;
  std::vector<Row> rows;
  std::map<std::string, cv::Mat> images;  // rows share photos: decode each once
  std::string line;
  auto started = std::chrono::steady_clock::now();
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto row = nlohmann::json::parse(line);
    std::string image_path = (base / row.at("image").get<std::string>()).string();
    std::string mask_path = (base / row.at("mask").get<std::string>()).string();
    const bool seen = images.count(image_path) > 0;
    if (!seen) images[image_path] = load_image_file(image_path).bgr;
    auto row_started = std::chrono::steady_clock::now();
    // The benchmark calls the pipeline directly (not MaskService): it times the pipeline alone, per row.
    MaskResult r = pipeline->run(images[image_path], row.at("prompt").get<std::string>(), params);
    (seen ? seen_image_ms : new_image_ms)
        .push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - row_started).count());
    cv::imwrite((fs::path(o.out) / fs::path(mask_path).filename()).string(), r.mask);
    cv::Mat gt = cv::imread(mask_path, cv::IMREAD_GRAYSCALE);
    if (gt.empty()) throw Error(ErrorCode::InvalidArgument, "cannot read ground-truth mask " + mask_path);
    cv::Mat g = gt > 127, p = r.mask > 127;
    double iou = 0;
    if (g.size() == p.size()) {
      double inter = cv::countNonZero(g & p), uni = cv::countNonZero(g | p);
      iou = uni == 0 ? 1.0 : inter / uni;
    }
    rows.push_back({row.at("prompt").get<std::string>(), iou, cv::countNonZero(g) > 0});
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  double pos_sum = 0, neg_empty = 0;
  size_t pos = 0, neg = 0;
  std::map<std::string, std::pair<double, int>> per_class;
  for (auto& r : rows) {
    if (r.positive) { pos_sum += r.iou; ++pos; per_class[r.prompt].first += r.iou; per_class[r.prompt].second++; }
    else { neg_empty += r.iou; ++neg; }
  }
  double all = std::accumulate(rows.begin(), rows.end(), 0.0, [](double s, const Row& r) { return s + r.iou; });
  double miou = pos ? pos_sum / pos : 0, neg_share = neg ? neg_empty / neg : 1;
  std::cout << std::fixed << std::setprecision(4);
  std::cout << "manifest " << manifest << "\n";
  std::cout << "rows " << rows.size() << " (" << pos << " with objects, " << neg << " negative), pack '"
            << pipeline->pack_name() << "', confidence " << o.confidence << ", iou " << o.iou << ", "
            << std::setprecision(1) << seconds << " s\n" << std::setprecision(4);
  std::cout << "mIoU (rows with objects) " << miou << "\n";
  std::cout << "negatives left empty " << neg_share << "\n";
  std::cout << "mIoU (all rows, as score.py) " << (rows.empty() ? 0 : all / rows.size()) << "\n";
  auto pct = [](std::vector<double> v, double p) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, size_t(p * double(v.size() - 1) + 0.5))];
  };
  nlohmann::json timing;
  for (auto [name, v] : {std::pair{"new image", &new_image_ms}, std::pair{"seen image", &seen_image_ms}}) {
    if (v->empty()) continue;
    timing[name] = {{"rows", v->size()}, {"p50_ms", pct(*v, 0.5)}, {"p95_ms", pct(*v, 0.95)}, {"max_ms", pct(*v, 1.0)}};
    std::cout << std::setprecision(1) << "pipeline time, " << name << " (" << v->size() << " rows): p50 "
              << pct(*v, 0.5) << " ms, p95 " << pct(*v, 0.95) << " ms, max " << pct(*v, 1.0) << " ms\n"
              << std::setprecision(4);
  }
  std::cout << "class                 rows   mIoU\n";
  for (auto& [name, v] : per_class)
    std::cout << std::left << std::setw(20) << name << std::right << std::setw(6) << v.second << "  "
              << v.first / v.second << "\n";
  return {{"manifest", manifest}, {"rows", rows.size()}, {"positive_rows", pos}, {"negative_rows", neg},
          {"miou_positive", miou}, {"negatives_empty", neg_share}, {"pack", pipeline->pack_name()},
          {"confidence_thresh", o.confidence}, {"iou_thresh", o.iou}, {"seconds", seconds}, {"timing", timing}};
}

int run_accuracy(const AccuracyOptions& o, const CommonOptions& common) {
  fs::create_directories(o.out);
  auto pipeline = load_pipeline(common);
  // One pipeline for every manifest: rows on photos an earlier manifest saw hit the caches, as in a server.
  nlohmann::json summaries = nlohmann::json::array();
  for (size_t i = 0; i < o.manifests.size(); ++i) {
    if (i > 0) std::cout << "\n";
    summaries.push_back(score_manifest(*pipeline, o.manifests[i], o));
  }
  if (!o.json_out.empty()) {
    // The first manifest's summary at the top level (as with one manifest), every manifest's in "manifests".
    nlohmann::json j = summaries[0];
    j["manifests"] = summaries;
    std::ofstream(o.json_out) << j.dump(2) << "\n";
  }
  return 0;
}

}  // namespace

void register_latency(CLI::App& bench, CommonOptions& common);

void register_bench(CLI::App& root, CommonOptions& common) {
  CLI::App* bench = root.add_subcommand("bench", "Benchmarks: accuracy on a manifest, latency per stage");
  bench->require_subcommand(1);
  auto acc = std::make_shared<AccuracyOptions>();
  CLI::App* accuracy = bench->add_subcommand("accuracy", "Score masks against a manifest of ground-truth masks");
  accuracy->add_option("--manifest", acc->manifests,
                       "JSONL rows {image, prompt, mask}; repeat (or list several) to score several manifests, "
                       "e.g. the object rows and the region rows (manifest_stuff*.jsonl)")
      ->required();
  accuracy->add_option("--out", acc->out, "Folder for the predicted masks")->capture_default_str();
  accuracy->add_option("--confidence-thresh", acc->confidence)->check(CLI::Range(0.0, 1.0))->capture_default_str();
  accuracy->add_option("--iou-thresh", acc->iou)->check(CLI::Range(0.0, 1.0))->capture_default_str();
  accuracy->add_option("--json", acc->json_out, "Also write the summary as JSON to this file");
  add_common_options(*accuracy, common);
  accuracy->callback([acc, &common] { exit_code() = run_accuracy(*acc, common); });
  register_latency(*bench, common);
}

}  // namespace maskmaker::cli
