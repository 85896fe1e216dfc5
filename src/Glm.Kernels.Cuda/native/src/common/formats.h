// Number formats and the weight and KV record layouts, written once for both builds: under nvcc every
// function is __host__ __device__, under a plain C++ compiler an ordinary inline function. Bit-exact with the
// C# formats (Glm.Kernels.Formats, Glm.Kernels.Attention.KvCodecs): the same rounding, the same packing.
// Both builds compile without fused multiply-add contraction where an encoder rounds (see glm_mul / glm_sub).
#pragma once
#include <stdint.h>
#include <string.h>
#include <math.h>
#include "glm_cuda.h"

#if defined(__CUDACC__)
#define GLM_HD __host__ __device__ __forceinline__
#else
#define GLM_HD inline
#endif

namespace glm {

GLM_HD float bits_to_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
GLM_HD uint32_t float_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

// Rounding arithmetic that no compiler may fuse (an encoder must match the C# encoder to the bit).
GLM_HD float glm_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  volatile float r = a * b;
  return r;
#endif
}
GLM_HD float glm_sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  volatile float r = a - b;
  return r;
#endif
}
GLM_HD float glm_div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  volatile float r = a / b;
  return r;
#endif
}
// Round to nearest, ties to even (the default rounding mode on both sides).
GLM_HD float round_even(float v) { return rintf(v); }

// Unaligned little-endian loads: KV records are packed without padding.
GLM_HD uint16_t load_u16(const uint8_t* p) { return (uint16_t)(p[0] | (p[1] << 8)); }
GLM_HD float load_f32(const uint8_t* p) {
  return bits_to_float((uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24));
}
GLM_HD void store_u16(uint8_t* p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
GLM_HD void store_f32(uint8_t* p, float f) {
  uint32_t u = float_to_bits(f);
  p[0] = (uint8_t)u; p[1] = (uint8_t)(u >> 8); p[2] = (uint8_t)(u >> 16); p[3] = (uint8_t)(u >> 24);
}

// --- BF16: the top half of a float32 -----------------------------------------------------------------------
GLM_HD float bf16_to_float(uint16_t b) { return bits_to_float((uint32_t)b << 16); }
GLM_HD uint16_t float_to_bf16(float f) {
  uint32_t bits = float_to_bits(f);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((bits >> 16) | 0x40);  // quiet NaN, keep sign
  return (uint16_t)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

// --- IEEE binary16, round to nearest even (System.Half's conversions) --------------------------------------
GLM_HD float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exponent = (h >> 10) & 0x1Fu, mantissa = h & 0x3FFu;
  if (exponent == 0x1F) return bits_to_float(sign | 0x7F800000u | (mantissa << 13));
  if (exponent == 0) {
    float v = (float)mantissa * 5.9604644775390625e-8f;  // 2^-24, exact
    return sign ? -v : v;
  }
  return bits_to_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}
GLM_HD uint16_t float_to_half(float f) {
  uint32_t bits = float_to_bits(f), sign = (bits >> 16) & 0x8000u, a = bits & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return (uint16_t)(sign | 0x7E00u | ((a >> 13) & 0x3FFu));  // NaN
  if (a >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u);                          // rounds past 65504: infinity
  if (a < 0x38800000u) {                                                             // below 2^-14: subnormal
    // The result counts 2^-24 steps: round a / 2^-24 to nearest even in integer arithmetic.
    if (a < 0x33000000u) return (uint16_t)sign;                                      // below half a step
    uint32_t mant = (a & 0x7FFFFFu) | 0x800000u;
    int shift = 126 - (int)(a >> 23);  // (exponent - 127) + 24 = value's power relative to 2^-24, minus 23
    uint32_t q = mant >> shift, rest = mant & ((1u << shift) - 1u), halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (q & 1u))) q++;
    return (uint16_t)(sign | q);
  }
  uint32_t r = a + 0xFFFu + ((a >> 13) & 1u);  // round the 13 dropped bits to even
  return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

