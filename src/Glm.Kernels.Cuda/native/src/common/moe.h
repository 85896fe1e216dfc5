// GLM-4.5's expert choice for one token, written once for both builds (Glm.Kernels.Device.Cpu.CpuMoe's rule):
// group-limited top-k over the corrected scores, the first index winning a tie; weights from the uncorrected
// scores, optionally renormalised, times the scaling factor. Serial: one thread decides a token.
#pragma once
#include "formats.h"

namespace glm {

// scores: the sigmoid scores; choice: scores plus the correction bias (overwritten); taken: experts flags;
// group_score and keep: groups entries each. chosen and weights receive top_k entries, ascending by expert.
GLM_HD void moe_select(const float* scores, float* choice, uint8_t* taken, float* group_score, uint8_t* keep, int experts, int top_k,
                       int groups, int topk_group, bool norm_topk_prob, float routed_scaling_factor, int32_t* chosen, float* weights) {
  if (groups > 1) {
    int per_group = experts / groups;
    for (int g = 0; g < groups; g++) {
      float first = -INFINITY, second = -INFINITY;
      for (int e = g * per_group; e < (g + 1) * per_group; e++) {
        if (choice[e] > first) { second = first; first = choice[e]; }
        else if (choice[e] > second) second = choice[e];
      }
      group_score[g] = per_group >= 2 ? first + second : first;
      keep[g] = 0;
    }
    for (int k = 0; k < topk_group; k++) {
      int best = -1;
      for (int g = 0; g < groups; g++)
        if (!keep[g] && (best < 0 || group_score[g] > group_score[best])) best = g;
      keep[best] = 1;
    }
    for (int g = 0; g < groups; g++)
      if (!keep[g])
        for (int e = g * per_group; e < (g + 1) * per_group; e++) choice[e] = -INFINITY;
  }
  for (int e = 0; e < experts; e++) taken[e] = 0;
  for (int k = 0; k < top_k; k++) {
    int best = -1;
    for (int e = 0; e < experts; e++)
      if (!taken[e] && (best < 0 || choice[e] > choice[best])) best = e;
    taken[best] = 1;
  }
  int m = 0;
  float sum = 0.f;
  for (int e = 0; e < experts; e++) {
    if (!taken[e]) continue;
    chosen[m] = e;
    weights[m] = scores[e];
    sum += scores[e];
    m++;
  }
  for (int k = 0; k < top_k; k++) {
    if (norm_topk_prob) weights[k] /= sum + 1e-20f;
    weights[k] *= routed_scaling_factor;
  }
}

}  // namespace glm
