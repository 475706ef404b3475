#pragma once
#include <cstdlib>
#include <filesystem>
#include <string>

// ../shared beside the repository (CI lays it there), or MASKMAKER_SHARED.
inline std::string shared_dir() {
  if (const char* env = std::getenv("MASKMAKER_SHARED")) return env;
  return (std::filesystem::path(MASKMAKER_SOURCE_DIR) / ".." / "shared").lexically_normal().string();
}
inline std::string sample(const std::string& name) { return shared_dir() + "/data/samples/" + name; }
inline std::string default_pack() { return std::string(MASKMAKER_SOURCE_DIR) + "/models/default"; }