// --- FP8 E4M3 (OCP e4m3fn): bias 7, no infinities, 448 largest; encoding rounds to even and saturates ----
GLM_HD float e4m3_to_float(uint32_t c) {
  // Sign, exponent and mantissa placed at float32's positions give the value times 2^-120 (subnormals too).
  return bits_to_float(((c & 0x80u) << 24) | ((c & 0x7Fu) << 20)) * 1.329227995784916e36f;
}
GLM_HD uint8_t float_to_e4m3(float v) {
  if (v != v) return 0x7F;
  uint32_t bits = float_to_bits(v);
  uint8_t sign = (uint8_t)((bits >> 24) & 0x80u);
  float a = bits_to_float(bits & 0x7FFFFFFFu);
  if (a >= 448.f) return (uint8_t)(sign | 0x7E);
  if (a < 0.015625f) return (uint8_t)(sign | (int)round_even(a * 512.f));  // subnormal steps of 2^-9; 8 is the first normal
  int exponent = (int)((float_to_bits(a) >> 23) & 0xFFu) - 127;
  float scaled = bits_to_float((float_to_bits(a) & 0x7FFFFFu) | 0x3F800000u);  // a / 2^exponent, in [1, 2)
  int mantissa = (int)round_even((scaled - 1.f) * 8.f);
  if (mantissa >= 8) { mantissa = 0; exponent++; }
  int code = ((exponent + 7) << 3) | mantissa;
  return (uint8_t)(sign | (code < 0x7E ? code : 0x7E));
}

// --- weights: one element, dequantized ----------------------------------------------------------------------

// Unsigned code of element (row, col) of an Int4 matrix in the CPU packing.
GLM_HD int int4_code(const uint8_t* codes, int64_t cols, int64_t row, int64_t col) {
  int64_t block = (row * cols + col) / 32 * 16;
  int j = (int)(col % 32);
  uint8_t b = codes[block + (j & 15)];
  return j < 16 ? (b & 0xF) : (b >> 4);
}

GLM_HD float weight_at(const glm_weight& w, int64_t row, int64_t col) {
  switch (w.format) {
    case GLM_WEIGHT_F32: return ((const float*)w.data)[row * w.cols + col];
    case GLM_WEIGHT_BF16: return bf16_to_float(((const uint16_t*)w.data)[row * w.cols + col]);
    case GLM_WEIGHT_FP8: {
      int64_t grid_cols = (w.cols + w.block_cols - 1) / w.block_cols;
      return e4m3_to_float(((const uint8_t*)w.data)[row * w.cols + col]) * w.scales[row / w.block_rows * grid_cols + col / w.block_cols];
    }
    case GLM_WEIGHT_INT8: return (float)((const int8_t*)w.data)[row * w.cols + col] * w.scales[row];
    default: {
      int64_t g = row * (w.cols / w.group_size) + col / w.group_size;
      return ((float)int4_code((const uint8_t*)w.data, w.cols, row, col) - w.zeros[g]) * w.scales[g];
    }
  }
}

// --- KV records (Glm.Kernels.Attention.KvCodecs) --------------------------------------------------------------

constexpr int kInt4KvGroup = 64;

GLM_HD int kv_record_bytes(int dtype, int dim) {
  switch (dtype) {
    case GLM_KV_F32: return 4 * dim;
    case GLM_KV_BF16: return 2 * dim;
    case GLM_KV_FP8: return 4 + dim;
    default: return 4 * ((dim + kInt4KvGroup - 1) / kInt4KvGroup) + (dim + 1) / 2;
  }
}

// Byte and nibble of element i of an Int4 record of dim values: full runs of 32 packed for SIMD (byte j: value j
// low, value j + 16 high), a shorter tail in pairs.
GLM_HD void int4_kv_place(int i, int dim, int* byte_index, int* high) {
  int full = dim / 32 * 32;
  if (i < full) { *byte_index = i / 32 * 16 + ((i % 32) & 15); *high = (i % 32) >= 16; return; }
  int t = i - full;
  *byte_index = full / 2 + t / 2;
  *high = t & 1;
}

// Element i of a record encoded with record_dim values (a latent cache reads its value as a key prefix).
GLM_HD float kv_value_at(int dtype, const uint8_t* record, int record_dim, int i) {
  switch (dtype) {
    case GLM_KV_F32: return load_f32(record + 4 * i);
    case GLM_KV_BF16: return bf16_to_float(load_u16(record + 2 * i));
    case GLM_KV_FP8: return e4m3_to_float(record[4 + i]) * load_f32(record);
    default: {
      int groups = (record_dim + kInt4KvGroup - 1) / kInt4KvGroup, g = i / kInt4KvGroup, b, high;
      int4_kv_place(i, record_dim, &b, &high);
      int code = (record[4 * groups + b] >> (4 * high)) & 15;
      float scale = half_to_float(load_u16(record + 4 * g)), minimum = half_to_float(load_u16(record + 4 * g + 2));
      return (float)code * scale + minimum;
    }
  }
}

