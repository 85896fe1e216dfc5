#include <cuda_bf16.h>
#include "status.cuh"

// Matrix-vector products for decode, in the CPU worker's weight layouts. All three kernels share one shape:
// a warp takes kRowsPerWarp rows at once, and its lanes read consecutive pieces of each row, so weight loads
// are coalesced and every x value a lane loads (float4, also coalesced) serves kRowsPerWarp rows from
// registers. Several rows per lane also keep several independent loads in flight, which is what a
// memory-bound kernel needs. Accumulation is float32, as in the CPU worker.

namespace {

constexpr int kRowsPerWarp = 4;
constexpr int kWarpsPerBlock = 4;
constexpr int kRowsPerBlock = kRowsPerWarp * kWarpsPerBlock;

__device__ inline float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ inline int first_row() { return (blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5)) * kRowsPerWarp; }

__device__ inline void store_rows(float (&acc)[kRowsPerWarp], float* y, int row0, int rows) {
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; i++) {
    float v = warp_sum(acc[i]);
    if ((threadIdx.x & 31) == 0 && row0 + i < rows) y[row0 + i] = v;
  }
}

// Rows past the end read row 0 (valid memory) and are never stored.
__device__ inline size_t row_or_zero(int row, int rows) { return row < rows ? static_cast<size_t>(row) : 0; }

__device__ inline float dot_bf16x2(uint32_t pair, float a, float b, float acc) {
  acc = fmaf(a, __uint_as_float(pair << 16), acc);
  return fmaf(b, __uint_as_float(pair & 0xFFFF0000u), acc);
}

// BF16 weights [rows, cols]: a lane reads 8 weights (16 bytes) per step, the warp 256 consecutive weights.
__global__ void gemv_bf16_kernel(const uint16_t* __restrict__ w, const float* __restrict__ x, float* __restrict__ y, int rows, int cols) {
  int row0 = first_row();
  if (row0 >= rows) return;
  int lane = threadIdx.x & 31;
  const uint16_t* wr[kRowsPerWarp];
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; i++) wr[i] = w + row_or_zero(row0 + i, rows) * cols;
  float acc[kRowsPerWarp] = {};
  int vec_cols = (cols % 8 == 0) ? cols : 0;  // 16-byte loads need every row 16-byte aligned
#pragma unroll 2
  for (int k = lane * 8; k < vec_cols; k += 32 * 8) {
    float4 x0 = __ldg(reinterpret_cast<const float4*>(x + k));
    float4 x1 = __ldg(reinterpret_cast<const float4*>(x + k + 4));
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; i++) {
      uint4 p = __ldg(reinterpret_cast<const uint4*>(wr[i] + k));
      float a = acc[i];
      a = dot_bf16x2(p.x, x0.x, x0.y, a);
      a = dot_bf16x2(p.y, x0.z, x0.w, a);
      a = dot_bf16x2(p.z, x1.x, x1.y, a);
      a = dot_bf16x2(p.w, x1.z, x1.w, a);
      acc[i] = a;
    }
  }
  for (int k = vec_cols + lane; k < cols; k += 32)
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; i++) acc[i] = fmaf(x[k], __uint_as_float(static_cast<uint32_t>(wr[i][k]) << 16), acc[i]);
  store_rows(acc, y, row0, rows);
}

// A nibble becomes a float without a conversion instruction: the byte permute places it in the low mantissa
// bits of 2^23, and subtracting 2^23 leaves it exactly. Selector 0x744k: byte k of `nibbles`, then 0, 0, 0x4B.
__device__ inline float nibble_to_float(uint32_t nibbles, uint32_t selector) {
  return __uint_as_float(__byte_perm(nibbles, 0x4B000000u, selector)) - 8388608.f;
}

