// C ABI of the Glm.Server CUDA worker. Every function returns 0 on success or a negative status; the message
// of the last failure on the calling thread is glm_cuda_last_error(). Nothing here aborts the host process.
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

GLM_API const char* glm_cuda_last_error(void);
GLM_API int glm_cuda_version(int* runtime_version, int* driver_version);
GLM_API int glm_cuda_device_count(int* count);
GLM_API int glm_cuda_device_name(int device, char* buffer, int length);
GLM_API int glm_cuda_set_device(int device);

GLM_API int glm_cuda_malloc(void** pointer, size_t bytes);
GLM_API int glm_cuda_free(void* pointer);
GLM_API int glm_cuda_copy_to_device(void* device, const void* host, size_t bytes, void* stream);
GLM_API int glm_cuda_copy_to_host(void* host, const void* device, size_t bytes, void* stream);
GLM_API int glm_cuda_stream_create(void** stream);
GLM_API int glm_cuda_stream_destroy(void* stream);
GLM_API int glm_cuda_stream_synchronize(void* stream);

// y[r, :] = x[r, :] * rsqrt(mean(x[r, :]^2) + eps) * w, float32.
GLM_API int glm_rmsnorm_f32(const float* x, const float* weight, float* y, int rows, int dim, float eps, void* stream);
// out = silu(gate) * up.
GLM_API int glm_silu_mul_f32(const float* gate, const float* up, float* out, int64_t n, void* stream);
// Rotates the first rotary_dim dims of each of `heads` heads of each token in place (layouts as the CPU worker).
GLM_API int glm_rope_f32(float* x, const int* positions, int tokens, int heads, int head_dim, int rotary_dim,
                         int layout, const float* inv_freq, void* stream);
// y[n] = sum_k x[k] * W[n, k] for BF16 weights [rows, cols].
GLM_API int glm_gemv_bf16(const uint16_t* weight, const float* x, float* y, int rows, int cols, void* stream);
// Int4 group weights in the CPU worker's packing (per run of 32: byte j = w[j] | w[j+16] << 4), scales and
// zero points per (row, group): y[n] = sum_g s * (sum_{k in g} x[k] * u[n,k] - z * sum_{k in g} x[k]).
GLM_API int glm_gemv_int4(const uint8_t* codes, const float* scales, const float* zeros, const float* x, float* y,
                          int rows, int cols, int group_size, void* stream);
// FP8 E4M3 weights with per-channel scales.
GLM_API int glm_gemv_fp8_channel(const uint8_t* codes, const float* scales, const float* x, float* y, int rows, int cols, void* stream);

#ifdef __cplusplus
}
#endif
