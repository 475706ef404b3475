// Files of web/ (the page, the OpenAPI document) built into the binary: nothing is fetched at run time.
#pragma once

#include <cstddef>
#include <string>

namespace maskmaker::server {

struct WebAsset {
  const char* data;
  size_t size;
  const char* content_type;
};

// "/" is index.html; nullptr when there is no such asset.
const WebAsset* web_asset_for(const std::string& path);

}  // namespace maskmaker::server