// One 32-bit word of a run: bytes k = 0..3 hold weights j+k (low nibble) and j+16+k (high nibble).
__device__ inline float word_dot(uint32_t word, float4 xl, float4 xh) {
  uint32_t lo = word & 0x0F0F0F0Fu, hi = (word >> 4) & 0x0F0F0F0Fu;
  float d = xl.x * nibble_to_float(lo, 0x7440u);
  d = fmaf(xl.y, nibble_to_float(lo, 0x7441u), d);
  d = fmaf(xl.z, nibble_to_float(lo, 0x7442u), d);
  d = fmaf(xl.w, nibble_to_float(lo, 0x7443u), d);
  d = fmaf(xh.x, nibble_to_float(hi, 0x7440u), d);
  d = fmaf(xh.y, nibble_to_float(hi, 0x7441u), d);
  d = fmaf(xh.z, nibble_to_float(hi, 0x7442u), d);
  d = fmaf(xh.w, nibble_to_float(hi, 0x7443u), d);
  return d;
}

// Int4, CPU packing: 16 bytes per run of 32 weights (byte j = w[j] | w[j+16] << 4). A lane takes whole runs:
// one 16-byte load per row, for 8 rows at once, so 8 independent loads are in flight per lane and each x value
// (read through L1) serves 8 rows. The block's 4 warps split K for the same 8 rows and add their partial sums
// in a fixed order (deterministic), which gives 4x the warps in flight for the same rows. Each lane applies
// its run's group scale and zero point: s · (Σ x·u − z · Σ x) summed over runs is the group formula.
// bench/cuda/NOTES.md has the variants tried and their measurements.
constexpr int kInt4Rows = 8;
constexpr int kInt4SplitWarps = 4;
__global__ void gemv_int4_kernel(const uint8_t* __restrict__ codes, const float* __restrict__ scales, const float* __restrict__ zeros,
                                 const float* __restrict__ x, float* __restrict__ y, int rows, int cols, int group_size) {
  __shared__ float partial[kInt4SplitWarps][kInt4Rows];
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int row0 = blockIdx.x * kInt4Rows;
  int runs = cols / 32, groups = cols / group_size;
  size_t row_bytes = static_cast<size_t>(cols) / 2;
  float acc[kInt4Rows] = {};
  for (int r = warp * 32 + lane; r < runs; r += 32 * kInt4SplitWarps) {
    uint4 w[kInt4Rows];
#pragma unroll
    for (int i = 0; i < kInt4Rows; i++) w[i] = __ldg(reinterpret_cast<const uint4*>(codes + row_or_zero(row0 + i, rows) * row_bytes + r * 16));
    const float4* xr = reinterpret_cast<const float4*>(x + r * 32);
    float dot[kInt4Rows] = {};
    float xsum = 0.f;
#pragma unroll
    for (int q = 0; q < 4; q++) {
      float4 xl = __ldg(xr + q), xh = __ldg(xr + 4 + q);
      xsum += (xl.x + xl.y) + (xl.z + xl.w) + (xh.x + xh.y) + (xh.z + xh.w);
#pragma unroll
      for (int i = 0; i < kInt4Rows; i++) dot[i] += word_dot(q == 0 ? w[i].x : q == 1 ? w[i].y : q == 2 ? w[i].z : w[i].w, xl, xh);
    }
    int g = (r * 32) / group_size;
#pragma unroll
    for (int i = 0; i < kInt4Rows; i++) {
      size_t gi = row_or_zero(row0 + i, rows) * groups + g;
      acc[i] = fmaf(__ldg(scales + gi), dot[i] - __ldg(zeros + gi) * xsum, acc[i]);
    }
  }
#pragma unroll
  for (int i = 0; i < kInt4Rows; i++) {
    float v = warp_sum(acc[i]);
    if (lane == 0) partial[warp][i] = v;
  }
  __syncthreads();
  if (threadIdx.x < kInt4Rows && row0 + threadIdx.x < rows) {
    float v = 0.f;
    for (int k = 0; k < kInt4SplitWarps; k++) v += partial[k][threadIdx.x];
    y[row0 + threadIdx.x] = v;
  }
}

// E4M3 decoded exactly by placing its bits at float32's exponent/mantissa positions and scaling by 2^120.
__device__ inline float e4m3_to_float(uint32_t c) {
  return __uint_as_float(((c & 0x80u) << 24) | ((c & 0x7Fu) << 20)) * 1.329228e36f;
}

