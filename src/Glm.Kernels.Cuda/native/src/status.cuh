#pragma once
#include <cuda_runtime.h>
#include <cstdio>
#include "glm_cuda.h"
#include "common/checks.h"

namespace glm {
void set_error(const char* message);
int fail(cudaError_t e, const char* where);
}

// Checks a CUDA call; on failure records "where: message" for glm_cuda_last_error and returns GLM_ERR_CUDA.
#define GLM_CHECK(call)                                         \
  do {                                                          \
    cudaError_t glm_e_ = (call);                                \
    if (glm_e_ != cudaSuccess) return glm::fail(glm_e_, #call); \
  } while (0)

// Kernel launches report configuration errors through cudaGetLastError.
#define GLM_LAUNCHED(name) GLM_CHECK(cudaGetLastError())
