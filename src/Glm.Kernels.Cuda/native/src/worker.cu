// The device contract's operations on the GPU (see glm_cuda.h). First versions, correct before fast: every
// element is decoded by the shared format functions (common/formats.h) that the host build tests in CI, and
// every kernel computes what the host build's loop computes, in float32. Decode (one row) goes through the
// tuned GEMV kernels of gemv.cu; everything else through the generic tiled kernels here, which reuse each
// decoded weight across a tile of tokens. bench/cuda/NOTES.md records what each version measured.
#include "status.cuh"
#include "common/checks.h"
#include "common/formats.h"
#include "common/moe.h"
#include "common/sampling.h"

using namespace glm;

namespace {

constexpr int kWarps = 4;   // warps per block in the row-per-warp kernels
constexpr int kTile = 8;    // tokens sharing one decoded weight row
constexpr int kMaxValuePerLane = 24;  // attention: value dims per lane (768 in all; MLA's latent is 512)

__device__ inline float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }
inline unsigned blocks(int64_t n, int per) { return static_cast<unsigned>((n + per - 1) / per); }

__device__ inline float* head_at(const glm_heads& h, int row, int head) {
  return h.data + static_cast<int64_t>(row) * h.row_stride + static_cast<int64_t>(head) * h.head_stride + h.offset;
}

__global__ void embedding_kernel(glm_weight table, const int32_t* ids, float* out) {
  int id = ids[blockIdx.x];
  float* o = out + static_cast<int64_t>(blockIdx.x) * table.cols;
  for (int c = threadIdx.x; c < table.cols; c += blockDim.x) o[c] = (id >= 0 && id < table.rows) ? weight_at(table, id, c) : 0.f;
}

// y[t, n] for one weight row n per warp and up to kTile tokens per block row: each weight element is decoded
// once and serves the tile. Lanes stride along K; partial sums reduce through shuffles.
__global__ void linear_tiled_kernel(glm_weight w, const float* __restrict__ x, int m, float* __restrict__ y, const float* __restrict__ bias) {
  int n = blockIdx.x * kWarps + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  int t0 = blockIdx.y * kTile;
  if (n >= w.rows) return;
  int tokens = min(kTile, m - t0);
  float acc[kTile] = {};
  for (int64_t k = lane; k < w.cols; k += 32) {
    float wv = weight_at(w, n, k);
#pragma unroll
    for (int t = 0; t < kTile; t++)
      if (t < tokens) acc[t] = fmaf(x[static_cast<int64_t>(t0 + t) * w.cols + k], wv, acc[t]);
  }
#pragma unroll
  for (int t = 0; t < kTile; t++) {
    float v = warp_sum(acc[t]);
    if (lane == 0 && t < tokens) y[static_cast<int64_t>(t0 + t) * w.rows + n] = v + (bias ? bias[n] : 0.f);
  }
}

__global__ void add_bias_kernel(float* y, const float* bias, int rows, int64_t n) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) y[i] += bias[i % rows];
}

// One warp per output element y[i, h][j]; grid.x walks (row, head) pairs (a prefill has more than grid.y's
// 65,535: 2,048 rows x 64 heads), grid.y the tiles of j.
__global__ void heads_times_weight_kernel(glm_weight w, int rows_per_head, int row_offset, glm_heads x, glm_heads y) {
  int j = blockIdx.y * kWarps + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  int i = blockIdx.x / x.count, h = blockIdx.x % x.count;
  if (j >= y.width) return;
  const float* xi = head_at(x, i, h);
  int64_t row = static_cast<int64_t>(h) * rows_per_head + row_offset + j;
  float acc = 0.f;
  for (int64_t k = lane; k < w.cols; k += 32) acc = fmaf(xi[k], weight_at(w, row, k), acc);
  acc = warp_sum(acc);
  if (lane == 0) head_at(y, i, h)[j] = acc;
}

