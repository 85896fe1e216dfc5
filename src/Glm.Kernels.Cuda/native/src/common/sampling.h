// The next token of one sequence from its logits row, exactly as Glm.Engine.Sampler draws it when no penalty,
// bias, constraint or logprob is involved: temperature, then top-k, top-p (the nucleus within the renormalised
// top k) and min-p over tokens ordered by probability (descending, then id), then one inverse-CDF draw with the
// uniform number the host drew from the sequence's seeded generator. Written once for both builds; serial (one
// thread decides a row).
#pragma once
#include "formats.h"

namespace glm {

struct sample_params_t {
  float temperature;  // below 1e-5: greedy (the first maximum wins)
  int32_t top_k;      // 0: off
  float top_p;        // 1: off
  float min_p;        // 0: off
  double uniform;     // in [0, 1), drawn on the host
};

// a comes before b: higher probability, then lower id (a total order, so the selection is deterministic).
GLM_HD bool sample_before(const float* p, int a, int b) { return p[a] != p[b] ? p[a] > p[b] : a < b; }

// order[0..n) is a heap whose root is the entry that comes last.
GLM_HD void sample_sift_down(const float* p, int32_t* order, int n, int at) {
  for (;;) {
    int l = 2 * at + 1, r = l + 1, worst = at;
    if (l < n && sample_before(p, order[worst], order[l])) worst = l;
    if (r < n && sample_before(p, order[worst], order[r])) worst = r;
    if (worst == at) return;
    int32_t t = order[at]; order[at] = order[worst]; order[worst] = t;
    at = worst;
  }
}

// order[0..head) = the head tokens that come first, in order.
GLM_HD void sample_top_sorted(const float* p, int vocab, int head, int32_t* order) {
  int n = 0;
  for (int i = 0; i < vocab; i++) {
    if (n < head) {
      int at = n++;
      order[at] = i;
      while (at > 0 && sample_before(p, order[(at - 1) / 2], order[at])) {
        int parent = (at - 1) / 2;
        int32_t t = order[at]; order[at] = order[parent]; order[parent] = t;
        at = parent;
      }
    } else if (sample_before(p, i, order[0])) {
      order[0] = i;
      sample_sift_down(p, order, n, 0);
    }
  }
  for (int end = n - 1; end > 0; end--) {  // heapsort: the last-coming entry goes to the end each time
    int32_t t = order[0]; order[0] = order[end]; order[end] = t;
    sample_sift_down(p, order, end, 0);
  }
}

// Samples one row: logits are copied into probs (vocab floats of scratch); order is vocab ints of scratch.
GLM_HD int sample_row(const float* logits, int vocab, sample_params_t s, float* probs, int32_t* order) {
  if (s.temperature < 1e-5f) {
    int best = 0;
    for (int i = 1; i < vocab; i++)
      if (logits[i] > logits[best]) best = i;
    return best;
  }
  float inv_t = 1.f / s.temperature, max = -INFINITY;
  for (int i = 0; i < vocab; i++) {
    probs[i] = logits[i] * inv_t;
    if (probs[i] > max) max = probs[i];
  }
  double sum = 0;
  for (int i = 0; i < vocab; i++) {
    float e = isinf(probs[i]) && probs[i] < 0 ? 0.f : expf(probs[i] - max);
    probs[i] = e;
    sum += e;
  }
  bool needs_order = s.top_k > 0 || s.top_p < 1.f;
  int candidates = vocab;
  if (needs_order) {
    int limit_k = s.top_k > 0 ? (s.top_k < vocab ? s.top_k : vocab) : vocab;
    int head = s.top_k > 0 ? limit_k : (limit_k < 256 ? limit_k : 256);
    for (;;) {
      sample_top_sorted(probs, vocab, head, order);
      candidates = head;
      if (s.top_p >= 1.f) break;
      double mass = sum;
      if (s.top_k > 0) {
        mass = 0;
        for (int k = 0; k < head; k++) mass += probs[order[k]];
      }
      double cumulative = 0, limit = (double)s.top_p * mass;
      bool reached = false;
      for (int k = 0; k < head; k++) {
        cumulative += probs[order[k]];
        if (cumulative >= limit) { candidates = k + 1; reached = true; break; }
      }
      if (reached || head == limit_k) break;
      head = head * 4 < limit_k ? head * 4 : limit_k;
    }
  }
  if (s.min_p > 0) {
    float threshold = s.min_p;  // relative to the top probability, exp(0) = 1 after the max shift
    if (needs_order)
      while (candidates > 1 && probs[order[candidates - 1]] < threshold) candidates--;
    else
      for (int i = 0; i < vocab; i++)
        if (probs[i] < threshold) probs[i] = 0;
  }
  double total = 0;
  if (needs_order)
    for (int k = 0; k < candidates; k++) total += probs[order[k]];
  else
    for (int i = 0; i < vocab; i++) total += probs[i];
  double u = s.uniform * total;
  if (needs_order) {
    for (int k = 0; k < candidates; k++) {
      u -= probs[order[k]];
      if (u < 0) return order[k];
    }
    return order[candidates - 1];
  }
  int last = 0;
  for (int i = 0; i < vocab; i++) {
    if (probs[i] <= 0) continue;
    last = i;
    u -= probs[i];
    if (u < 0) return i;
  }
  return last;
}

}  // namespace glm