// Encodes one head's vector, as the CPU codecs do (serially: one thread per record).
GLM_HD void kv_encode(int dtype, const float* source, int dim, uint8_t* record) {
  switch (dtype) {
    case GLM_KV_F32:
      for (int i = 0; i < dim; i++) store_f32(record + 4 * i, source[i]);
      return;
    case GLM_KV_BF16:
      for (int i = 0; i < dim; i++) store_u16(record + 2 * i, float_to_bf16(source[i]));
      return;
    case GLM_KV_FP8: {
      float abs_max = 0.f;
      for (int i = 0; i < dim; i++) abs_max = fmaxf(abs_max, fabsf(source[i]));
      float scale = abs_max > 0.f ? glm_div(abs_max, 448.f) : 1.f;
      store_f32(record, scale);
      float inv = glm_div(1.f, scale);
      for (int i = 0; i < dim; i++) record[4 + i] = float_to_e4m3(glm_mul(source[i], inv));
      return;
    }
    default: {
      int groups = (dim + kInt4KvGroup - 1) / kInt4KvGroup;
      uint8_t* codes = record + 4 * groups;
      for (int i = 0; i < (dim + 1) / 2; i++) codes[i] = 0;
      for (int g = 0; g < groups; g++) {
        int start = g * kInt4KvGroup, end = start + kInt4KvGroup < dim ? start + kInt4KvGroup : dim;
        float mn = INFINITY, mx = -INFINITY;
        for (int i = start; i < end; i++) { mn = fminf(mn, source[i]); mx = fmaxf(mx, source[i]); }
        uint16_t min_h = float_to_half(mn), scale_h = float_to_half(glm_div(glm_sub(mx, mn), 15.f));
        float min_f = half_to_float(min_h), scale_f = half_to_float(scale_h);
        store_u16(record + 4 * g, scale_h);
        store_u16(record + 4 * g + 2, min_h);
        float inv = scale_f > 0.f ? glm_div(1.f, scale_f) : 0.f;
        for (int i = start; i < end; i++) {
          int c = (int)round_even(glm_mul(glm_sub(source[i], min_f), inv));
          c = c < 0 ? 0 : c > 15 ? 15 : c;
          int b, high;
          int4_kv_place(i, dim, &b, &high);
          codes[b] |= (uint8_t)(c << (4 * high));
        }
      }
      return;
    }
  }
}

// RoPE on pair i of a head's rotary part (the CPU worker's three layouts): reads the staged copy, writes v.
GLM_HD void rope_rotate(const float* staged, float* v, int i, int half, int layout, float c, float s) {
  float a, b;
  int out_a, out_b;
  if (layout == GLM_ROPE_HALF_SPLIT) { a = staged[i]; b = staged[i + half]; out_a = i; out_b = i + half; }
  else if (layout == GLM_ROPE_INTERLEAVED) { a = staged[2 * i]; b = staged[2 * i + 1]; out_a = 2 * i; out_b = 2 * i + 1; }
  else { a = staged[2 * i]; b = staged[2 * i + 1]; out_a = i; out_b = i + half; }  // interleaved in, de-interleaved out
  v[out_a] = a * c - b * s;
  v[out_b] = b * c + a * s;
}

GLM_HD float silu(float g) { return g / (1.f + expf(-g)); }
GLM_HD float sigmoid(float x) { return 1.f / (1.f + expf(-x)); }

// Slot of position p in a step row's block table.
GLM_HD int64_t slot_of(const glm_step& s, int row, int p) {
  const int32_t* table = s.tables + s.table_offsets[row];
  return (int64_t)table[p / s.block_size] * s.block_size + p % s.block_size;
}

GLM_HD const uint8_t* kv_key_record(const glm_kv_layer& l, int64_t slot, int head) {
  return l.keys + (slot * l.kv_heads + head) * kv_record_bytes(l.dtype, l.key_dim);
}
GLM_HD const uint8_t* kv_value_record(const glm_kv_layer& l, int64_t slot, int head) {
  return l.value_is_key_prefix ? kv_key_record(l, slot, head)
                               : l.values + (slot * l.kv_heads + head) * kv_record_bytes(l.dtype, l.value_dim);
}

}  // namespace glm