// One block per (row, head): the sum of squares through warps and shared memory, then the scaled write.
__global__ void rmsnorm_heads_kernel(glm_heads x, const float* __restrict__ w, float eps, glm_heads out) {
  int i = blockIdx.x / x.count, h = blockIdx.x % x.count;
  const float* v = head_at(x, i, h);
  float* o = head_at(out, i, h);
  float sum = 0.f;
  for (int k = threadIdx.x; k < x.width; k += blockDim.x) sum += v[k] * v[k];
  __shared__ float partial[32];
  sum = warp_sum(sum);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = sum;
  __syncthreads();
  if (threadIdx.x < 32) {
    float s = threadIdx.x < (blockDim.x >> 5) ? partial[threadIdx.x] : 0.f;
    s = warp_sum(s);
    if (threadIdx.x == 0) partial[0] = 1.f / sqrtf(s / x.width + eps);
  }
  __syncthreads();
  float scale = partial[0];
  // In place is allowed: every thread read its elements above, and writes only those.
  for (int k = threadIdx.x; k < x.width; k += blockDim.x) o[k] = v[k] * scale * w[k];
}

// One block per (row, head); the rotary part is staged in shared memory so the de-interleaving layout reads
// all its inputs before any thread writes.
__global__ void rope_heads_kernel(glm_heads x, const int32_t* positions, int rotary_dim, int layout, const float* inv_freq) {
  extern __shared__ float staged[];
  int i = blockIdx.x / x.count, h = blockIdx.x % x.count;
  float* v = head_at(x, i, h);
  for (int k = threadIdx.x; k < rotary_dim; k += blockDim.x) staged[k] = v[k];
  __syncthreads();
  int half = rotary_dim / 2;
  float pos = static_cast<float>(positions[i]);
  for (int k = threadIdx.x; k < half; k += blockDim.x) {
    float s, c;
    sincosf(pos * inv_freq[k], &s, &c);
    rope_rotate(staged, v, k, half, layout, c, s);
  }
}

__global__ void copy_heads_kernel(glm_heads source, glm_heads destination) {
  int i = blockIdx.x / source.count, h = blockIdx.x % source.count;
  const float* s = head_at(source, i, h);
  float* d = head_at(destination, i, h);
  for (int k = threadIdx.x; k < source.width; k += blockDim.x) d[k] = s[k];
}

__global__ void add_kernel(float* into, const float* x, int64_t n) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) into[i] += x[i];
}

__global__ void silu_mul_halves_kernel(const float* gate_up, int inter, int64_t n, float* out) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  int64_t r = i / inter, c = i % inter;
  out[i] = silu(gate_up[r * 2 * inter + c]) * gate_up[r * 2 * inter + inter + c];
}

__global__ void gather_rows_kernel(const float* x, int cols, const int32_t* rows, float* out) {
  const float* s = x + static_cast<int64_t>(rows[blockIdx.x]) * cols;
  float* d = out + static_cast<int64_t>(blockIdx.x) * cols;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) d[c] = s[c];
}

// One thread encodes one record (a key or a value of one head of one row), exactly as the CPU codecs.
__global__ void kv_write_kernel(glm_kv_layer layer, glm_step step, const float* keys, const float* values) {
  int64_t item = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  int per_row = layer.kv_heads * (layer.value_is_key_prefix ? 1 : 2);
  if (item >= static_cast<int64_t>(step.rows) * per_row) return;
  int r = static_cast<int>(item / per_row), local = static_cast<int>(item % per_row);
  int h = local % layer.kv_heads;
  bool value = local >= layer.kv_heads;
  int64_t slot = slot_of(step, r, step.positions[r]);
  if (slot < 0 || slot >= layer.slots) return;
  if (!value)
    kv_encode(layer.dtype, keys + (static_cast<int64_t>(r) * layer.kv_heads + h) * layer.key_dim, layer.key_dim,
              const_cast<uint8_t*>(kv_key_record(layer, slot, h)));
  else
    kv_encode(layer.dtype, values + (static_cast<int64_t>(r) * layer.kv_heads + h) * layer.value_dim, layer.value_dim,
              const_cast<uint8_t*>(kv_value_record(layer, slot, h)));
}

