// C ABI of the Glm.Server CUDA worker. Every function returns 0 on success or a negative status; the message
// of the last failure on the calling thread is glm_cuda_last_error(). Nothing here aborts the host process.
//
// The same ABI is built twice: libglm_cuda.so from src/*.cu with nvcc (pointers are device memory, work is
// queued on a CUDA stream), and libglm_cuda_host.so from src/host/*.cpp with a plain C++ compiler (pointers
// are host memory, "streams" run each call at once). The C# worker cannot tell them apart, so CI runs all of
// its buffers, offsets, page tables and launch order through the host build; and the host build's loops are
// the references the GPU machine's kernel check compares every CUDA kernel against.
//
// Layouts are the CPU worker's: activations float32 row-major, one row per token; weights [rows = out
// features, cols = in features] in the stored format (glm_weight); KV pages in the CPU page format (per layer
// all key records, slot-major then head, then all value records; records as the CPU KV codecs write them).
#pragma once
#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define GLM_API __declspec(dllexport)
#else
#define GLM_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

enum glm_status { GLM_OK = 0, GLM_ERR_CUDA = -1, GLM_ERR_ARGUMENT = -2, GLM_ERR_UNSUPPORTED = -3 };
enum glm_rope_layout { GLM_ROPE_INTERLEAVED = 0, GLM_ROPE_HALF_SPLIT = 1, GLM_ROPE_INTERLEAVED_TO_HALF = 2 };
enum glm_weight_format { GLM_WEIGHT_F32 = 0, GLM_WEIGHT_BF16 = 1, GLM_WEIGHT_FP8 = 2, GLM_WEIGHT_INT4 = 3, GLM_WEIGHT_INT8 = 4 };
enum glm_kv_dtype { GLM_KV_F32 = 0, GLM_KV_BF16 = 1, GLM_KV_FP8 = 2, GLM_KV_INT4 = 3 };

// A weight matrix in its stored format; every pointer is device memory.
//   F32, BF16: data = rows x cols values.
//   FP8 E4M3:  data = rows x cols codes; scales in row-major block-grid order, block_rows x block_cols each
//              (per channel: 1 x cols; per tensor: rows x cols; block: 128 x 128).
//   INT4:      data = codes in the CPU packing (per run of 32 along a row: byte j = u[j] | u[j+16] << 4);
//              scales and zeros (integer codes 0..15 as floats) [rows, cols / group_size]; w = (u - z) * s.
//   INT8:      data = rows x cols signed codes; scales [rows] (one per output channel); w = code * s.
typedef struct glm_weight {
  int32_t format;
  int32_t rows, cols;
  int32_t group_size;
  int32_t block_rows, block_cols;
  const void* data;
  const float* scales;
  const float* zeros;
} glm_weight;

// A strided view of a [rows, row_stride] float32 tensor's rows as heads: head h of row i is
// data[i * row_stride + h * head_stride + offset .. + width).
typedef struct glm_heads {
  float* data;
  int32_t rows, row_stride;
  int32_t count, head_stride, offset, width;
} glm_heads;

// A step's page tables on the device: row r of the batch is at positions[r] and its sequence's block table
// starts at tables[table_offsets[r]]; the slot of position p is table[p / block_size] * block_size + p % block_size.
typedef struct glm_step {
  const int32_t* positions;
  const int32_t* table_offsets;
  const int32_t* tables;
  int32_t rows;
  int32_t block_size;
} glm_step;

// One layer of a paged KV pool: key records (and value records, unless the value is the key's prefix) of
// kv_heads heads per slot.
typedef struct glm_kv_layer {
  uint8_t* keys;
  uint8_t* values;  // null when value_is_key_prefix
  int32_t dtype;
  int32_t kv_heads, key_dim, value_dim;
  int32_t value_is_key_prefix;
  int64_t slots;
} glm_kv_layer;

GLM_API const char* glm_cuda_last_error(void);
GLM_API int glm_cuda_version(int* runtime_version, int* driver_version);
GLM_API int glm_cuda_device_count(int* count);
GLM_API int glm_cuda_device_name(int device, char* buffer, int length);
GLM_API int glm_cuda_set_device(int device);
// Free and total memory of the current device, in bytes.
GLM_API int glm_cuda_memory_info(size_t* free_bytes, size_t* total_bytes);
// 1 for the host build (plain C++ over host memory), 0 for the CUDA build.
GLM_API int glm_cuda_is_host_build(void);

GLM_API int glm_cuda_malloc(void** pointer, size_t bytes);
GLM_API int glm_cuda_free(void* pointer);
GLM_API int glm_cuda_copy_to_device(void* device, const void* host, size_t bytes, void* stream);
GLM_API int glm_cuda_copy_to_host(void* host, const void* device, size_t bytes, void* stream);
GLM_API int glm_cuda_copy_on_device(void* destination, const void* source, size_t bytes, void* stream);
GLM_API int glm_cuda_stream_create(void** stream);
GLM_API int glm_cuda_stream_destroy(void* stream);
GLM_API int glm_cuda_stream_synchronize(void* stream);

// --- single kernels (the first ones; the worker's ops below are built from the same pieces) ---------------

// y[r, :] = x[r, :] * rsqrt(mean(x[r, :]^2) + eps) * w, float32.
GLM_API int glm_rmsnorm_f32(const float* x, const float* weight, float* y, int rows, int dim, float eps, void* stream);
// out = silu(gate) * up.
GLM_API int glm_silu_mul_f32(const float* gate, const float* up, float* out, int64_t n, void* stream);
// Rotates the first rotary_dim dims of each of `heads` heads of each token in place (layouts as the CPU worker).
GLM_API int glm_rope_f32(float* x, const int* positions, int tokens, int heads, int head_dim, int rotary_dim,
                         int layout, const float* inv_freq, void* stream);
