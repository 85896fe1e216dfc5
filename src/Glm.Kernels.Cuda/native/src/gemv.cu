#include <cuda_bf16.h>
#include "status.cuh"

namespace {

constexpr int kWarpsPerBlock = 8;

__device__ inline float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ inline float bf16_to_float(uint16_t bits) { return __uint_as_float(static_cast<uint32_t>(bits) << 16); }

// One warp per output row; each lane reads 8 BF16 weights (16 bytes) at a time.
__global__ void gemv_bf16_kernel(const uint16_t* __restrict__ w, const float* __restrict__ x, float* __restrict__ y, int rows, int cols) {
  int row = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const uint16_t* wr = w + static_cast<size_t>(row) * cols;
  float acc = 0.f;
  int vec_cols = (cols / 8) * 8;
  bool aligned = (reinterpret_cast<uintptr_t>(wr) & 15) == 0;
  if (aligned) {
    for (int k = lane * 8; k < vec_cols; k += 32 * 8) {
      uint4 packed = *reinterpret_cast<const uint4*>(wr + k);
      const uint16_t* h = reinterpret_cast<const uint16_t*>(&packed);
#pragma unroll
      for (int j = 0; j < 8; j++) acc = fmaf(x[k + j], bf16_to_float(h[j]), acc);
    }
  } else {
    vec_cols = 0;
  }
  for (int k = vec_cols + lane; k < cols; k += 32) acc = fmaf(x[k], bf16_to_float(wr[k]), acc);
  acc = warp_sum(acc);
  if (lane == 0) y[row] = acc;
}

// Int4, CPU packing: 16 bytes per run of 32 weights. Each lane takes whole runs; a run lies inside one group,
// so s * (dot - z * sum(x)) per run adds up to the group formula.
__global__ void gemv_int4_kernel(const uint8_t* __restrict__ codes, const float* __restrict__ scales, const float* __restrict__ zeros,
                                 const float* __restrict__ x, float* __restrict__ y, int rows, int cols, int group_size) {
  int row = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (row >= rows) return;
  int runs = cols / 32, groups = cols / group_size;
  const uint8_t* cr = codes + static_cast<size_t>(row) * cols / 2;
  float acc = 0.f;
  for (int r = lane; r < runs; r += 32) {
    uint4 packed = *reinterpret_cast<const uint4*>(cr + r * 16);
    const uint8_t* b = reinterpret_cast<const uint8_t*>(&packed);
    const float* xr = x + r * 32;
    float dot = 0.f, xs = 0.f;
#pragma unroll
    for (int j = 0; j < 16; j++) {
      float lo = xr[j], hi = xr[j + 16];
      dot = fmaf(lo, static_cast<float>(b[j] & 15), dot);
      dot = fmaf(hi, static_cast<float>(b[j] >> 4), dot);
      xs += lo + hi;
    }
    int g = row * groups + (r * 32) / group_size;
    acc = fmaf(scales[g], dot - zeros[g] * xs, acc);
  }
  acc = warp_sum(acc);
  if (lane == 0) y[row] = acc;
}

// E4M3 decoded exactly by placing its bits at float32's exponent/mantissa positions and scaling by 2^120.
__device__ inline float e4m3_to_float(uint32_t c) {
  return __uint_as_float(((c & 0x80u) << 24) | ((c & 0x7Fu) << 20)) * 1.329228e36f;
}

__global__ void gemv_fp8_channel_kernel(const uint8_t* __restrict__ codes, const float* __restrict__ scales, const float* __restrict__ x,
                                        float* __restrict__ y, int rows, int cols) {
  int row = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const uint8_t* cr = codes + static_cast<size_t>(row) * cols;
  float acc = 0.f;
  int vec_cols = ((reinterpret_cast<uintptr_t>(cr) & 15) == 0) ? (cols / 16) * 16 : 0;
  for (int k = lane * 16; k < vec_cols; k += 32 * 16) {
    uint4 packed = *reinterpret_cast<const uint4*>(cr + k);
    const uint8_t* b = reinterpret_cast<const uint8_t*>(&packed);
#pragma unroll
    for (int j = 0; j < 16; j++) acc = fmaf(x[k + j], e4m3_to_float(b[j]), acc);
  }
  for (int k = vec_cols + lane; k < cols; k += 32) acc = fmaf(x[k], e4m3_to_float(cr[k]), acc);
  acc = warp_sum(acc);
  if (lane == 0) y[row] = acc * scales[row];
}

inline int blocks_for(int rows) { return (rows + kWarpsPerBlock - 1) / kWarpsPerBlock; }

}  // namespace

extern "C" {

int glm_gemv_bf16(const uint16_t* weight, const float* x, float* y, int rows, int cols, void* stream) {
  GLM_REQUIRE(weight && x && y && rows >= 0 && cols > 0, "gemv_bf16: bad arguments");
  if (rows == 0) return GLM_OK;
  gemv_bf16_kernel<<<blocks_for(rows), kWarpsPerBlock * 32, 0, static_cast<cudaStream_t>(stream)>>>(weight, x, y, rows, cols);
  GLM_LAUNCHED(gemv_bf16_kernel);
  return GLM_OK;
}

int glm_gemv_int4(const uint8_t* codes, const float* scales, const float* zeros, const float* x, float* y, int rows, int cols, int group_size, void* stream) {
  GLM_REQUIRE(codes && scales && zeros && x && y && rows >= 0, "gemv_int4: bad arguments");
  GLM_REQUIRE(group_size > 0 && group_size % 32 == 0 && cols % group_size == 0, "gemv_int4: cols must be a multiple of the group size, itself a multiple of 32");
  GLM_REQUIRE((reinterpret_cast<uintptr_t>(codes) & 15) == 0, "gemv_int4: codes must be 16-byte aligned");
  if (rows == 0) return GLM_OK;
  gemv_int4_kernel<<<blocks_for(rows), kWarpsPerBlock * 32, 0, static_cast<cudaStream_t>(stream)>>>(codes, scales, zeros, x, y, rows, cols, group_size);
  GLM_LAUNCHED(gemv_int4_kernel);
  return GLM_OK;
}

int glm_gemv_fp8_channel(const uint8_t* codes, const float* scales, const float* x, float* y, int rows, int cols, void* stream) {
  GLM_REQUIRE(codes && scales && x && y && rows >= 0 && cols > 0, "gemv_fp8_channel: bad arguments");
  if (rows == 0) return GLM_OK;
  gemv_fp8_channel_kernel<<<blocks_for(rows), kWarpsPerBlock * 32, 0, static_cast<cudaStream_t>(stream)>>>(codes, scales, x, y, rows, cols);
  GLM_LAUNCHED(gemv_fp8_channel_kernel);
  return GLM_OK;
}
}