// FP8 E4M3 with a scale per row: a lane reads 4 weights (one 32-bit word) per step, the warp 128 consecutive.
__global__ void gemv_fp8_channel_kernel(const uint8_t* __restrict__ codes, const float* __restrict__ scales, const float* __restrict__ x,
                                        float* __restrict__ y, int rows, int cols) {
  int row0 = first_row();
  if (row0 >= rows) return;
  int lane = threadIdx.x & 31;
  const uint8_t* cr[kRowsPerWarp];
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; i++) cr[i] = codes + row_or_zero(row0 + i, rows) * cols;
  float acc[kRowsPerWarp] = {};
  int vec_cols = (cols % 4 == 0) ? cols : 0;
#pragma unroll 4
  for (int k = lane * 4; k < vec_cols; k += 32 * 4) {
    float4 xv = __ldg(reinterpret_cast<const float4*>(x + k));
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; i++) {
      uint32_t word = __ldg(reinterpret_cast<const uint32_t*>(cr[i] + k));
      float a = acc[i];
      a = fmaf(xv.x, e4m3_to_float(word & 0xFFu), a);
      a = fmaf(xv.y, e4m3_to_float((word >> 8) & 0xFFu), a);
      a = fmaf(xv.z, e4m3_to_float((word >> 16) & 0xFFu), a);
      a = fmaf(xv.w, e4m3_to_float(word >> 24), a);
      acc[i] = a;
    }
  }
  for (int k = vec_cols + lane; k < cols; k += 32)
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; i++) acc[i] = fmaf(x[k], e4m3_to_float(cr[i][k]), acc[i]);
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; i++) acc[i] *= scales[row_or_zero(row0 + i, rows)];
  store_rows(acc, y, row0, rows);
}

inline int blocks_for(int rows) { return (rows + kRowsPerBlock - 1) / kRowsPerBlock; }

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace

extern "C" {

int glm_gemv_bf16(const uint16_t* weight, const float* x, float* y, int rows, int cols, void* stream) {
  GLM_REQUIRE(weight && x && y && rows >= 0 && cols > 0, "gemv_bf16: bad arguments");
  GLM_REQUIRE(aligned16(weight) && aligned16(x), "gemv_bf16: weight and x must be 16-byte aligned");
  if (rows == 0) return GLM_OK;
  gemv_bf16_kernel<<<blocks_for(rows), kWarpsPerBlock * 32, 0, static_cast<cudaStream_t>(stream)>>>(weight, x, y, rows, cols);
  GLM_LAUNCHED(gemv_bf16_kernel);
  return GLM_OK;
}

int glm_gemv_int4(const uint8_t* codes, const float* scales, const float* zeros, const float* x, float* y, int rows, int cols, int group_size, void* stream) {
  GLM_REQUIRE(codes && scales && zeros && x && y && rows >= 0, "gemv_int4: bad arguments");
  GLM_REQUIRE(group_size > 0 && group_size % 32 == 0 && cols % group_size == 0, "gemv_int4: cols must be a multiple of the group size, itself a multiple of 32");
  GLM_REQUIRE(aligned16(codes) && aligned16(x), "gemv_int4: codes and x must be 16-byte aligned");
  if (rows == 0) return GLM_OK;
  gemv_int4_kernel<<<(rows + kInt4Rows - 1) / kInt4Rows, kInt4SplitWarps * 32, 0, static_cast<cudaStream_t>(stream)>>>(codes, scales, zeros, x, y, rows, cols, group_size);
  GLM_LAUNCHED(gemv_int4_kernel);
  return GLM_OK;
}

int glm_gemv_fp8_channel(const uint8_t* codes, const float* scales, const float* x, float* y, int rows, int cols, void* stream) {
  GLM_REQUIRE(codes && scales && x && y && rows >= 0 && cols > 0, "gemv_fp8_channel: bad arguments");
  GLM_REQUIRE(aligned16(codes) && aligned16(x), "gemv_fp8_channel: codes and x must be 16-byte aligned");
  if (rows == 0) return GLM_OK;
  gemv_fp8_channel_kernel<<<blocks_for(rows), kWarpsPerBlock * 32, 0, static_cast<cudaStream_t>(stream)>>>(codes, scales, x, y, rows, cols);
  GLM_LAUNCHED(gemv_fp8_channel_kernel);
  return GLM_OK;
}
}
