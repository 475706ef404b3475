// A model pack: a folder with pack.json naming the detector, the segmenter, optionally the region segmenter and
// (for open-vocabulary packs) the text encoder, each with its path (relative to the folder) and sha256.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "detect/detector.hpp"
#include "segment/regions.hpp"
#include "segment/sam.hpp"

namespace maskmaker {

struct ModelPack {
  std::string name;
  std::string dir;
  nlohmann::json manifest;
  std::unique_ptr<Detector> detector;
  std::unique_ptr<SamSegmenter> segmenter;
  std::unique_ptr<RegionSegmenter> regions;  // optional ("regions" in pack.json): sky, wall, floor...
};

// Reads DIR/pack.json, checks every file's checksum and loads the sessions. Throws Error(ModelError).
ModelPack load_model_pack(const std::string& dir, const rt::SessionConfig& config, bool verify_checksums);

// Resolves a manifest path (relative to the pack folder unless absolute).
std::string resolve_pack_path(const std::string& dir, const std::string& path);

// Builds the detector named by manifest["detector"]; open-vocabulary kinds may also read manifest["text_encoder"].
std::unique_ptr<Detector> make_detector(const nlohmann::json& manifest, const std::string& dir,
                                        const rt::SessionConfig& config, bool verify_checksums);

}  // namespace maskmaker
