#include "runtime/ort_runtime.hpp"

#include <filesystem>
#include <fstream>
#include <atomic>
#include <mutex>
#include <cstdlib>
#include <thread>

#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include "maskmaker/maskmaker.hpp"

namespace maskmaker::rt {
namespace {

int resolve_threads(int threads) {
  if (threads > 0) return threads;
  unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : static_cast<int>(hc);
}

// MASKMAKER_ORT_PER_SESSION_THREADS=1 gives each session its own pool (for comparing the two set-ups).
bool per_session_threads() {
  const char* v = std::getenv("MASKMAKER_ORT_PER_SESSION_THREADS");
  return v && *v == '1';
}

std::atomic<int> g_thread_count{0};

}  // namespace

Ort::Env& environment(int threads) {
  static std::once_flag once;
  static std::unique_ptr<Ort::Env> env;
  std::call_once(once, [&] {
    g_thread_count = resolve_threads(threads);
    if (per_session_threads()) {
      env = std::make_unique<Ort::Env>(ORT_LOGGING_LEVEL_ERROR, "maskmaker");
      return;
    }
    Ort::ThreadingOptions threading;
    threading.SetGlobalIntraOpNumThreads(resolve_threads(threads));
    threading.SetGlobalInterOpNumThreads(1);
    env = std::make_unique<Ort::Env>(threading, ORT_LOGGING_LEVEL_ERROR, "maskmaker");
  });
  return *env;
}

int thread_count() {
  environment();
  return g_thread_count.load();
}

std::unique_ptr<Ort::Session> open_session(const std::string& path, const SessionConfig& config) {
  if (!std::filesystem::is_regular_file(path)) {
    throw Error(ErrorCode::ModelError, "model file not found: " + path);
  }
  Ort::Env& env = environment(config.threads);
  Ort::SessionOptions options;
  if (config.single_threaded) {
    options.SetIntraOpNumThreads(1);
    options.SetInterOpNumThreads(1);
  } else if (per_session_threads()) {
    options.SetIntraOpNumThreads(resolve_threads(config.threads));
    options.SetInterOpNumThreads(1);
  } else {
    options.DisablePerSessionThreads();
  }
  options.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
  options.SetExecutionMode(ExecutionMode::ORT_SEQUENTIAL);
  if (config.device == "cuda") {
    try {
      OrtCUDAProviderOptions cuda{};
      options.AppendExecutionProvider_CUDA(cuda);
    } catch (const Ort::Exception& e) {
      throw Error(ErrorCode::ModelError,
                  std::string("device 'cuda' is not available (no GPU or no CUDA provider library): ") + e.what());
    }
  } else if (config.device != "cpu") {
    throw Error(ErrorCode::InvalidArgument, "unknown device '" + config.device + "' (expected cpu or cuda)", "device");
  }
  try {
    return std::make_unique<Ort::Session>(env, path.c_str(), options);
  } catch (const Ort::Exception& e) {
    throw Error(ErrorCode::ModelError, "cannot load model " + path + ": " + e.what());
  }
}

namespace {
std::vector<TensorSpec> specs(Ort::Session& session, bool inputs) {
  Ort::AllocatorWithDefaultOptions allocator;
  size_t n = inputs ? session.GetInputCount() : session.GetOutputCount();
  std::vector<TensorSpec> out;
  for (size_t i = 0; i < n; ++i) {
    TensorSpec spec;
    auto name = inputs ? session.GetInputNameAllocated(i, allocator) : session.GetOutputNameAllocated(i, allocator);
    spec.name = name.get();
    auto info = inputs ? session.GetInputTypeInfo(i) : session.GetOutputTypeInfo(i);
    if (info.GetONNXType() == ONNX_TYPE_TENSOR) {
      auto tensor = info.GetTensorTypeAndShapeInfo();
      spec.shape = tensor.GetShape();
      spec.type = tensor.GetElementType();
    }
    out.push_back(std::move(spec));
  }
  return out;
}
}  // namespace

std::vector<TensorSpec> input_specs(Ort::Session& session) { return specs(session, true); }
std::vector<TensorSpec> output_specs(Ort::Session& session) { return specs(session, false); }

std::string sha256_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::ModelError, "cannot read " + path);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    if (in.gcount() > 0) EVP_DigestUpdate(ctx.get(), buffer.data(), static_cast<size_t>(in.gcount()));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &len);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 15];
  }
  return out;
}

void verify_model_file(const std::string& path, const std::string& expected_sha256) {
  if (!std::filesystem::is_regular_file(path)) throw Error(ErrorCode::ModelError, "model file not found: " + path);
  if (expected_sha256.empty()) return;
  std::string actual = sha256_file(path);
  if (actual != expected_sha256) {
    throw Error(ErrorCode::ModelError,
                "checksum mismatch for " + path + ": expected sha256 " + expected_sha256 + ", got " + actual);
  }
}

Ort::MemoryInfo& cpu_memory() {
  static Ort::MemoryInfo info = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  return info;
}

}  // namespace maskmaker::rt
