#pragma once
// Position-wise feed-forward: plain GELU (down(gelu(up x))) or gated (down(act(gate x) * up x)),
// the gated forms through core's fused `gated` op. Parameter names: gate_proj (gated only),
// up_proj, down_proj.
#include "models/linear.h"
#include "parallel/communicator.h"

namespace strata::models {

enum class FFNKind {
  Gelu,       // BERT/GPT: down(gelu(up x))
  GatedGelu,  // T5 v1.1, crammed BERT's GLU: down(gelu(gate x) * up x)
  SwiGLU,     // Llama: down(silu(gate x) * up x)
};

struct FeedForwardConfig {
  int64_t d_model = 0;
  int64_t d_ff = 0;
  FFNKind kind = FFNKind::SwiGLU;
  bool gelu_tanh =
      false;  // GELU's tanh approximation (T5's gelu_new) instead of the exact erf form
  bool bias = false;
  Init init = Init::normal(0.02);
  Init out_init = Init::normal(0.02);  // down_proj
  // Tensor parallelism (not owned; null or a group of one: a single process): gate and up are
  // column-parallel over d_ff (rank r holds the same slice of both, so the gating pairs up), down
  // is row-parallel. d_ff must divide by the group size.
  parallel::Communicator* tp = nullptr;
};

class FeedForward : public Module {
 public:
  explicit FeedForward(const FeedForwardConfig& cfg);
  Tensor forward(const Tensor& x) const;
  const FeedForwardConfig& config() const { return cfg_; }
  bool gated() const { return cfg_.kind != FFNKind::Gelu; }

 private:
  FeedForwardConfig cfg_;
  parallel::Communicator* tp_;  // null unless d_ff is split over more than one rank
  std::shared_ptr<Linear> gate_proj_, up_proj_, down_proj_;
};

}  // namespace strata::models
