// Argument checks shared by both builds' entry points, so the host build refuses exactly what the CUDA build
// refuses. Each returns null when the argument is usable, else the reason.
#pragma once
#include "glm_cuda.h"

namespace glm {

inline const char* check_weight(const glm_weight* w) {
  if (!w || !w->data) return "weight: null";
  if (w->rows <= 0 || w->cols <= 0) return "weight: empty shape";
  switch (w->format) {
    case GLM_WEIGHT_F32:
    case GLM_WEIGHT_BF16: return nullptr;
    case GLM_WEIGHT_FP8:
      if (!w->scales || w->block_rows <= 0 || w->block_cols <= 0) return "weight: FP8 needs scales and a scale block shape";
      return nullptr;
    case GLM_WEIGHT_INT4:
      if (!w->scales || !w->zeros) return "weight: Int4 needs scales and zero points";
      if (w->group_size <= 0 || w->group_size % 32 != 0 || w->cols % w->group_size != 0)
        return "weight: Int4 cols must be a multiple of the group size, itself a multiple of 32";
      return nullptr;
    case GLM_WEIGHT_INT8:
      if (!w->scales) return "weight: Int8 needs a scale per row";
      return nullptr;
    default: return "weight: unknown format";
  }
}

inline const char* check_heads(const glm_heads& h) {
  if (h.rows < 0 || h.count <= 0 || h.width <= 0 || h.offset < 0 || h.head_stride < 0) return "heads: bad view";
  if (h.rows > 0 && !h.data) return "heads: null data";
  if ((long long)(h.count - 1) * h.head_stride + h.offset + h.width > h.row_stride) return "heads: view runs past the row";
  return nullptr;
}

inline const char* check_kv_layer(const glm_kv_layer& l) {
  if (!l.keys || (!l.value_is_key_prefix && !l.values)) return "kv layer: null pages";
  if (l.dtype < GLM_KV_F32 || l.dtype > GLM_KV_INT4) return "kv layer: unknown dtype";
  if (l.kv_heads <= 0 || l.key_dim <= 0 || l.value_dim <= 0) return "kv layer: bad shape";
  if (l.value_is_key_prefix && l.value_dim > l.key_dim) return "kv layer: a latent value is longer than its key";
  return nullptr;
}

inline const char* check_step(const glm_step& s) {
  if (s.rows < 0 || s.block_size <= 0) return "step: bad shape";
  if (s.rows > 0 && (!s.positions || !s.table_offsets || !s.tables)) return "step: null tables";
  return nullptr;
}

}  // namespace glm

// Each build defines glm::set_error, which records the message glm_cuda_last_error returns.
#define GLM_REQUIRE(cond, message)          \
  do {                                      \
    if (!(cond)) {                          \
      glm::set_error(message);              \
      return GLM_ERR_ARGUMENT;              \
    }                                       \
  } while (0)

#define GLM_CHECKED(expr)                       \
  do {                                          \
    if (const char* glm_why_ = (expr)) {        \
      glm::set_error(glm_why_);                 \
      return GLM_ERR_ARGUMENT;                  \
    }                                           \
  } while (0)