// One warp per (row, query head), walking its sequence's positions in order with an online softmax: lanes
// split the key dims for each score and the value dims for the weighted sum.
__global__ void paged_attention_kernel(glm_kv_layer layer, glm_step step, const float* __restrict__ queries, int heads, int head_dim,
                                       int queries_per_kv_head, float scale, int value_dim, float* __restrict__ output) {
  int item = blockIdx.x * kWarps + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (item >= step.rows * heads) return;
  int r = item / heads, h = item % heads, kvh = h / queries_per_kv_head;
  const float* q = queries + (static_cast<int64_t>(r) * heads + h) * head_dim;
  int value_record_dim = layer.value_is_key_prefix ? layer.key_dim : layer.value_dim;
  int context = step.positions[r] + 1;
  float running_max = -INFINITY, denominator = 0.f;
  float acc[kMaxValuePerLane] = {};
  for (int t = 0; t < context; t++) {
    int64_t slot = slot_of(step, r, t);
    const uint8_t* k = kv_key_record(layer, slot, kvh);
    float d = 0.f;
    for (int i = lane; i < head_dim; i += 32) d = fmaf(q[i], kv_value_at(layer.dtype, k, layer.key_dim, i), d);
    float s = warp_sum(d) * scale;
    float new_max = fmaxf(running_max, s);
    float correction = expf(running_max - new_max), p = expf(s - new_max);
    denominator = denominator * correction + p;
    running_max = new_max;
    const uint8_t* v = kv_value_record(layer, slot, kvh);
#pragma unroll
    for (int j = 0; j < kMaxValuePerLane; j++) {
      int i = lane + 32 * j;
      if (i < value_dim) acc[j] = acc[j] * correction + p * kv_value_at(layer.dtype, v, value_record_dim, i);
    }
  }
  float* o = output + (static_cast<int64_t>(r) * heads + h) * value_dim;
  float inv = 1.f / denominator;
#pragma unroll
  for (int j = 0; j < kMaxValuePerLane; j++) {
    int i = lane + 32 * j;
    if (i < value_dim) o[i] = acc[j] * inv;
  }
}

// One block per token: the experts' scores by threads, then one thread chooses (common/moe.h).
__global__ void moe_route_kernel(const float* x, const float* gate_weight, const float* bias, int experts, int hidden, int top_k,
                                 int groups, int topk_group, int norm, float scaling, int32_t* chosen, float* weights) {
  extern __shared__ float shared[];
  float* scores = shared;
  float* choice = scores + experts;
  float* group_score = choice + experts;
  uint8_t* taken = reinterpret_cast<uint8_t*>(group_score + groups);
  uint8_t* keep = taken + experts;
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * hidden;
  for (int e = threadIdx.x; e < experts; e += blockDim.x) {
    const float* we = gate_weight + static_cast<int64_t>(e) * hidden;
    float d = 0.f;
    for (int k = 0; k < hidden; k++) d += xr[k] * we[k];
    scores[e] = sigmoid(d);
    choice[e] = scores[e] + (bias ? bias[e] : 0.f);
  }
  __syncthreads();
  if (threadIdx.x == 0)
    moe_select(scores, choice, taken, group_score, keep, experts, top_k, groups, topk_group, norm != 0, scaling,
               chosen + static_cast<int64_t>(blockIdx.x) * top_k, weights + static_cast<int64_t>(blockIdx.x) * top_k);
}

// One block groups the picks by expert, stably: thread e counts and then places expert e's picks in pick order.
__global__ void moe_group_kernel(const int32_t* chosen, int picks, int experts, int32_t* expert_start, int32_t* order) {
  for (int e = threadIdx.x; e < experts; e += blockDim.x) {
    int count = 0;
    for (int p = 0; p < picks; p++) count += chosen[p] == e;
    expert_start[e + 1] = count;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    expert_start[0] = 0;
    for (int e = 0; e < experts; e++) expert_start[e + 1] += expert_start[e];
  }
  __syncthreads();
  for (int e = threadIdx.x; e < experts; e += blockDim.x) {
    int at = expert_start[e];
    for (int p = 0; p < picks; p++)
      if (chosen[p] == e) order[at++] = p;
  }
}

// act[p, n] = silu(gate_e[n] . x_t) * (up_e[n] . x_t) for expert e's picks p, a warp per row n, tiles of picks.
__global__ void moe_gate_up_kernel(const glm_weight* gate, const glm_weight* up, int intermediate, int hidden, const float* x, int top_k,
                                   const int32_t* expert_start, const int32_t* order, float* act) {
  int e = blockIdx.y, n = blockIdx.x * kWarps + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  int first = expert_start[e], last = expert_start[e + 1];
  if (first == last || n >= intermediate) return;
  glm_weight g = gate[e], u = up[e];
  for (int tile = first; tile < last; tile += kTile) {
    int tokens = min(kTile, last - tile);
    float ga[kTile] = {}, ua[kTile] = {};
    for (int k = lane; k < hidden; k += 32) {
      float gw = weight_at(g, n, k), uw = weight_at(u, n, k);
#pragma unroll
      for (int t = 0; t < kTile; t++)
        if (t < tokens) {
          float xv = x[static_cast<int64_t>(order[tile + t] / top_k) * hidden + k];
          ga[t] = fmaf(xv, gw, ga[t]);
          ua[t] = fmaf(xv, uw, ua[t]);
        }
    }
#pragma unroll
    for (int t = 0; t < kTile; t++) {
      float gs = warp_sum(ga[t]), us = warp_sum(ua[t]);
      if (lane == 0 && t < tokens) act[static_cast<int64_t>(order[tile + t]) * intermediate + n] = silu(gs) * us;
    }
  }
}

