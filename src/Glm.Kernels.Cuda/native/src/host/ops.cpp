// The host build's kernels: each op as plain loops over the shared format functions, in the order the CPU
// worker computes (float32 accumulation, softmax from the exact maximum, experts summed in ascending order).
// They are the references the GPU machine's kernel check compares every CUDA kernel against.
#include <cmath>
#include <cstring>
#include <vector>
#include "host.h"
#include "../common/moe.h"
#include "../common/sampling.h"

using namespace glm;

namespace {

float dot_row(const glm_weight& w, int64_t row, const float* x) {
  float sum = 0.f;
  for (int64_t k = 0; k < w.cols; k++) sum += x[k] * weight_at(w, row, k);
  return sum;
}

float* head_at(const glm_heads& h, int row, int head) { return h.data + (int64_t)row * h.row_stride + (int64_t)head * h.head_stride + h.offset; }

void rmsnorm(const float* x, const float* w, int dim, float eps, float* y) {
  float sum = 0.f;
  for (int i = 0; i < dim; i++) sum += x[i] * x[i];
  float scale = 1.f / std::sqrt(sum / dim + eps);
  for (int i = 0; i < dim; i++) y[i] = x[i] * scale * w[i];
}

void rope(float* v, int rotary_dim, int layout, const float* inv_freq, int position) {
  int half = rotary_dim / 2;
  std::vector<float> staged(v, v + rotary_dim);
  for (int i = 0; i < half; i++) {
    float angle = (float)position * inv_freq[i];
    rope_rotate(staged.data(), v, i, half, layout, std::cos(angle), std::sin(angle));
  }
}

// Scores one token's experts in float32, then chooses as CpuMoe.RouteOne.
void route_one(const float* x, const float* gate_weight, const float* bias, int experts, int hidden, int top_k, int groups,
               int topk_group, bool norm, float scaling, int32_t* chosen, float* weights) {
  std::vector<float> scores(experts), choice(experts), group_score(groups);
  std::vector<uint8_t> taken(experts), keep(groups);
  for (int e = 0; e < experts; e++) {
    float d = 0.f;
    for (int k = 0; k < hidden; k++) d += x[k] * gate_weight[(int64_t)e * hidden + k];
    scores[e] = sigmoid(d);
    choice[e] = scores[e] + (bias ? bias[e] : 0.f);
  }
  moe_select(scores.data(), choice.data(), taken.data(), group_score.data(), keep.data(), experts, top_k, groups, topk_group, norm,
             scaling, chosen, weights);
}

}  // namespace

