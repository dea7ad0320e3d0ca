#pragma once
// Fused neural-network ops: each has a dedicated forward and backward kernel.
#include "core/backend.h"
#include "core/tensor.h"

namespace strata {

Tensor softmax(const Tensor& x, int64_t dim = -1);
Tensor log_softmax(const Tensor& x, int64_t dim = -1);

// Mean cross-entropy over rows whose target is not `ignore_index` (-100 as in PyTorch), with
// PyTorch's label smoothing. logits [..., V], target integer [...]. reduction: "mean", "sum" or
// "none" (per-row losses, 0 at ignored rows).
Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index = -100,
                     double label_smoothing = 0.0, const std::string& reduction = "mean");

// Over the last dim. weight/bias may be undefined (no affine part).
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps = 1e-6);

// Inverted dropout; element i is kept iff Philox(key, i) >= p, so the mask is the same for any
// thread count or layout and backward recomputes it instead of storing it.
Tensor dropout(const Tensor& x, double p, RandomKey key, bool training = true);

// Rotary position embedding (rotate-half convention) of x [..., L, D] at positions
// pos_offset .. pos_offset + L - 1, frequencies base^(-2i/D).
Tensor rope(const Tensor& x, double base = 10000.0, int64_t pos_offset = 0);

struct AttentionOptions {
  double scale = -1;  // < 0: 1/sqrt(D); T5 uses 1.0 (unscaled)
  bool causal = false;
  Tensor bias;              // additive, broadcastable to [B, H, Lq, Lk] (T5 relative positions)
  Tensor key_padding_mask;  // bool [B, Lk], true = real token (attend), false = padding
};

// Fused attention: q [B,H,Lq,D], k/v [B,H,Lk,D] -> [B,H,Lq,D]. Works block by block and never
// holds a head's full score matrix; backward recomputes the blocks.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v,
                 const AttentionOptions& opt = {});

}  // namespace strata
