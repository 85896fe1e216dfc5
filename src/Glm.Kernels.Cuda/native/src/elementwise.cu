#include "status.cuh"

namespace {

__global__ void silu_mul_kernel(const float* __restrict__ gate, const float* __restrict__ up, float* __restrict__ out, int64_t n) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) {
    float g = gate[i];
    out[i] = g / (1.f + expf(-g)) * up[i];
  }
}

}  // namespace

extern "C" {

int glm_rmsnorm_f32(const float* x, const float* weight, float* y, int rows, int dim, float eps, void* stream) {
  GLM_REQUIRE(x && weight && y && rows >= 0 && dim > 0, "rmsnorm: bad arguments");
  // Whole rows are heads of one: the worker's kernel (worker.cu) serves both.
  glm_heads in{const_cast<float*>(x), rows, dim, 1, dim, 0, dim}, out{y, rows, dim, 1, dim, 0, dim};
  return glm_rmsnorm_heads(in, weight, eps, out, stream);
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
  // Packed heads: the worker's strided kernel (worker.cu) serves both.
  glm_heads view{x, tokens, heads * head_dim, heads, head_dim, 0, head_dim};
  return glm_rope_heads(view, positions, rotary_dim, layout, inv_freq, stream);
}
}