// contribution[p, n] = weights[p] * (down_e[n] . act_p).
__global__ void moe_down_kernel(const glm_weight* down, int intermediate, int hidden, const float* act, const float* weights,
                                const int32_t* expert_start, const int32_t* order, float* contribution) {
  int e = blockIdx.y, n = blockIdx.x * kWarps + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  int first = expert_start[e], last = expert_start[e + 1];
  if (first == last || n >= hidden) return;
  glm_weight d = down[e];
  for (int tile = first; tile < last; tile += kTile) {
    int tokens = min(kTile, last - tile);
    float acc[kTile] = {};
    for (int k = lane; k < intermediate; k += 32) {
      float dw = weight_at(d, n, k);
#pragma unroll
      for (int t = 0; t < kTile; t++)
        if (t < tokens) acc[t] = fmaf(act[static_cast<int64_t>(order[tile + t]) * intermediate + k], dw, acc[t]);
    }
#pragma unroll
    for (int t = 0; t < kTile; t++) {
      float v = warp_sum(acc[t]);
      if (lane == 0 && t < tokens) {
        int p = order[tile + t];
        contribution[static_cast<int64_t>(p) * hidden + n] = v * weights[p];
      }
    }
  }
}

// out[r, :] = sum over the token's picks, in their (ascending expert) order.
__global__ void moe_combine_kernel(const float* contribution, int hidden, int top_k, float* out) {
  int r = blockIdx.x;
  for (int d = threadIdx.x; d < hidden; d += blockDim.x) {
    float s = 0.f;
    for (int j = 0; j < top_k; j++) s += contribution[(static_cast<int64_t>(r) * top_k + j) * hidden + d];
    out[static_cast<int64_t>(r) * hidden + d] = s;
  }
}

// Version 1: one thread decides a row with the shared serial sampler (bench/cuda/NOTES.md: a block-parallel
// max, exp and selection is the next step); rows run in parallel.
__global__ void sample_kernel(const float* logits, int rows, int vocab, const glm_sample_params* params, float* probs, int32_t* order,
                              int32_t* tokens) {
  int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  glm_sample_params p = params[r];
  sample_params_t s{p.temperature, p.top_k, p.top_p, p.min_p, p.uniform};
  tokens[r] = sample_row(logits + static_cast<int64_t>(r) * vocab, vocab, s, probs + static_cast<int64_t>(r) * vocab,
                         order + static_cast<int64_t>(r) * vocab);
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// The tuned decode kernels of gemv.cu take one row at a time in these layouts.
bool has_gemv(const glm_weight& w, const float* x) {
  if (!aligned16(x) || !aligned16(w.data)) return false;
  if (w.format == GLM_WEIGHT_BF16) return w.cols % 8 == 0;
  if (w.format == GLM_WEIGHT_INT4) return true;
  if (w.format == GLM_WEIGHT_FP8) return w.block_rows == 1 && w.block_cols >= w.cols && w.cols % 4 == 0;
  return false;
}

int gemv(const glm_weight& w, const float* x, float* y, void* stream) {
  switch (w.format) {
    case GLM_WEIGHT_BF16: return glm_gemv_bf16(static_cast<const uint16_t*>(w.data), x, y, w.rows, w.cols, stream);
    case GLM_WEIGHT_INT4:
      return glm_gemv_int4(static_cast<const uint8_t*>(w.data), w.scales, w.zeros, x, y, w.rows, w.cols, w.group_size, stream);
    default: return glm_gemv_fp8_channel(static_cast<const uint8_t*>(w.data), w.scales, x, y, w.rows, w.cols, stream);
  }
}

}  // namespace

