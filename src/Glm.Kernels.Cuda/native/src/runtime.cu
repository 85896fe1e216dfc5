#include <cstring>
#include <string>
#include "status.cuh"

namespace glm {
static thread_local std::string last_error;

void set_error(const char* message) { last_error = message; }

int fail(cudaError_t e, const char* where) {
  last_error = std::string(where) + ": " + cudaGetErrorString(e);
  cudaGetLastError();  // clear a sticky launch error so later calls report their own
  return GLM_ERR_CUDA;
}
}  // namespace glm

extern "C" {

const char* glm_cuda_last_error(void) { return glm::last_error.c_str(); }

int glm_cuda_version(int* runtime_version, int* driver_version) {
  GLM_REQUIRE(runtime_version && driver_version, "null output pointer");
  GLM_CHECK(cudaRuntimeGetVersion(runtime_version));
  GLM_CHECK(cudaDriverGetVersion(driver_version));
  return GLM_OK;
}

int glm_cuda_device_count(int* count) {
  GLM_REQUIRE(count, "null output pointer");
  *count = 0;
  GLM_CHECK(cudaGetDeviceCount(count));
  return GLM_OK;
}

int glm_cuda_device_name(int device, char* buffer, int length) {
  GLM_REQUIRE(buffer && length > 0, "bad buffer");
  cudaDeviceProp p;
  GLM_CHECK(cudaGetDeviceProperties(&p, device));
  std::strncpy(buffer, p.name, length - 1);
  buffer[length - 1] = 0;
  return GLM_OK;
}

int glm_cuda_set_device(int device) {
  GLM_CHECK(cudaSetDevice(device));
  return GLM_OK;
}

int glm_cuda_malloc(void** pointer, size_t bytes) {
  GLM_REQUIRE(pointer, "null output pointer");
  GLM_CHECK(cudaMalloc(pointer, bytes));
  return GLM_OK;
}

int glm_cuda_free(void* pointer) {
  GLM_CHECK(cudaFree(pointer));
  return GLM_OK;
}

int glm_cuda_copy_to_device(void* device, const void* host, size_t bytes, void* stream) {
  GLM_CHECK(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, static_cast<cudaStream_t>(stream)));
  return GLM_OK;
}

int glm_cuda_copy_to_host(void* host, const void* device, size_t bytes, void* stream) {
  GLM_CHECK(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, static_cast<cudaStream_t>(stream)));
  GLM_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
  return GLM_OK;
}

int glm_cuda_stream_create(void** stream) {
  GLM_REQUIRE(stream, "null output pointer");
  cudaStream_t s;
  GLM_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  *stream = s;
  return GLM_OK;
}

int glm_cuda_stream_destroy(void* stream) {
  GLM_CHECK(cudaStreamDestroy(static_cast<cudaStream_t>(stream)));
  return GLM_OK;
}

int glm_cuda_stream_synchronize(void* stream) {
  GLM_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
  return GLM_OK;
}
}
