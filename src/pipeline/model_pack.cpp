#include "pipeline/model_pack.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <spdlog/spdlog.h>

#include "detect/yoloworld.hpp"

namespace fs = std::filesystem;

namespace maskmaker {
namespace {

std::string file_entry(const nlohmann::json& entry, const std::string& dir, bool verify, const std::string& what) {
  if (!entry.is_object() || !entry.contains("path") || !entry["path"].is_string())
    throw Error(ErrorCode::ModelError, "pack.json in " + dir + ": '" + what + "' needs a \"path\"");
  std::string path = resolve_pack_path(dir, entry["path"].get<std::string>());
  // Derived models (the int8 segmenter) are made from pinned sources by a script, not shipped: say how.
  if (entry.contains("generated_by") && entry["generated_by"].is_string() && !fs::exists(path))
    throw Error(ErrorCode::ModelError, "model file not found: " + path + " (derived from pinned sources; make it with `" +
                                           entry["generated_by"].get<std::string>() + "`, which scripts/setup.sh runs)");
  rt::verify_model_file(path, verify ? entry.value("sha256", std::string()) : std::string());
  return path;
}

}  // namespace

std::string resolve_pack_path(const std::string& dir, const std::string& path) {
  fs::path p(path);
  if (p.is_absolute()) return p.lexically_normal().string();
  return (fs::path(dir) / p).lexically_normal().string();
}

std::unique_ptr<Detector> make_detector(const nlohmann::json& manifest, const std::string& dir,
                                        const rt::SessionConfig& config, bool verify) {
  const auto& det = manifest.at("detector");
  std::string kind = det.value("kind", std::string());
  std::string path = file_entry(det, dir, verify, "detector");
  ClosedSetOptions options;
  options.tile_grid = det.value("tile_grid", 0);
  options.tile_overlap = det.value("tile_overlap", 1.25f);
  options.min_tile_side = det.value("min_tile_side", 0);
  options.tile_inside = det.value("tile_inside", options.tile_inside);
  options.tile_inside_area = det.value("tile_inside_area", options.tile_inside_area);
  for (float share : {options.tile_inside, options.tile_inside_area}) {
    if (!(share >= 0.f && share <= 1.f))
      throw Error(ErrorCode::ModelError, "pack.json in " + dir + ": tile_inside and tile_inside_area are shares (0 to 1)");
  }
  std::vector<std::string> classes = coco80_names();
  if (det.contains("classes") && det["classes"].is_array()) classes = det["classes"].get<std::vector<std::string>>();
  // The closed-set detectors are small: each call runs on one thread and the crops run side by side.
  rt::SessionConfig small = config;
  small.single_threaded = true;
  if (kind == "picodet") return make_closed_set_detector(make_picodet(path, small), classes, options);
  if (kind == "yolox") return make_closed_set_detector(make_yolox(path, small), classes, options);
  if (kind == "yolo-world") {
    // Open vocabulary: manifest["text_encoder"] = {"kind": "clip", "path", "sha256", "vocab"}, where "vocab" is
    // the BPE vocabulary's path (checksum in "vocab_sha256") or an entry {"path", "sha256"}.
    const auto te = manifest.value("text_encoder", nlohmann::json());
    if (!te.is_object())
      throw Error(ErrorCode::ModelError, "pack.json in " + dir + ": detector 'yolo-world' needs a \"text_encoder\"");
    if (std::string te_kind = te.value("kind", std::string("clip")); te_kind != "clip")
      throw Error(ErrorCode::ModelError, "pack.json in " + dir + ": unknown text_encoder kind '" + te_kind +
                                             "' (expected clip)");
    std::string text_path = file_entry(te, dir, verify, "text_encoder");
    nlohmann::json vocab = te.value("vocab", nlohmann::json());
    if (vocab.is_string())
      vocab = nlohmann::json{{"path", vocab}, {"sha256", te.value("vocab_sha256", std::string())}};
    std::string vocab_path = file_entry(vocab, dir, verify, "text_encoder.vocab");
    return make_yoloworld_detector(path, text_path, vocab_path, config, te.value("cache_entries", size_t(1024)));
  }
  throw Error(ErrorCode::ModelError, "pack.json in " + dir + ": unknown detector kind '" + kind +
                                         "' (expected picodet, yolox or yolo-world)");
}

ModelPack load_model_pack(const std::string& dir, const rt::SessionConfig& config, bool verify) {
  fs::path manifest_path = fs::path(dir) / "pack.json";
  std::ifstream in(manifest_path);
  if (!in) throw Error(ErrorCode::ModelError, "no model pack at " + dir + " (missing pack.json)");
  ModelPack pack;
  pack.dir = fs::absolute(dir).lexically_normal().string();
  pack.manifest = nlohmann::json::parse(in, nullptr, false);
  if (pack.manifest.is_discarded() || !pack.manifest.is_object())
    throw Error(ErrorCode::ModelError, manifest_path.string() + " is not a JSON object");
  pack.name = pack.manifest.value("name", fs::path(pack.dir).filename().string());
  if (!pack.manifest.contains("detector") || !pack.manifest.contains("segmenter"))
    throw Error(ErrorCode::ModelError, manifest_path.string() + " must name a \"detector\" and a \"segmenter\"");
  pack.detector = make_detector(pack.manifest, pack.dir, config, verify);
  const auto& seg = pack.manifest["segmenter"];
  std::string encoder = file_entry(seg.value("encoder", nlohmann::json()), pack.dir, verify, "segmenter.encoder");
  std::string decoder = file_entry(seg.value("decoder", nlohmann::json()), pack.dir, verify, "segmenter.decoder");
  pack.segmenter = std::make_unique<SamSegmenter>(encoder, decoder, config);
  pack.segmenter->set_roi_margin(seg.value("roi_margin", 0.1f));
  if (pack.manifest.contains("regions")) {
    // {"kind": "semantic", "path", "sha256", optional "min_agreement", "min_area", "guided_radius", "guided_eps",
    //  "min_component", "sam_refine", "sam_min_component", "sam_max_components", "sam_min_iou", "sam_grow"}:
    //  see segment/regions.hpp.
    const auto& reg = pack.manifest["regions"];
    if (std::string kind = reg.value("kind", std::string("semantic")); kind != "semantic")
      throw Error(ErrorCode::ModelError, "pack.json in " + dir + ": unknown regions kind '" + kind + "' (expected semantic)");
    RegionOptions ro;
    ro.min_agreement = reg.value("min_agreement", ro.min_agreement);
    ro.min_area = reg.value("min_area", ro.min_area);
    ro.guided_radius = reg.value("guided_radius", ro.guided_radius);
    ro.guided_eps = reg.value("guided_eps", ro.guided_eps);
    ro.min_component = reg.value("min_component", ro.min_component);
    ro.sam_refine = reg.value("sam_refine", ro.sam_refine);
    ro.sam_min_component = reg.value("sam_min_component", ro.sam_min_component);
    ro.sam_max_components = std::clamp(reg.value("sam_max_components", ro.sam_max_components), 0, 16);
    ro.sam_min_iou = reg.value("sam_min_iou", ro.sam_min_iou);
    ro.sam_grow = reg.value("sam_grow", ro.sam_grow);
    pack.regions = std::make_unique<RegionSegmenter>(file_entry(reg, pack.dir, verify, "regions"), config, ro);
  }
  return pack;
}

}  // namespace maskmaker
