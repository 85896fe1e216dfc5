// The kernel check for a GPU machine (no .NET needed): loads libglm_cuda.so (the CUDA kernels) and
// libglm_cuda_host.so (the same ABI in plain C++, what CI tests the C# worker against), runs every operation of
// the device contract on both at real shapes, and compares: the KV pages byte for byte (the encoders are
// bit-exact), everything else by max |cuda - host| / max |host|. Then a few timings of the CUDA kernels.
// usage: glm_kernel_check DIR_WITH_BOTH_LIBRARIES [--quick]     exit status 0 only if every check passed
#include <dlfcn.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>
#include "glm_cuda.h"
#include "../src/common/formats.h"  // the KV record sizes both builds use

namespace {

#define GLM_API_FUNCTIONS(X)                                                                                              \
  X(glm_cuda_last_error) X(glm_cuda_malloc) X(glm_cuda_free) X(glm_cuda_copy_to_device) X(glm_cuda_copy_to_host)          \
  X(glm_cuda_stream_synchronize) X(glm_cuda_device_name) X(glm_cuda_is_host_build) X(glm_embedding) X(glm_linear)         \
  X(glm_heads_times_weight) X(glm_rmsnorm_heads) X(glm_rope_heads) X(glm_copy_heads) X(glm_add_f32)                      \
  X(glm_silu_mul_halves) X(glm_gather_rows) X(glm_kv_write) X(glm_paged_attention) X(glm_moe_route) X(glm_moe_experts) X(glm_sample)

struct Api {
  std::string name;
#define GLM_MEMBER(f) decltype(&::f) f = nullptr;
  GLM_API_FUNCTIONS(GLM_MEMBER)
#undef GLM_MEMBER

  void check(int status, const char* what) const {
    if (status != 0) {
      std::fprintf(stderr, "%s: %s failed (%d): %s\n", name.c_str(), what, status, glm_cuda_last_error());
      std::exit(2);
    }
  }