// y[n] = sum_k x[k] * W[n, k] for BF16 weights [rows, cols].
GLM_API int glm_gemv_bf16(const uint16_t* weight, const float* x, float* y, int rows, int cols, void* stream);
// Int4 group weights in the CPU worker's packing, scales and zero points per (row, group):
// y[n] = sum_g s * (sum_{k in g} x[k] * u[n,k] - z * sum_{k in g} x[k]).
GLM_API int glm_gemv_int4(const uint8_t* codes, const float* scales, const float* zeros, const float* x, float* y,
                          int rows, int cols, int group_size, void* stream);
// FP8 E4M3 weights with per-channel scales.
GLM_API int glm_gemv_fp8_channel(const uint8_t* codes, const float* scales, const float* x, float* y, int rows, int cols, void* stream);

// --- the device contract's operations (Glm.Kernels.Device.IWorker) -----------------------------------------

// out[i, :] = dequantized row ids[i] of table; ids in device memory.
GLM_API int glm_embedding(const glm_weight* table, const int32_t* ids, int n, float* out, void* stream);
// y[m, rows] = x[m, cols] . W^T (+ bias), any stored format; bias may be null.
GLM_API int glm_linear(const glm_weight* weight, const float* x, int m, float* y, const float* bias, void* stream);
// For row i and head h: y[i, h][j] = W[h * rows_per_head + row_offset + j, :] . x[i, h], j < y.width (x.width = W.cols).
GLM_API int glm_heads_times_weight(const glm_weight* weight, int rows_per_head, int row_offset, glm_heads x, glm_heads y, void* stream);
// RMSNorm of each head of x into the same head of out (may be the same view).
GLM_API int glm_rmsnorm_heads(glm_heads x, const float* weight, float eps, glm_heads out, void* stream);
// Rotary embedding of each head's first rotary_dim dims, in place, at each row's position.
GLM_API int glm_rope_heads(glm_heads x, const int32_t* positions, int rotary_dim, int layout, const float* inv_freq, void* stream);
// Copies each head of source into destination.
GLM_API int glm_copy_heads(glm_heads source, glm_heads destination, void* stream);
// into += x.
GLM_API int glm_add_f32(float* into, const float* x, int64_t n, void* stream);
// out[r, :] = silu(gate_up[r, :inter]) * gate_up[r, inter:], gate_up [rows, 2 * inter].
GLM_API int glm_silu_mul_halves(const float* gate_up, int rows, int inter, float* out, void* stream);
// out[i, :] = x[rows[i], :]; rows in device memory.
GLM_API int glm_gather_rows(const float* x, int cols, const int32_t* rows, int n, float* out, void* stream);
// Writes row r's keys [kv_heads * key_dim] (and values [kv_heads * value_dim]; null for latent caches) into
// the slot of its position, encoded in the layer's dtype exactly as the CPU codecs encode.
GLM_API int glm_kv_write(glm_kv_layer layer, glm_step step, const float* keys, const float* values, void* stream);
// Causal attention of each row's query heads (queries [rows, heads * head_dim]) over positions 0..position of
// its sequence; queries_per_kv_head query heads share a KV head; output [rows, heads * value_dim].
GLM_API int glm_paged_attention(glm_kv_layer layer, glm_step step, const float* queries, int heads, int head_dim,
                                int queries_per_kv_head, float scale, int value_dim, float* output, void* stream);
// GLM-4.5's MoE gate in float32 (sigmoid scores, correction bias only to choose, group-limited top-k, first
// index wins ties, optional renormalisation, scaling): chosen [rows, top_k] ascending by expert, weights
// likewise; then the picks grouped by expert, stably: expert e's are order[expert_start[e] .. expert_start[e+1]).
GLM_API int glm_moe_route(const float* x, int rows, const float* gate_weight, const float* correction_bias, int experts,
                          int hidden, int top_k, int groups, int topk_group, int norm_topk_prob, float routed_scaling_factor,
                          int32_t* chosen, float* weights, int32_t* expert_start, int32_t* order, void* stream);
// The routed experts: every pick through its expert's down(silu(gate(x)) * up(x)), times its weight, summed per
// token in ascending expert order. gate, up, down: device arrays of `experts` weights. scratch: at least
// rows * top_k * (intermediate + hidden) floats.
GLM_API int glm_moe_experts(const glm_weight* gate, const glm_weight* up, const glm_weight* down, int experts, int intermediate,
                            int hidden, const float* x, int rows, int top_k, const int32_t* chosen, const float* weights,
                            const int32_t* expert_start, const int32_t* order, float* scratch, float* out, void* stream);

// One token per row of logits [rows, vocab] (device memory), as Glm.Engine.Sampler draws it without penalties,
// biases, constraints or logprobs: params is a device array of rows entries (temperature, top_k, top_p, min_p and
// the uniform number the host drew); scratch holds rows * vocab floats and rows * vocab ints; tokens [rows].
typedef struct glm_sample_params {
  float temperature;
  int32_t top_k;
  float top_p;
  float min_p;
  double uniform;
} glm_sample_params;
GLM_API int glm_sample(const float* logits, int rows, int vocab, const glm_sample_params* params, float* scratch_probs,
                       int32_t* scratch_order, int32_t* tokens, void* stream);

#ifdef __cplusplus
}
#endif
