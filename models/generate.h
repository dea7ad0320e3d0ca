#pragma once
// Autoregressive generation for any CausalLM: greedy or sampled (temperature, top-k, top-p), with
// or without the KV cache. Sampling for sequence b at step s draws Philox(seed, Sampling, s)
// element b, so a run is reproducible and independent of batch composition order and threads.
#include <cstdint>
#include <vector>

#include "models/causal_lm.h"

namespace strata::models {

struct GenerateOptions {
  int64_t max_new_tokens = 32;
  bool greedy = true;        // argmax (first maximum); otherwise sample
  double temperature = 1.0;  // sampling only; > 0
  int64_t top_k = 0;         // 0: no top-k filter
  double top_p = 1.0;        // nucleus: smallest set of tokens with mass >= top_p; 1: off
  uint64_t seed = 0;
  bool use_cache = true;  // false: recompute the whole sequence each step (the reference)
  int64_t eos_id = -1;    // >= 0: a sequence that emitted it is padded with it afterwards
};

// prompt [B, L] integer ids (L >= 1) -> [B, L + max_new_tokens] (i64), prompt included.
// Runs without autograd and in eval mode (the model's mode is restored afterwards).
Tensor generate(CausalLM& model, const Tensor& prompt, const GenerateOptions& opt);

// One token from a row of logits under opt's rule; u is the uniform draw in [0, 1) used when
// sampling. Exposed for tests.
int64_t pick_token(const std::vector<double>& logits, const GenerateOptions& opt, double u);

}  // namespace strata::models
