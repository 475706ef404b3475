// One ONNX Runtime environment for the process, sessions built from it, and model-file checks.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <onnxruntime_cxx_api.h>

namespace maskmaker::rt {

struct SessionConfig {
  int threads = 0;             // 0 = hardware concurrency
  std::string device = "cpu";  // cpu | cuda
  // Runs on the calling thread only, for small models called side by side through rt::parallel_for.
  bool single_threaded = false;
};

// The process-wide environment with global intra-op and inter-op thread pools shared by every session, so
// that several models and concurrent requests do not oversubscribe the cores. The first call fixes the size.
Ort::Env& environment(int threads = 0);
// The intra-op thread count the environment was created with (creating it with the default if needed).
int thread_count();

// Creates a session with full graph optimisation; throws maskmaker::Error(ModelError) naming the file.
std::unique_ptr<Ort::Session> open_session(const std::string& path, const SessionConfig& config);

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;  // -1 for dynamic axes
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
};
std::vector<TensorSpec> input_specs(Ort::Session& session);
std::vector<TensorSpec> output_specs(Ort::Session& session);

std::string sha256_file(const std::string& path);
// Throws Error(ModelError) when the file is missing or its checksum differs; empty expected = no check.
void verify_model_file(const std::string& path, const std::string& expected_sha256);

Ort::MemoryInfo& cpu_memory();

}  // namespace maskmaker::rt
