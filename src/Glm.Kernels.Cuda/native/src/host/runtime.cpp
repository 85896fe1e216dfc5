// The host build's runtime: "device" memory is aligned host memory, a "stream" runs each call when it is made,
// and there is one device, this process. Errors are reported as the CUDA build reports them.
#include <cstdlib>
#include <cstring>
#include <string>
#include "host.h"

namespace glm {
static thread_local std::string last_error;
void set_error(const std::string& message) { last_error = message; }
}  // namespace glm

extern "C" {

const char* glm_cuda_last_error(void) { return glm::last_error.c_str(); }
int glm_cuda_is_host_build(void) { return 1; }

int glm_cuda_version(int* runtime_version, int* driver_version) {
  GLM_REQUIRE(runtime_version && driver_version, "null output pointer");
  *runtime_version = 0;
  *driver_version = 0;
  return GLM_OK;
}

int glm_cuda_device_count(int* count) {
  GLM_REQUIRE(count, "null output pointer");
  *count = 1;
  return GLM_OK;
}

int glm_cuda_device_name(int device, char* buffer, int length) {
  GLM_REQUIRE(buffer && length > 0, "bad buffer");
  GLM_REQUIRE(device == 0, "the host build has one device, 0");
  std::strncpy(buffer, "host (libglm_cuda_host: the CUDA ABI in plain C++ over host memory)", length - 1);
  buffer[length - 1] = 0;
  return GLM_OK;
}

int glm_cuda_set_device(int device) {
  GLM_REQUIRE(device == 0, "the host build has one device, 0");
  return GLM_OK;
}

int glm_cuda_memory_info(size_t* free_bytes, size_t* total_bytes) {
  GLM_REQUIRE(free_bytes && total_bytes, "null output pointer");
  // What a test needs to size a pool from: a fixed 4 GiB "device".
  *total_bytes = size_t(4) << 30;
  *free_bytes = size_t(4) << 30;
  return GLM_OK;
}

int glm_cuda_malloc(void** pointer, size_t bytes) {
  GLM_REQUIRE(pointer, "null output pointer");
  size_t rounded = (bytes + 255) / 256 * 256;
  *pointer = std::aligned_alloc(256, rounded == 0 ? 256 : rounded);  // cudaMalloc's alignment
  if (!*pointer) { glm::set_error("glm_cuda_malloc: out of host memory"); return GLM_ERR_CUDA; }
  return GLM_OK;
}

int glm_cuda_free(void* pointer) {
  std::free(pointer);
  return GLM_OK;
}

int glm_cuda_copy_to_device(void* device, const void* host, size_t bytes, void*) {
  GLM_REQUIRE(device && (host || bytes == 0), "copy to device: null pointer");
  std::memcpy(device, host, bytes);
  return GLM_OK;
}

int glm_cuda_copy_to_host(void* host, const void* device, size_t bytes, void*) {
  GLM_REQUIRE(host && (device || bytes == 0), "copy to host: null pointer");
  std::memcpy(host, device, bytes);
  return GLM_OK;
}

int glm_cuda_copy_on_device(void* destination, const void* source, size_t bytes, void*) {
  GLM_REQUIRE(destination && source, "copy on device: null pointer");
  std::memmove(destination, source, bytes);
  return GLM_OK;
}

int glm_cuda_stream_create(void** stream) {
  GLM_REQUIRE(stream, "null output pointer");
  static int token;
  *stream = &token;
  return GLM_OK;
}

int glm_cuda_stream_destroy(void*) { return GLM_OK; }
int glm_cuda_stream_synchronize(void*) { return GLM_OK; }
}