extern "C" {

int glm_cuda_is_host_build(void) { return 0; }

int glm_cuda_memory_info(size_t* free_bytes, size_t* total_bytes) {
  GLM_REQUIRE(free_bytes && total_bytes, "null output pointer");
  GLM_CHECK(cudaMemGetInfo(free_bytes, total_bytes));
  return GLM_OK;
}

int glm_cuda_copy_on_device(void* destination, const void* source, size_t bytes, void* stream) {
  GLM_REQUIRE(destination && source, "copy on device: null pointer");
  GLM_CHECK(cudaMemcpyAsync(destination, source, bytes, cudaMemcpyDeviceToDevice, as_stream(stream)));
  return GLM_OK;
}

int glm_embedding(const glm_weight* table, const int32_t* ids, int n, float* out, void* stream) {
  GLM_CHECKED(check_weight(table));
  GLM_REQUIRE(n >= 0 && (n == 0 || (ids && out)), "embedding: bad arguments");
  if (n == 0) return GLM_OK;
  embedding_kernel<<<n, 256, 0, as_stream(stream)>>>(*table, ids, out);
  GLM_LAUNCHED(embedding_kernel);
  return GLM_OK;
}

int glm_linear(const glm_weight* weight, const float* x, int m, float* y, const float* bias, void* stream) {
  GLM_CHECKED(check_weight(weight));
  GLM_REQUIRE(m >= 0 && (m == 0 || (x && y)), "linear: bad arguments");
  if (m == 0) return GLM_OK;
  const glm_weight& w = *weight;
  if (m <= 2 && has_gemv(w, x) && (m == 1 || aligned16(x + w.cols))) {
    for (int i = 0; i < m; i++) {
      int status = gemv(w, x + static_cast<int64_t>(i) * w.cols, y + static_cast<int64_t>(i) * w.rows, stream);
      if (status != GLM_OK) return status;
    }
    if (bias) {
      int64_t n = static_cast<int64_t>(m) * w.rows;
      add_bias_kernel<<<blocks(n, 256), 256, 0, as_stream(stream)>>>(y, bias, w.rows, n);
      GLM_LAUNCHED(add_bias_kernel);
    }
    return GLM_OK;
  }
  dim3 grid(blocks(w.rows, kWarps), blocks(m, kTile));  // grid.y: m / 8 token tiles, within 65,535 up to 524,280 tokens
  linear_tiled_kernel<<<grid, kWarps * 32, 0, as_stream(stream)>>>(w, x, m, y, bias);
  GLM_LAUNCHED(linear_tiled_kernel);
  return GLM_OK;
}

int glm_heads_times_weight(const glm_weight* weight, int rows_per_head, int row_offset, glm_heads x, glm_heads y, void* stream) {
  GLM_CHECKED(check_weight(weight));
  GLM_CHECKED(check_heads(x));
  GLM_CHECKED(check_heads(y));
  GLM_REQUIRE(x.width == weight->cols && x.count == y.count && x.rows == y.rows, "heads_times_weight: shapes disagree");
  GLM_REQUIRE(static_cast<int64_t>(x.count - 1) * rows_per_head + row_offset + y.width <= weight->rows, "heads_times_weight: rows past the weight");
  if (x.rows == 0) return GLM_OK;
  dim3 grid(static_cast<unsigned>(x.rows * x.count), blocks(y.width, kWarps));
  heads_times_weight_kernel<<<grid, kWarps * 32, 0, as_stream(stream)>>>(*weight, rows_per_head, row_offset, x, y);
  GLM_LAUNCHED(heads_times_weight_kernel);
  return GLM_OK;
}

int glm_rmsnorm_heads(glm_heads x, const float* weight, float eps, glm_heads out, void* stream) {
  GLM_CHECKED(check_heads(x));
  GLM_CHECKED(check_heads(out));
  GLM_REQUIRE(weight && x.rows == out.rows && x.count == out.count && x.width == out.width, "rmsnorm_heads: shapes disagree");
  if (x.rows == 0) return GLM_OK;
  rmsnorm_heads_kernel<<<x.rows * x.count, 256, 0, as_stream(stream)>>>(x, weight, eps, out);
  GLM_LAUNCHED(rmsnorm_heads_kernel);
  return GLM_OK;
}

int glm_rope_heads(glm_heads x, const int32_t* positions, int rotary_dim, int layout, const float* inv_freq, void* stream) {
  GLM_CHECKED(check_heads(x));
  GLM_REQUIRE(positions && inv_freq && rotary_dim % 2 == 0 && rotary_dim <= x.width, "rope_heads: bad arguments");
  GLM_REQUIRE(layout >= GLM_ROPE_INTERLEAVED && layout <= GLM_ROPE_INTERLEAVED_TO_HALF, "rope_heads: unknown layout");
  if (x.rows == 0 || rotary_dim == 0) return GLM_OK;
  rope_heads_kernel<<<x.rows * x.count, 64, rotary_dim * sizeof(float), as_stream(stream)>>>(x, positions, rotary_dim, layout, inv_freq);
  GLM_LAUNCHED(rope_heads_kernel);
  return GLM_OK;
}

int glm_copy_heads(glm_heads source, glm_heads destination, void* stream) {
  GLM_CHECKED(check_heads(source));
  GLM_CHECKED(check_heads(destination));
  GLM_REQUIRE(source.rows == destination.rows && source.count == destination.count && source.width <= destination.width, "copy_heads: shapes disagree");
  if (source.rows == 0) return GLM_OK;
  copy_heads_kernel<<<source.rows * source.count, 128, 0, as_stream(stream)>>>(source, destination);
  GLM_LAUNCHED(copy_heads_kernel);
  return GLM_OK;
}

int glm_add_f32(float* into, const float* x, int64_t n, void* stream) {
  GLM_REQUIRE(n >= 0 && (n == 0 || (into && x)), "add: bad arguments");
  if (n == 0) return GLM_OK;
  add_kernel<<<blocks(n, 256), 256, 0, as_stream(stream)>>>(into, x, n);
  GLM_LAUNCHED(add_kernel);
  return GLM_OK;
}

int glm_silu_mul_halves(const float* gate_up, int rows, int inter, float* out, void* stream) {
  GLM_REQUIRE(rows >= 0 && inter > 0 && (rows == 0 || (gate_up && out)), "silu_mul_halves: bad arguments");
  int64_t n = static_cast<int64_t>(rows) * inter;
  if (n == 0) return GLM_OK;
  silu_mul_halves_kernel<<<blocks(n, 256), 256, 0, as_stream(stream)>>>(gate_up, inter, n, out);
  GLM_LAUNCHED(silu_mul_halves_kernel);
  return GLM_OK;
}

int glm_gather_rows(const float* x, int cols, const int32_t* rows, int n, float* out, void* stream) {
  GLM_REQUIRE(cols > 0 && n >= 0 && (n == 0 || (x && rows && out)), "gather_rows: bad arguments");
  if (n == 0) return GLM_OK;
  gather_rows_kernel<<<n, 256, 0, as_stream(stream)>>>(x, cols, rows, out);
  GLM_LAUNCHED(gather_rows_kernel);
  return GLM_OK;
}

int glm_kv_write(glm_kv_layer layer, glm_step step, const float* keys, const float* values, void* stream) {
  GLM_CHECKED(check_kv_layer(layer));
  GLM_CHECKED(check_step(step));
  GLM_REQUIRE(step.rows == 0 || (keys && (layer.value_is_key_prefix || values)), "kv_write: null keys or values");
  int64_t items = static_cast<int64_t>(step.rows) * layer.kv_heads * (layer.value_is_key_prefix ? 1 : 2);
  if (items == 0) return GLM_OK;
  kv_write_kernel<<<blocks(items, 128), 128, 0, as_stream(stream)>>>(layer, step, keys, values);
  GLM_LAUNCHED(kv_write_kernel);
  return GLM_OK;
}

int glm_paged_attention(glm_kv_layer layer, glm_step step, const float* queries, int heads, int head_dim, int queries_per_kv_head,
                        float scale, int value_dim, float* output, void* stream) {
  GLM_CHECKED(check_kv_layer(layer));
  GLM_CHECKED(check_step(step));
  GLM_REQUIRE(queries_per_kv_head > 0 && heads == layer.kv_heads * queries_per_kv_head, "paged_attention: heads must be kv heads times queries per kv head");
  GLM_REQUIRE(head_dim == layer.key_dim && value_dim == layer.value_dim, "paged_attention: dims disagree with the pool");
  GLM_REQUIRE(value_dim <= 32 * kMaxValuePerLane, "paged_attention: value dims past 768 are not supported yet");
  GLM_REQUIRE(step.rows == 0 || (queries && output), "paged_attention: null buffers");
  int64_t items = static_cast<int64_t>(step.rows) * heads;
  if (items == 0) return GLM_OK;
  paged_attention_kernel<<<blocks(items, kWarps), kWarps * 32, 0, as_stream(stream)>>>(layer, step, queries, heads, head_dim,
                                                                                       queries_per_kv_head, scale, value_dim, output);
  GLM_LAUNCHED(paged_attention_kernel);
  return GLM_OK;
}

int glm_moe_route(const float* x, int rows, const float* gate_weight, const float* correction_bias, int experts, int hidden, int top_k,
                  int groups, int topk_group, int norm_topk_prob, float routed_scaling_factor, int32_t* chosen, float* weights,
                  int32_t* expert_start, int32_t* order, void* stream) {
  GLM_REQUIRE(rows >= 0 && experts > 0 && hidden > 0 && top_k > 0 && top_k <= experts && groups > 0 && experts % groups == 0 &&
                  topk_group > 0 && topk_group <= groups, "moe_route: bad shape");
  GLM_REQUIRE(gate_weight && expert_start && (rows == 0 || (x && chosen && weights && order)), "moe_route: null buffers");
  size_t shared = (2 * static_cast<size_t>(experts) + groups) * sizeof(float) + experts + groups;
  GLM_REQUIRE(shared <= 48 * 1024, "moe_route: too many experts for one block's shared memory");
  if (rows > 0) {
    moe_route_kernel<<<rows, 128, shared, as_stream(stream)>>>(x, gate_weight, correction_bias, experts, hidden, top_k, groups, topk_group,
                                                               norm_topk_prob, routed_scaling_factor, chosen, weights);
    GLM_LAUNCHED(moe_route_kernel);
  }
  moe_group_kernel<<<1, 256, 0, as_stream(stream)>>>(chosen, rows * top_k, experts, expert_start, order);
  GLM_LAUNCHED(moe_group_kernel);
  return GLM_OK;
}

int glm_moe_experts(const glm_weight* gate, const glm_weight* up, const glm_weight* down, int experts, int intermediate, int hidden,
                    const float* x, int rows, int top_k, const int32_t* chosen, const float* weights, const int32_t* expert_start,
                    const int32_t* order, float* scratch, float* out, void* stream) {
  GLM_REQUIRE(gate && up && down && experts > 0 && intermediate > 0 && hidden > 0 && top_k > 0, "moe_experts: bad arguments");
  GLM_REQUIRE(rows == 0 || (x && chosen && weights && expert_start && order && scratch && out), "moe_experts: null buffers");
  if (rows == 0) return GLM_OK;
  int64_t picks = static_cast<int64_t>(rows) * top_k;
  float* act = scratch;
  float* contribution = scratch + picks * intermediate;
  moe_gate_up_kernel<<<dim3(blocks(intermediate, kWarps), experts), kWarps * 32, 0, as_stream(stream)>>>(
      gate, up, intermediate, hidden, x, top_k, expert_start, order, act);
  GLM_LAUNCHED(moe_gate_up_kernel);
  moe_down_kernel<<<dim3(blocks(hidden, kWarps), experts), kWarps * 32, 0, as_stream(stream)>>>(
      down, intermediate, hidden, act, weights, expert_start, order, contribution);
  GLM_LAUNCHED(moe_down_kernel);
  moe_combine_kernel<<<rows, 256, 0, as_stream(stream)>>>(contribution, hidden, top_k, out);
  GLM_LAUNCHED(moe_combine_kernel);
  return GLM_OK;
}

int glm_sample(const float* logits, int rows, int vocab, const glm_sample_params* params, float* scratch_probs, int32_t* scratch_order,
               int32_t* tokens, void* stream) {
  GLM_REQUIRE(rows >= 0 && vocab > 0 && (rows == 0 || (logits && params && scratch_probs && scratch_order && tokens)), "sample: bad arguments");
  if (rows == 0) return GLM_OK;
  sample_kernel<<<blocks(rows, 32), 32, 0, as_stream(stream)>>>(logits, rows, vocab, params, scratch_probs, scratch_order, tokens);
  GLM_LAUNCHED(sample_kernel);
  return GLM_OK;
}
}