extern "C" {

int glm_rmsnorm_f32(const float* x, const float* weight, float* y, int rows, int dim, float eps, void*) {
  GLM_REQUIRE(x && weight && y && rows >= 0 && dim > 0, "rmsnorm: bad arguments");
  for (int r = 0; r < rows; r++) rmsnorm(x + (int64_t)r * dim, weight, dim, eps, y + (int64_t)r * dim);
  return GLM_OK;
}

int glm_silu_mul_f32(const float* gate, const float* up, float* out, int64_t n, void*) {
  GLM_REQUIRE(gate && up && out && n >= 0, "silu_mul: bad arguments");
  for (int64_t i = 0; i < n; i++) out[i] = silu(gate[i]) * up[i];
  return GLM_OK;
}

int glm_rope_f32(float* x, const int* positions, int tokens, int heads, int head_dim, int rotary_dim, int layout, const float* inv_freq, void*) {
  GLM_REQUIRE(x && positions && inv_freq && tokens >= 0 && heads > 0 && rotary_dim % 2 == 0 && rotary_dim <= head_dim, "rope: bad arguments");
  GLM_REQUIRE(layout >= GLM_ROPE_INTERLEAVED && layout <= GLM_ROPE_INTERLEAVED_TO_HALF, "rope: unknown layout");
  for (int t = 0; t < tokens; t++)
    for (int h = 0; h < heads; h++) rope(x + ((int64_t)t * heads + h) * head_dim, rotary_dim, layout, inv_freq, positions[t]);
  return GLM_OK;
}

int glm_gemv_bf16(const uint16_t* weight, const float* x, float* y, int rows, int cols, void*) {
  GLM_REQUIRE(weight && x && y && rows >= 0 && cols > 0, "gemv_bf16: bad arguments");
  glm_weight w{GLM_WEIGHT_BF16, rows, cols, 0, 0, 0, weight, nullptr, nullptr};
  for (int n = 0; n < rows; n++) y[n] = dot_row(w, n, x);
  return GLM_OK;
}

int glm_gemv_int4(const uint8_t* codes, const float* scales, const float* zeros, const float* x, float* y, int rows, int cols, int group_size, void*) {
  GLM_REQUIRE(codes && scales && zeros && x && y && rows >= 0, "gemv_int4: bad arguments");
  GLM_REQUIRE(group_size > 0 && group_size % 32 == 0 && cols % group_size == 0, "gemv_int4: cols must be a multiple of the group size, itself a multiple of 32");
  glm_weight w{GLM_WEIGHT_INT4, rows, cols, group_size, 0, 0, codes, scales, zeros};
  for (int n = 0; n < rows; n++) y[n] = dot_row(w, n, x);
  return GLM_OK;
}

int glm_gemv_fp8_channel(const uint8_t* codes, const float* scales, const float* x, float* y, int rows, int cols, void*) {
  GLM_REQUIRE(codes && scales && x && y && rows >= 0 && cols > 0, "gemv_fp8_channel: bad arguments");
  glm_weight w{GLM_WEIGHT_FP8, rows, cols, 0, 1, cols, codes, scales, nullptr};
  for (int n = 0; n < rows; n++) y[n] = dot_row(w, n, x);
  return GLM_OK;
}

int glm_embedding(const glm_weight* table, const int32_t* ids, int n, float* out, void*) {
  GLM_CHECKED(check_weight(table));
  GLM_REQUIRE(n >= 0 && (n == 0 || (ids && out)), "embedding: bad arguments");
  for (int i = 0; i < n; i++) {
    GLM_REQUIRE(ids[i] >= 0 && ids[i] < table->rows, "embedding: token id out of range");
    for (int c = 0; c < table->cols; c++) out[(int64_t)i * table->cols + c] = weight_at(*table, ids[i], c);
  }
  return GLM_OK;
}

int glm_linear(const glm_weight* weight, const float* x, int m, float* y, const float* bias, void*) {
  GLM_CHECKED(check_weight(weight));
  GLM_REQUIRE(m >= 0 && (m == 0 || (x && y)), "linear: bad arguments");
  for (int i = 0; i < m; i++)
    for (int n = 0; n < weight->rows; n++)
      y[(int64_t)i * weight->rows + n] = dot_row(*weight, n, x + (int64_t)i * weight->cols) + (bias ? bias[n] : 0.f);
  return GLM_OK;
}

int glm_heads_times_weight(const glm_weight* weight, int rows_per_head, int row_offset, glm_heads x, glm_heads y, void*) {
  GLM_CHECKED(check_weight(weight));
  GLM_CHECKED(check_heads(x));
  GLM_CHECKED(check_heads(y));
  GLM_REQUIRE(x.width == weight->cols && x.count == y.count && x.rows == y.rows, "heads_times_weight: shapes disagree");
  GLM_REQUIRE((int64_t)(x.count - 1) * rows_per_head + row_offset + y.width <= weight->rows, "heads_times_weight: rows past the weight");
  for (int i = 0; i < x.rows; i++)
    for (int h = 0; h < x.count; h++) {
      const float* xi = head_at(x, i, h);
      float* yi = head_at(y, i, h);
      for (int j = 0; j < y.width; j++) yi[j] = dot_row(*weight, (int64_t)h * rows_per_head + row_offset + j, xi);
    }
  return GLM_OK;
}

int glm_rmsnorm_heads(glm_heads x, const float* weight, float eps, glm_heads out, void*) {
  GLM_CHECKED(check_heads(x));
  GLM_CHECKED(check_heads(out));
  GLM_REQUIRE(weight && x.rows == out.rows && x.count == out.count && x.width == out.width, "rmsnorm_heads: shapes disagree");
  for (int i = 0; i < x.rows; i++)
    for (int h = 0; h < x.count; h++) rmsnorm(head_at(x, i, h), weight, x.width, eps, head_at(out, i, h));
  return GLM_OK;
}

int glm_rope_heads(glm_heads x, const int32_t* positions, int rotary_dim, int layout, const float* inv_freq, void*) {
  GLM_CHECKED(check_heads(x));
  GLM_REQUIRE(positions && inv_freq && rotary_dim % 2 == 0 && rotary_dim <= x.width, "rope_heads: bad arguments");
  GLM_REQUIRE(layout >= GLM_ROPE_INTERLEAVED && layout <= GLM_ROPE_INTERLEAVED_TO_HALF, "rope_heads: unknown layout");
  for (int i = 0; i < x.rows; i++)
    for (int h = 0; h < x.count; h++) rope(head_at(x, i, h), rotary_dim, layout, inv_freq, positions[i]);
  return GLM_OK;
}

int glm_copy_heads(glm_heads source, glm_heads destination, void*) {
  GLM_CHECKED(check_heads(source));
  GLM_CHECKED(check_heads(destination));
  GLM_REQUIRE(source.rows == destination.rows && source.count == destination.count && source.width <= destination.width, "copy_heads: shapes disagree");
  for (int i = 0; i < source.rows; i++)
    for (int h = 0; h < source.count; h++) std::memmove(head_at(destination, i, h), head_at(source, i, h), sizeof(float) * source.width);
  return GLM_OK;
}

int glm_add_f32(float* into, const float* x, int64_t n, void*) {
  GLM_REQUIRE(n >= 0 && (n == 0 || (into && x)), "add: bad arguments");
  for (int64_t i = 0; i < n; i++) into[i] += x[i];
  return GLM_OK;
}

int glm_silu_mul_halves(const float* gate_up, int rows, int inter, float* out, void*) {
  GLM_REQUIRE(rows >= 0 && inter > 0 && (rows == 0 || (gate_up && out)), "silu_mul_halves: bad arguments");
  for (int r = 0; r < rows; r++)
    for (int i = 0; i < inter; i++)
      out[(int64_t)r * inter + i] = silu(gate_up[(int64_t)r * 2 * inter + i]) * gate_up[(int64_t)r * 2 * inter + inter + i];
  return GLM_OK;
}

int glm_gather_rows(const float* x, int cols, const int32_t* rows, int n, float* out, void*) {
  GLM_REQUIRE(cols > 0 && n >= 0 && (n == 0 || (x && rows && out)), "gather_rows: bad arguments");
  for (int i = 0; i < n; i++) std::memcpy(out + (int64_t)i * cols, x + (int64_t)rows[i] * cols, sizeof(float) * cols);
  return GLM_OK;
}

int glm_kv_write(glm_kv_layer layer, glm_step step, const float* keys, const float* values, void*) {
  GLM_CHECKED(check_kv_layer(layer));
  GLM_CHECKED(check_step(step));
  GLM_REQUIRE(step.rows == 0 || (keys && (layer.value_is_key_prefix || values)), "kv_write: null keys or values");
  for (int r = 0; r < step.rows; r++) {
    int64_t slot = slot_of(step, r, step.positions[r]);
    GLM_REQUIRE(slot >= 0 && slot < layer.slots, "kv_write: slot outside the pool");
    for (int h = 0; h < layer.kv_heads; h++) {
      kv_encode(layer.dtype, keys + ((int64_t)r * layer.kv_heads + h) * layer.key_dim, layer.key_dim, (uint8_t*)kv_key_record(layer, slot, h));
      if (!layer.value_is_key_prefix)
        kv_encode(layer.dtype, values + ((int64_t)r * layer.kv_heads + h) * layer.value_dim, layer.value_dim, (uint8_t*)kv_value_record(layer, slot, h));
    }
  }
  return GLM_OK;
}

int glm_paged_attention(glm_kv_layer layer, glm_step step, const float* queries, int heads, int head_dim, int queries_per_kv_head,
                        float scale, int value_dim, float* output, void*) {
  GLM_CHECKED(check_kv_layer(layer));
  GLM_CHECKED(check_step(step));
  GLM_REQUIRE(queries_per_kv_head > 0 && heads == layer.kv_heads * queries_per_kv_head, "paged_attention: heads must be kv heads times queries per kv head");
  GLM_REQUIRE(head_dim == layer.key_dim && value_dim == layer.value_dim, "paged_attention: dims disagree with the pool");
  GLM_REQUIRE(step.rows == 0 || (queries && output), "paged_attention: null buffers");
  int value_record_dim = layer.value_is_key_prefix ? layer.key_dim : layer.value_dim;
  std::vector<float> scores;
  for (int r = 0; r < step.rows; r++) {
    int context = step.positions[r] + 1;
    scores.resize(context);
    for (int h = 0; h < heads; h++) {
      int kvh = h / queries_per_kv_head;
      const float* q = queries + ((int64_t)r * heads + h) * head_dim;
      float max = -INFINITY;
      for (int t = 0; t < context; t++) {
        int64_t slot = slot_of(step, r, t);
        GLM_REQUIRE(slot >= 0 && slot < layer.slots, "paged_attention: slot outside the pool");
        const uint8_t* k = kv_key_record(layer, slot, kvh);
        float d = 0.f;
        for (int i = 0; i < head_dim; i++) d += q[i] * kv_value_at(layer.dtype, k, layer.key_dim, i);
        scores[t] = d * scale;
        max = std::fmax(max, scores[t]);
      }
      float sum = 0.f;
      for (int t = 0; t < context; t++) { scores[t] = std::exp(scores[t] - max); sum += scores[t]; }
      float inv = 1.f / sum;
      float* o = output + ((int64_t)r * heads + h) * value_dim;
      for (int i = 0; i < value_dim; i++) o[i] = 0.f;
      for (int t = 0; t < context; t++) {
        const uint8_t* v = kv_value_record(layer, slot_of(step, r, t), kvh);
        float p = scores[t] * inv;
        for (int i = 0; i < value_dim; i++) o[i] += p * kv_value_at(layer.dtype, v, value_record_dim, i);
      }
    }
  }
  return GLM_OK;
}

int glm_moe_route(const float* x, int rows, const float* gate_weight, const float* correction_bias, int experts, int hidden, int top_k,
                  int groups, int topk_group, int norm_topk_prob, float routed_scaling_factor, int32_t* chosen, float* weights,
                  int32_t* expert_start, int32_t* order, void*) {
  GLM_REQUIRE(rows >= 0 && experts > 0 && hidden > 0 && top_k > 0 && top_k <= experts && groups > 0 && experts % groups == 0 &&
                  topk_group > 0 && topk_group <= groups, "moe_route: bad shape");
  GLM_REQUIRE(gate_weight && expert_start && (rows == 0 || (x && chosen && weights && order)), "moe_route: null buffers");
  for (int r = 0; r < rows; r++)
    route_one(x + (int64_t)r * hidden, gate_weight, correction_bias, experts, hidden, top_k, groups, topk_group, norm_topk_prob != 0,
              routed_scaling_factor, chosen + (int64_t)r * top_k, weights + (int64_t)r * top_k);
  int picks = rows * top_k;
  for (int e = 0; e <= experts; e++) expert_start[e] = 0;
  for (int p = 0; p < picks; p++) expert_start[chosen[p] + 1]++;
  for (int e = 0; e < experts; e++) expert_start[e + 1] += expert_start[e];
  std::vector<int32_t> fill(expert_start, expert_start + experts);
  for (int p = 0; p < picks; p++) order[fill[chosen[p]]++] = p;
  return GLM_OK;
}

int glm_moe_experts(const glm_weight* gate, const glm_weight* up, const glm_weight* down, int experts, int intermediate, int hidden,
                    const float* x, int rows, int top_k, const int32_t* chosen, const float* weights, const int32_t* expert_start,
                    const int32_t* order, float* scratch, float* out, void*) {
  GLM_REQUIRE(gate && up && down && experts > 0 && intermediate > 0 && hidden > 0 && top_k > 0, "moe_experts: bad arguments");
  GLM_REQUIRE(rows == 0 || (x && chosen && weights && expert_start && order && scratch && out), "moe_experts: null buffers");
  for (int e = 0; e < experts; e++) {
    GLM_CHECKED(check_weight(&gate[e]));
    GLM_CHECKED(check_weight(&up[e]));
    GLM_CHECKED(check_weight(&down[e]));
  }
  int64_t picks = (int64_t)rows * top_k;
  float* act = scratch;                             // [picks, intermediate]
  float* contribution = scratch + picks * intermediate;  // [picks, hidden]
  for (int e = 0; e < experts; e++)
    for (int i = expert_start[e]; i < expert_start[e + 1]; i++) {
      int p = order[i];
      const float* xt = x + (int64_t)(p / top_k) * hidden;
      float* a = act + (int64_t)p * intermediate;
      for (int n = 0; n < intermediate; n++) a[n] = silu(dot_row(gate[e], n, xt)) * dot_row(up[e], n, xt);
      float* c = contribution + (int64_t)p * hidden;
      for (int n = 0; n < hidden; n++) c[n] = dot_row(down[e], n, a) * weights[p];
    }
  for (int r = 0; r < rows; r++) {
    float* o = out + (int64_t)r * hidden;
    for (int d = 0; d < hidden; d++) o[d] = 0.f;
    for (int j = 0; j < top_k; j++) {  // chosen is ascending by expert within a token
      const float* c = contribution + ((int64_t)r * top_k + j) * hidden;
      for (int d = 0; d < hidden; d++) o[d] += c[d];
    }
  }
  return GLM_OK;
}

int glm_sample(const float* logits, int rows, int vocab, const glm_sample_params* params, float* scratch_probs, int32_t* scratch_order,
               int32_t* tokens, void*) {
  GLM_REQUIRE(rows >= 0 && vocab > 0 && (rows == 0 || (logits && params && scratch_probs && scratch_order && tokens)), "sample: bad arguments");
  for (int r = 0; r < rows; r++) {
    const glm_sample_params& p = params[r];
    sample_params_t s{p.temperature, p.top_k, p.top_p, p.min_p, p.uniform};
    tokens[r] = sample_row(logits + (int64_t)r * vocab, vocab, s, scratch_probs + (int64_t)r * vocab, scratch_order + (int64_t)r * vocab);
  }
  return GLM_OK;
}
}
