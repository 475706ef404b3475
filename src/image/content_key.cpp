#include "image/content_key.hpp"

#include <memory>
#include <stdexcept>

#include <openssl/evp.h>

namespace maskmaker {

ContentKey content_key(const cv::Mat& image, std::string_view scope) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) throw std::runtime_error("SHA-256 unavailable");
  // Fixed-width fields first, the scope length-prefixed: no two (scope, image) pairs give the same byte stream.
  const int64_t header[5] = {int64_t(scope.size()), image.type(), image.cols, image.rows, int64_t(image.dims)};
  EVP_DigestUpdate(ctx.get(), header, sizeof header);
  EVP_DigestUpdate(ctx.get(), scope.data(), scope.size());
  const size_t row_bytes = size_t(image.cols) * image.elemSize();
  for (int y = 0; y < image.rows; ++y) EVP_DigestUpdate(ctx.get(), image.ptr(y), row_bytes);
  ContentKey key;
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), key.digest.data(), &len);
  if (key.empty()) key.digest[0] = 1;  // all-zero means "no key"; SHA-256 never gives it in practice
  return key;
}

}  // namespace maskmaker