  // A device copy of host data, freed by the caller through free().
  template <class T> T* upload(const std::vector<T>& host) const {
    void* p = nullptr;
    check(glm_cuda_malloc(&p, host.size() * sizeof(T) + 16), "malloc");
    if (!host.empty()) check(glm_cuda_copy_to_device(p, host.data(), host.size() * sizeof(T), nullptr), "copy to device");
    return static_cast<T*>(p);
  }
  template <class T> std::vector<T> download(const T* device, size_t n) const {
    std::vector<T> host(n);
    check(glm_cuda_copy_to_host(host.data(), device, n * sizeof(T), nullptr), "copy to host");
    return host;
  }
  template <class T> T* zeros(size_t n) const { return upload(std::vector<T>(n)); }
  void free(const void* p) const { glm_cuda_free(const_cast<void*>(p)); }
};

Api load(const std::string& path) {
  Api api;
  api.name = path;
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) { std::fprintf(stderr, "cannot load %s: %s\n", path.c_str(), dlerror()); std::exit(2); }
#define GLM_BIND(f)                                                                          \
  api.f = reinterpret_cast<decltype(&::f)>(dlsym(lib, #f));                                  \
  if (!api.f) { std::fprintf(stderr, "%s lacks %s\n", path.c_str(), #f); std::exit(2); }
  GLM_API_FUNCTIONS(GLM_BIND)
#undef GLM_BIND
  return api;
}

std::mt19937 rng(1234);
std::vector<float> random_floats(size_t n, float scale = 1.f) {
  std::uniform_real_distribution<float> d(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
std::vector<uint8_t> random_bytes(size_t n, int mod = 256) {
  std::vector<uint8_t> v(n);
  for (auto& x : v) x = static_cast<uint8_t>(rng() % mod);
  return v;
}

int failures = 0;
double relative_error(const std::vector<float>& ref, const std::vector<float>& got) {
  double diff = 0, top = 0;
  for (size_t i = 0; i < ref.size(); i++) {
    double d = std::fabs(static_cast<double>(ref[i]) - got[i]);
    if (std::isnan(d)) d = INFINITY;
    diff = std::fmax(diff, d);
    top = std::fmax(top, std::fabs(static_cast<double>(ref[i])));
  }
  return diff / std::fmax(top, 1e-30);
}
void report(const std::string& what, double error, double tolerance) {
  bool ok = error <= tolerance;
  failures += !ok;
  std::printf("%-4s %-58s relative error %.2e (tolerance %.0e)\n", ok ? "ok" : "FAIL", what.c_str(), error, tolerance);
}

// A weight in one format, with its host and device copies.
struct Weight {
  glm_weight host{}, device{};
  std::vector<const void*> owned;
};

Weight make_weight(const Api& cuda, int format, int rows, int cols, int group_or_block) {
  Weight w;
  std::vector<uint8_t> bytes;
  std::vector<float> scales, zeros;
  int block_rows = 0, block_cols = 0, group = 0;
  switch (format) {
    case GLM_WEIGHT_F32: {
      auto v = random_floats(static_cast<size_t>(rows) * cols, 0.05f);
      bytes.resize(v.size() * 4);
      std::memcpy(bytes.data(), v.data(), bytes.size());
      break;
    }
    case GLM_WEIGHT_BF16: {
      auto v = random_floats(static_cast<size_t>(rows) * cols, 0.05f);
      bytes.resize(v.size() * 2);
      for (size_t i = 0; i < v.size(); i++) {
        uint32_t u;
        std::memcpy(&u, &v[i], 4);
        uint16_t b = static_cast<uint16_t>(u >> 16);
        std::memcpy(&bytes[2 * i], &b, 2);
      }
      break;
    }
    case GLM_WEIGHT_FP8: {
      bytes = random_bytes(static_cast<size_t>(rows) * cols, 0x7E);  // finite codes, both signs below
      for (auto& b : bytes) b |= static_cast<uint8_t>(rng() & 0x80);
      block_rows = group_or_block == 0 ? 1 : group_or_block;
      block_cols = group_or_block == 0 ? cols : group_or_block;
      scales = random_floats(static_cast<size_t>((rows + block_rows - 1) / block_rows) * ((cols + block_cols - 1) / block_cols), 0.01f);
      for (auto& s : scales) s = std::fabs(s) + 1e-4f;
      break;
    }
    case GLM_WEIGHT_INT8: {
      bytes = random_bytes(static_cast<size_t>(rows) * cols);
      for (auto& b : bytes) if (b == 0x80) b = 0x81;  // codes in [-127, 127], as the CPU quantizer writes them
      scales = random_floats(static_cast<size_t>(rows), 0.01f);
      for (auto& s : scales) s = std::fabs(s) + 1e-4f;
      break;
    }
    default: {
      group = group_or_block;
      bytes = random_bytes(static_cast<size_t>(rows) * cols / 2);
      scales = random_floats(static_cast<size_t>(rows) * (cols / group), 0.01f);
      zeros.resize(scales.size());
      for (auto& z : zeros) z = static_cast<float>(rng() % 16);
      break;
    }
  }
  void* host_data = std::malloc(bytes.size() + 16);
  std::memcpy(host_data, bytes.data(), bytes.size());
  float* host_scales = scales.empty() ? nullptr : static_cast<float*>(std::malloc(scales.size() * 4));
  if (host_scales) std::memcpy(host_scales, scales.data(), scales.size() * 4);
  float* host_zeros = zeros.empty() ? nullptr : static_cast<float*>(std::malloc(zeros.size() * 4));
  if (host_zeros) std::memcpy(host_zeros, zeros.data(), zeros.size() * 4);
  w.host = {format, rows, cols, group, block_rows, block_cols, host_data, host_scales, host_zeros};
  w.device = {format, rows, cols, group, block_rows, block_cols, cuda.upload(bytes), scales.empty() ? nullptr : cuda.upload(scales),
              zeros.empty() ? nullptr : cuda.upload(zeros)};
  return w;
}

const char* format_name(int f) { return f == 0 ? "f32" : f == 1 ? "bf16" : f == 2 ? "fp8" : f == 3 ? "int4" : "int8"; }

void check_linear(const Api& host, const Api& cuda, int format, int rows, int cols, int group_or_block, int m, bool bias) {
  Weight w = make_weight(cuda, format, rows, cols, group_or_block);
  auto x = random_floats(static_cast<size_t>(m) * cols);
  auto b = random_floats(rows);
  std::vector<float> expected(static_cast<size_t>(m) * rows);
  host.check(host.glm_linear(&w.host, x.data(), m, expected.data(), bias ? b.data() : nullptr, nullptr), "linear");
  float* dx = cuda.upload(x);
  float* db = cuda.upload(b);
  float* dy = cuda.zeros<float>(expected.size());
  cuda.check(cuda.glm_linear(&w.device, dx, m, dy, bias ? db : nullptr, nullptr), "linear");
  char what[160];
  std::snprintf(what, sizeof what, "linear %s/%d %dx%d m=%d%s", format_name(format), group_or_block, rows, cols, m, bias ? " +bias" : "");
  report(what, relative_error(expected, cuda.download(dy, expected.size())), 1e-4);
  cuda.free(dx); cuda.free(db); cuda.free(dy);
}

glm_heads view(float* data, int rows, int row_stride, int count, int head_stride, int offset, int width) {
  return glm_heads{data, rows, row_stride, count, head_stride, offset, width};
}

void check_heads_ops(const Api& host, const Api& cuda) {
  int rows = 7, count = 8, stride = 192, width = 128, offset = 64, row_stride = count * stride;
  auto x = random_floats(static_cast<size_t>(rows) * row_stride, 3.f);
  auto w = random_floats(width);
  std::vector<int32_t> positions = {0, 1, 17, 4095, 32768, 131071, 200000};
  std::vector<float> inv_freq(32);
  for (int i = 0; i < 32; i++) inv_freq[i] = 1.f / std::pow(10000.f, 2.f * i / 64.f);
  float* dx = cuda.upload(x);
  float* dw = cuda.upload(w);
  int32_t* dp = cuda.upload(positions);
  float* df = cuda.upload(inv_freq);
  {
    auto expected = x;
    auto hv = view(expected.data(), rows, row_stride, count, stride, offset, width);
    host.check(host.glm_rmsnorm_heads(hv, w.data(), 1e-5f, hv, nullptr), "rmsnorm_heads");
    float* dy = cuda.upload(x);
    auto dv = view(dy, rows, row_stride, count, stride, offset, width);
    cuda.check(cuda.glm_rmsnorm_heads(dv, dw, 1e-5f, dv, nullptr), "rmsnorm_heads");
    report("rmsnorm_heads 7 rows x 8 heads of 128 (strided, in place)", relative_error(expected, cuda.download(dy, x.size())), 1e-5);
    cuda.free(dy);
  }
  for (int layout = 0; layout < 3; layout++) {
    auto expected = x;
    host.check(host.glm_rope_heads(view(expected.data(), rows, row_stride, count, stride, offset, width), positions.data(), 64, layout,
                                   inv_freq.data(), nullptr), "rope_heads");
    float* dy = cuda.upload(x);
    cuda.check(cuda.glm_rope_heads(view(dy, rows, row_stride, count, stride, offset, width), dp, 64, layout, df, nullptr), "rope_heads");
    report("rope_heads layout " + std::to_string(layout) + ", rotary 64, positions to 200000", relative_error(expected, cuda.download(dy, x.size())), 1e-4);
    cuda.free(dy);
  }
  {
    std::vector<float> expected(static_cast<size_t>(rows) * count * width);
    host.check(host.glm_copy_heads(view(x.data(), rows, row_stride, count, stride, offset, width),
                                   view(expected.data(), rows, count * width, count, width, 0, width), nullptr), "copy_heads");
    float* dy = cuda.zeros<float>(expected.size());
    cuda.check(cuda.glm_copy_heads(view(dx, rows, row_stride, count, stride, offset, width), view(dy, rows, count * width, count, width, 0, width), nullptr),
               "copy_heads");
    report("copy_heads strided to packed", relative_error(expected, cuda.download(dy, expected.size())), 0);
    cuda.free(dy);
  }
  cuda.free(dx); cuda.free(dw); cuda.free(dp); cuda.free(df);
}

void check_elementwise(const Api& host, const Api& cuda) {
  int rows = 33, inter = 1408, cols = 4096;
  auto gu = random_floats(static_cast<size_t>(rows) * 2 * inter, 4.f);
  std::vector<float> expected(static_cast<size_t>(rows) * inter);
  host.check(host.glm_silu_mul_halves(gu.data(), rows, inter, expected.data(), nullptr), "silu_mul_halves");
  float* dgu = cuda.upload(gu);
  float* dy = cuda.zeros<float>(expected.size());
  cuda.check(cuda.glm_silu_mul_halves(dgu, rows, inter, dy, nullptr), "silu_mul_halves");
  report("silu_mul_halves 33 x 1408", relative_error(expected, cuda.download(dy, expected.size())), 1e-6);

  auto a = random_floats(static_cast<size_t>(rows) * cols), b = random_floats(static_cast<size_t>(rows) * cols);
  auto sum = a;
  host.check(host.glm_add_f32(sum.data(), b.data(), static_cast<int64_t>(sum.size()), nullptr), "add");
  float* da = cuda.upload(a);
  float* dbb = cuda.upload(b);
  cuda.check(cuda.glm_add_f32(da, dbb, static_cast<int64_t>(a.size()), nullptr), "add");
  report("add 33 x 4096", relative_error(sum, cuda.download(da, a.size())), 0);

  std::vector<int32_t> pick = {32, 0, 5, 5, 17};
  std::vector<float> gathered(pick.size() * cols);
  host.check(host.glm_gather_rows(b.data(), cols, pick.data(), static_cast<int>(pick.size()), gathered.data(), nullptr), "gather_rows");
  int32_t* dpick = cuda.upload(pick);
  float* dg = cuda.zeros<float>(gathered.size());
  cuda.check(cuda.glm_gather_rows(dbb, cols, dpick, static_cast<int>(pick.size()), dg, nullptr), "gather_rows");
  report("gather_rows 5 of 33 x 4096", relative_error(gathered, cuda.download(dg, gathered.size())), 0);

  for (int format = 0; format < 4; format++) {
    Weight table = make_weight(cuda, format, 1000, 512, format == 3 ? 128 : format == 2 ? 128 : 0);
    std::vector<int32_t> ids = {0, 999, 7, 7, 500};
    std::vector<float> rows_expected(ids.size() * 512);
    host.check(host.glm_embedding(&table.host, ids.data(), static_cast<int>(ids.size()), rows_expected.data(), nullptr), "embedding");
    int32_t* dids = cuda.upload(ids);
    float* de = cuda.zeros<float>(rows_expected.size());
    cuda.check(cuda.glm_embedding(&table.device, dids, static_cast<int>(ids.size()), de, nullptr), "embedding");
    report(std::string("embedding ") + format_name(format) + " 1000 x 512", relative_error(rows_expected, cuda.download(de, rows_expected.size())), 1e-7);
    cuda.free(dids); cuda.free(de);
  }
  cuda.free(dgu); cuda.free(dy); cuda.free(da); cuda.free(dbb); cuda.free(dpick); cuda.free(dg);
}

void check_heads_times_weight(const Api& host, const Api& cuda, int format) {
  // GLM-4.7-Flash's absorbed MLA: kv_b_proj [20 x (192 + 256), 512]; values read at row offset 192.
  int heads = 20, rows_per_head = 448, row_offset = 192, latent = 512, width = 256, rows = 5;
  Weight w = make_weight(cuda, format, heads * rows_per_head, latent, format == 3 ? 128 : 0);
  auto x = random_floats(static_cast<size_t>(rows) * heads * latent);
  std::vector<float> expected(static_cast<size_t>(rows) * heads * width);
  host.check(host.glm_heads_times_weight(&w.host, rows_per_head, row_offset, view(x.data(), rows, heads * latent, heads, latent, 0, latent),
                                         view(expected.data(), rows, heads * width, heads, width, 0, width), nullptr), "heads_times_weight");
  float* dx = cuda.upload(x);
  float* dy = cuda.zeros<float>(expected.size());
  cuda.check(cuda.glm_heads_times_weight(&w.device, rows_per_head, row_offset, view(dx, rows, heads * latent, heads, latent, 0, latent),
                                         view(dy, rows, heads * width, heads, width, 0, width), nullptr), "heads_times_weight");
  report(std::string("heads_times_weight ") + format_name(format) + " MLA 20 heads, offset 192", relative_error(expected, cuda.download(dy, expected.size())), 1e-4);
  cuda.free(dx); cuda.free(dy);
}


// Three sequences (1, 100 and 700 tokens of context) over shuffled blocks of 16 slots, the last rows of each
// being this step's queries: the pages written by both builds must be identical, and so nearly the outputs.
void check_attention(const Api& host, const Api& cuda, int dtype, bool latent, int quick) {
  int kv_heads = latent ? 1 : 4, key_dim = latent ? 576 : 128, value_dim = latent ? 512 : 128, group = latent ? 20 : 6;
  int heads = kv_heads * group, block_size = 16, blocks_total = 160;
  int64_t slots = static_cast<int64_t>(blocks_total) * block_size;
  std::vector<int> contexts = quick ? std::vector<int>{1, 40} : std::vector<int>{1, 100, 2000};
  std::vector<int32_t> permutation(blocks_total);
  for (int i = 0; i < blocks_total; i++) permutation[i] = i;
  std::shuffle(permutation.begin(), permutation.end(), rng);
  std::vector<int32_t> tables, positions, offsets;
  int next_block = 0;
  for (int context : contexts) {
    int offset = static_cast<int>(tables.size()), needed = (context + block_size - 1) / block_size;
    for (int b = 0; b < needed; b++) tables.push_back(permutation[next_block++]);
    for (int p = 0; p < context; p++) { positions.push_back(p); offsets.push_back(offset); }
  }
  int rows = static_cast<int>(positions.size());
  // Every position is written in one step; the queries are the last three positions of each sequence (a
  // decode row and a chunked-prefill tail), which keeps the host reference's cost small.
  std::vector<int32_t> q_positions, q_offsets;
  for (size_t s = 0, first = 0; s < contexts.size(); first += contexts[s], s++)
    for (int p = contexts[s] < 3 ? 0 : contexts[s] - 3; p < contexts[s]; p++) {
      q_positions.push_back(p);
      q_offsets.push_back(offsets[first]);
    }
  int q_rows = static_cast<int>(q_positions.size());
  auto keys = random_floats(static_cast<size_t>(rows) * kv_heads * key_dim, 2.f);
  auto values = random_floats(static_cast<size_t>(rows) * kv_heads * value_dim, 2.f);
  auto queries = random_floats(static_cast<size_t>(q_rows) * heads * key_dim, 0.5f);
  size_t key_bytes = static_cast<size_t>(slots) * kv_heads * glm::kv_record_bytes(dtype, key_dim);
  size_t value_bytes = latent ? 0 : static_cast<size_t>(slots) * kv_heads * glm::kv_record_bytes(dtype, value_dim);
  std::vector<uint8_t> host_keys(key_bytes), host_values(value_bytes + 1);
  glm_kv_layer hl{host_keys.data(), latent ? nullptr : host_values.data(), dtype, kv_heads, key_dim, value_dim, latent, slots};
  glm_step hs{positions.data(), offsets.data(), tables.data(), rows, block_size};
  host.check(host.glm_kv_write(hl, hs, keys.data(), latent ? nullptr : values.data(), nullptr), "kv_write");
  std::vector<float> expected(static_cast<size_t>(q_rows) * heads * value_dim);
  glm_step hq{q_positions.data(), q_offsets.data(), tables.data(), q_rows, block_size};
  float scale = 1.f / std::sqrt(static_cast<float>(latent ? 256 : key_dim));
  host.check(host.glm_paged_attention(hl, hq, queries.data(), heads, key_dim, group, scale, value_dim, expected.data(), nullptr), "paged_attention");

  auto* dk = cuda.zeros<uint8_t>(key_bytes);
  auto* dv = latent ? nullptr : cuda.zeros<uint8_t>(value_bytes);
  glm_kv_layer dl{dk, dv, dtype, kv_heads, key_dim, value_dim, latent, slots};
  glm_step ds{cuda.upload(positions), cuda.upload(offsets), cuda.upload(tables), rows, block_size};
  glm_step dq_step{cuda.upload(q_positions), cuda.upload(q_offsets), ds.tables, q_rows, block_size};
  float* dkeys = cuda.upload(keys);
  float* dvalues = cuda.upload(values);
  float* dq = cuda.upload(queries);
  float* dout = cuda.zeros<float>(expected.size());
  cuda.check(cuda.glm_kv_write(dl, ds, dkeys, latent ? nullptr : dvalues, nullptr), "kv_write");
  cuda.check(cuda.glm_paged_attention(dl, dq_step, dq, heads, key_dim, group, scale, value_dim, dout, nullptr), "paged_attention");
  auto pages = cuda.download(dk, key_bytes);
  size_t differing = 0;
  for (size_t i = 0; i < key_bytes; i++) differing += pages[i] != host_keys[i];
  if (!latent) {
    auto vpages = cuda.download(dv, value_bytes);
    for (size_t i = 0; i < value_bytes; i++) differing += vpages[i] != host_values[i];
  }
  const char* names[] = {"f32", "bf16", "fp8", "int4"};
  std::string what = std::string(latent ? "MLA 576/512" : "GQA 4x6 heads of 128") + " KV " + names[dtype];
  report("kv_write pages identical, " + what + " (bytes differing: " + std::to_string(differing) + ")", differing == 0 ? 0 : 1, 0);
  report("paged_attention, " + what, relative_error(expected, cuda.download(dout, expected.size())), 1e-4);
  for (const void* p : {static_cast<const void*>(dk), static_cast<const void*>(dv), static_cast<const void*>(ds.positions),
                        static_cast<const void*>(ds.table_offsets), static_cast<const void*>(ds.tables), static_cast<const void*>(dq_step.positions),
                        static_cast<const void*>(dq_step.table_offsets), static_cast<const void*>(dkeys),
                        static_cast<const void*>(dvalues), static_cast<const void*>(dq), static_cast<const void*>(dout)})
    if (p) cuda.free(p);
}

void check_moe(const Api& host, const Api& cuda, int format, int groups, int topk_group) {
  int experts = 64, hidden = 1024, inter = 256, rows = 33, top_k = 8;
  auto x = random_floats(static_cast<size_t>(rows) * hidden);
  auto gate_w = random_floats(static_cast<size_t>(experts) * hidden, 0.1f);
  auto bias = random_floats(experts, 0.05f);
  std::vector<Weight> g, u, d;
  std::vector<glm_weight> hg, hu, hd, dg, du, dd;
  for (int e = 0; e < experts; e++) {
    g.push_back(make_weight(cuda, format, inter, hidden, format == 3 ? 128 : 0));
    u.push_back(make_weight(cuda, format, inter, hidden, format == 3 ? 128 : 0));
    d.push_back(make_weight(cuda, format, hidden, inter, format == 3 ? 128 : 0));
    hg.push_back(g.back().host); hu.push_back(u.back().host); hd.push_back(d.back().host);
    dg.push_back(g.back().device); du.push_back(u.back().device); dd.push_back(d.back().device);
  }
  size_t picks = static_cast<size_t>(rows) * top_k;
  std::vector<int32_t> chosen(picks), start(experts + 1), order(picks);
  std::vector<float> weights(picks), scratch(picks * (inter + hidden)), expected(static_cast<size_t>(rows) * hidden);
  host.check(host.glm_moe_route(x.data(), rows, gate_w.data(), bias.data(), experts, hidden, top_k, groups, topk_group, 1, 2.5f, chosen.data(),
                                weights.data(), start.data(), order.data(), nullptr), "moe_route");
  host.check(host.glm_moe_experts(hg.data(), hu.data(), hd.data(), experts, inter, hidden, x.data(), rows, top_k, chosen.data(), weights.data(),
                                  start.data(), order.data(), scratch.data(), expected.data(), nullptr), "moe_experts");
  float* dx = cuda.upload(x);
  float* dgw = cuda.upload(gate_w);
  float* dbias = cuda.upload(bias);
  auto* dchosen = cuda.zeros<int32_t>(picks);
  auto* dstart = cuda.zeros<int32_t>(experts + 1);
  auto* dorder = cuda.zeros<int32_t>(picks);
  auto* dweights = cuda.zeros<float>(picks);
  auto* dscratch = cuda.zeros<float>(scratch.size());
  auto* dout = cuda.zeros<float>(expected.size());
  auto* dgt = cuda.upload(dg);
  auto* dut = cuda.upload(du);
  auto* ddt = cuda.upload(dd);
  cuda.check(cuda.glm_moe_route(dx, rows, dgw, dbias, experts, hidden, top_k, groups, topk_group, 1, 2.5f, dchosen, dweights, dstart, dorder, nullptr),
             "moe_route");
  cuda.check(cuda.glm_moe_experts(dgt, dut, ddt, experts, inter, hidden, dx, rows, top_k, dchosen, dweights, dstart, dorder, dscratch, dout, nullptr),
             "moe_experts");
  bool same_choice = cuda.download(dchosen, picks) == chosen && cuda.download(dorder, picks) == order &&
                     cuda.download(dstart, experts + 1) == start;
  std::string what = std::string(format_name(format)) + " experts, 64 x top-8, groups " + std::to_string(groups) + "/" + std::to_string(topk_group);
  report("moe_route same experts and grouping, " + what, same_choice ? 0 : 1, 0);
  report("moe_route weights, " + what, relative_error(weights, cuda.download(dweights, picks)), 1e-5);
  report("moe_experts, " + what, relative_error(expected, cuda.download(dout, expected.size())), 1e-4);
  for (const void* p : {static_cast<const void*>(dx), static_cast<const void*>(dgw), static_cast<const void*>(dbias), static_cast<const void*>(dchosen),
                        static_cast<const void*>(dstart), static_cast<const void*>(dorder), static_cast<const void*>(dweights),
                        static_cast<const void*>(dscratch), static_cast<const void*>(dout), static_cast<const void*>(dgt),
                        static_cast<const void*>(dut), static_cast<const void*>(ddt)})
    cuda.free(p);
}

// 16 rows of a 151,552-token vocabulary under every sampling setting: the same ids from both builds.
void check_sampling(const Api& host, const Api& cuda) {
  int rows = 16, vocab = 151552;
  auto logits = random_floats(static_cast<size_t>(rows) * vocab, 8.f);
  std::vector<glm_sample_params> params(rows);
  std::uniform_real_distribution<double> u(0, 1);
  for (int r = 0; r < rows; r++) {
    float temperature = r % 4 == 0 ? 0.f : 0.5f + 0.1f * r;
    params[r] = {temperature, r % 3 == 1 ? 40 : 0, r % 2 == 1 ? 0.9f : 1.f, r % 5 == 2 ? 0.05f : 0.f, u(rng)};
  }
  std::vector<float> probs(logits.size());
  std::vector<int32_t> order(logits.size()), expected(rows);
  host.check(host.glm_sample(logits.data(), rows, vocab, params.data(), probs.data(), order.data(), expected.data(), nullptr), "sample");
  float* dl = cuda.upload(logits);
  auto* dp = cuda.upload(params);
  float* dprobs = cuda.zeros<float>(logits.size());
  auto* dorder = cuda.zeros<int32_t>(logits.size());
  auto* dtokens = cuda.zeros<int32_t>(rows);
  cuda.check(cuda.glm_sample(dl, rows, vocab, dp, dprobs, dorder, dtokens, nullptr), "sample");
  auto got = cuda.download(dtokens, rows);
  int differing = 0;
  for (int r = 0; r < rows; r++) differing += got[r] != expected[r];
  report("sample 16 rows x 151552 (greedy, temperature, top-k, top-p, min-p): rows differing " + std::to_string(differing), differing, 0);
  for (const void* p : {static_cast<const void*>(dl), static_cast<const void*>(dp), static_cast<const void*>(dprobs), static_cast<const void*>(dorder),
                        static_cast<const void*>(dtokens)})
    cuda.free(p);
}

// Microseconds per call of fn, queued `calls` times and timed to the last one's completion.
template <class F> double time_us(const Api& cuda, int calls, F fn) {
  fn();
  cuda.glm_cuda_stream_synchronize(nullptr);
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; i++) fn();
  cuda.glm_cuda_stream_synchronize(nullptr);
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() / calls;
}

void timings(const Api& cuda) {
  std::printf("\ntimings (CUDA build, default stream)\n");
  {
    int rows = 64, vocab = 151552;
    float* dl = cuda.upload(random_floats(static_cast<size_t>(rows) * vocab, 8.f));
    std::vector<glm_sample_params> params(rows, glm_sample_params{0.8f, 0, 0.95f, 0.f, 0.5});
    auto* dp = cuda.upload(params);
    float* dprobs = cuda.zeros<float>(static_cast<size_t>(rows) * vocab);
    auto* dorder = cuda.zeros<int32_t>(static_cast<size_t>(rows) * vocab);
    auto* dtokens = cuda.zeros<int32_t>(rows);
    double us = time_us(cuda, 5, [&] { cuda.glm_sample(dl, rows, vocab, dp, dprobs, dorder, dtokens, nullptr); });
    std::printf("sample 64 rows x 151552, temperature 0.8, top-p 0.95: %9.1f us (the host would copy %.1f MB of logits instead)\n", us,
                4.0 * rows * vocab / 1e6);
    for (const void* p : {static_cast<const void*>(dl), static_cast<const void*>(dp), static_cast<const void*>(dprobs),
                          static_cast<const void*>(dorder), static_cast<const void*>(dtokens)})
      cuda.free(p);
  }
  int rows = 12288, cols = 4096;
  for (int format : {GLM_WEIGHT_BF16, GLM_WEIGHT_FP8, GLM_WEIGHT_INT4}) {
    Weight w = make_weight(cuda, format, rows, cols, format == GLM_WEIGHT_INT4 ? 128 : 0);
    double bytes = format == GLM_WEIGHT_BF16 ? 2.0 * rows * cols : format == GLM_WEIGHT_FP8 ? 1.0 * rows * cols + 4.0 * rows
                                                                                             : 0.5 * rows * cols + 8.0 * rows * (cols / 128);
    for (int m : {1, 16, 64}) {
      float* dx = cuda.upload(random_floats(static_cast<size_t>(m) * cols));
      float* dy = cuda.zeros<float>(static_cast<size_t>(m) * rows);
      double us = time_us(cuda, 50, [&] { cuda.glm_linear(&w.device, dx, m, dy, nullptr, nullptr); });
      std::printf("linear %-5s %dx%d m=%-3d %9.1f us  %6.2f TB/s weights  %8.1f GFLOP/s\n", format_name(format), rows, cols, m, us, bytes / us / 1e6,
                  2.0 * m * rows * cols / us / 1e3);
      cuda.free(dx); cuda.free(dy);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) { std::fprintf(stderr, "usage: glm_kernel_check DIR [--quick]\n"); return 2; }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::string dir = argv[1];
  int quick = argc > 2 && std::strcmp(argv[2], "--quick") == 0;
  Api host = load(dir + "/libglm_cuda_host.so");
  Api cuda = load(dir + "/libglm_cuda.so");
  char name[256];
  cuda.check(cuda.glm_cuda_device_name(0, name, sizeof name), "device name");
  std::printf("device: %s (host build: %d, CUDA build: %d)\n", name, host.glm_cuda_is_host_build(), cuda.glm_cuda_is_host_build());

  for (int m : {1, 2, 5, 16}) {
    check_linear(host, cuda, GLM_WEIGHT_BF16, 2048, 4096, 0, m, m == 5);
    check_linear(host, cuda, GLM_WEIGHT_INT4, 2048, 4096, 128, m, false);
    check_linear(host, cuda, GLM_WEIGHT_FP8, 2048, 4096, 0, m, false);
  }
  check_linear(host, cuda, GLM_WEIGHT_F32, 512, 1000, 0, 3, true);
  check_linear(host, cuda, GLM_WEIGHT_FP8, 1000, 2048, 128, 9, false);
  check_linear(host, cuda, GLM_WEIGHT_INT4, 1000, 2048, 32, 1, false);
  check_linear(host, cuda, GLM_WEIGHT_BF16, 1000, 1001, 0, 1, false);  // odd width: the generic kernel
  for (int m : {1, 5}) check_linear(host, cuda, GLM_WEIGHT_INT8, 1000, 2048, 0, m, false);  // an Int8 LM head: the generic kernel
  check_heads_ops(host, cuda);
  check_elementwise(host, cuda);
  for (int format : {GLM_WEIGHT_BF16, GLM_WEIGHT_INT4}) check_heads_times_weight(host, cuda, format);
  {
    // More (row, head) pairs than a grid's y dimension holds: a GLM-5 prefill has 2,048 rows x 64 heads.
    int rows = 1100, heads = 64, rows_per_head = 8, cols = 32;
    Weight w = make_weight(cuda, GLM_WEIGHT_BF16, heads * rows_per_head, cols, 0);
    auto x = random_floats(static_cast<size_t>(rows) * heads * cols);
    std::vector<float> expected(static_cast<size_t>(rows) * heads * rows_per_head);
    host.check(host.glm_heads_times_weight(&w.host, rows_per_head, 0, view(x.data(), rows, heads * cols, heads, cols, 0, cols),
                                           view(expected.data(), rows, heads * rows_per_head, heads, rows_per_head, 0, rows_per_head), nullptr), "heads_times_weight");
    float* dx = cuda.upload(x);
    float* dy = cuda.zeros<float>(expected.size());
    cuda.check(cuda.glm_heads_times_weight(&w.device, rows_per_head, 0, view(dx, rows, heads * cols, heads, cols, 0, cols),
                                           view(dy, rows, heads * rows_per_head, heads, rows_per_head, 0, rows_per_head), nullptr), "heads_times_weight");
    report("heads_times_weight, 70,400 (row, head) pairs", relative_error(expected, cuda.download(dy, expected.size())), 1e-4);
    cuda.free(dx); cuda.free(dy);
  }
  for (int dtype = 0; dtype < 4; dtype++) {
    check_attention(host, cuda, dtype, false, quick);
    check_attention(host, cuda, dtype, true, quick);
  }
  check_moe(host, cuda, GLM_WEIGHT_BF16, 1, 1);
  check_moe(host, cuda, GLM_WEIGHT_INT4, 8, 4);
  check_sampling(host, cuda);
  if (!quick && !cuda.glm_cuda_is_host_build()) timings(cuda);
  std::printf("\n%s: %d check(s) failed\n", failures == 0 ? "PASS" : "FAIL", failures);
  return failures == 0 ? 0 : 1;
}
