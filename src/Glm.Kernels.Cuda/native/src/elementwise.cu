#include "status.cuh"

namespace {

__device__ inline float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// One block per row: sum of squares reduced through warps and shared memory, then the scaled write.
__global__ void rmsnorm_kernel(const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ y, int dim, float eps) {
  const float* row = x + static_cast<size_t>(blockIdx.x) * dim;
  float* out = y + static_cast<size_t>(blockIdx.x) * dim;
  float sum = 0.f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) sum += row[i] * row[i];
  __shared__ float partial[32];
  sum = warp_sum(sum);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = sum;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < (blockDim.x >> 5) ? partial[threadIdx.x] : 0.f;
    v = warp_sum(v);
    if (threadIdx.x == 0) partial[0] = rsqrtf(v / dim + eps);
  }
  __syncthreads();
  float scale = partial[0];
  for (int i = threadIdx.x; i < dim; i += blockDim.x) out[i] = row[i] * scale * w[i];
}

__global__ void silu_mul_kernel(const float* __restrict__ gate, const float* __restrict__ up, float* __restrict__ out, int64_t n) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) {
    float g = gate[i];
    out[i] = g / (1.f + expf(-g)) * up[i];
  }
}

// One block per (token, head): the rotary part is staged in shared memory so every layout, including the
// de-interleaving one, reads its inputs before any thread writes.
__global__ void rope_kernel(float* x, const int* positions, int heads, int head_dim, int rotary_dim, int layout, const float* inv_freq) {
  extern __shared__ float staged[];
  int token = blockIdx.x / heads, head = blockIdx.x % heads;
  float* v = x + (static_cast<size_t>(token) * heads + head) * head_dim;
  for (int i = threadIdx.x; i < rotary_dim; i += blockDim.x) staged[i] = v[i];
  __syncthreads();
  int half = rotary_dim / 2;
  float pos = static_cast<float>(positions[token]);
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    float s, c;
    sincosf(pos * inv_freq[i], &s, &c);
    float a, b;
    int out_a, out_b;
    if (layout == GLM_ROPE_HALF_SPLIT) { a = staged[i]; b = staged[i + half]; out_a = i; out_b = i + half; }
    else if (layout == GLM_ROPE_INTERLEAVED) { a = staged[2 * i]; b = staged[2 * i + 1]; out_a = 2 * i; out_b = 2 * i + 1; }
    else { a = staged[2 * i]; b = staged[2 * i + 1]; out_a = i; out_b = i + half; }
    v[out_a] = a * c - b * s;
    v[out_b] = b * c + a * s;
  }
}

}  // namespace

extern "C" {

int glm_rmsnorm_f32(const float* x, const float* weight, float* y, int rows, int dim, float eps, void* stream) {
  GLM_REQUIRE(x && weight && y && rows >= 0 && dim > 0, "rmsnorm: bad arguments");
  if (rows == 0) return GLM_OK;
  rmsnorm_kernel<<<rows, 256, 0, static_cast<cudaStream_t>(stream)>>>(x, weight, y, dim, eps);
  GLM_LAUNCHED(rmsnorm_kernel);
  return GLM_OK;
}

int glm_silu_mul_f32(const float* gate, const float* up, float* out, int64_t n, void* stream) {
  GLM_REQUIRE(gate && up && out && n >= 0, "silu_mul: bad arguments");
  if (n == 0) return GLM_OK;
  int blocks = static_cast<int>((n + 255) / 256);
  silu_mul_kernel<<<blocks, 256, 0, static_cast<cudaStream_t>(stream)>>>(gate, up, out, n);
  GLM_LAUNCHED(silu_mul_kernel);
  return GLM_OK;
}

int glm_rope_f32(float* x, const int* positions, int tokens, int heads, int head_dim, int rotary_dim, int layout, const float* inv_freq, void* stream) {
  GLM_REQUIRE(x && positions && inv_freq && tokens >= 0 && heads > 0 && rotary_dim % 2 == 0 && rotary_dim <= head_dim, "rope: bad arguments");
  GLM_REQUIRE(layout >= GLM_ROPE_INTERLEAVED && layout <= GLM_ROPE_INTERLEAVED_TO_HALF, "rope: unknown layout");
  if (tokens == 0) return GLM_OK;
  rope_kernel<<<tokens * heads, 64, rotary_dim * sizeof(float), static_cast<cudaStream_t>(stream)>>>(x, positions, heads, head_dim, rotary_dim, layout, inv_freq);
  GLM_LAUNCHED(rope_kernel);
  return GLM_OK;
}
}
