#include "models/feed_forward.h"

#include "core/error.h"
#include "core/ops.h"

namespace strata::models {

FeedForward::FeedForward(const FeedForwardConfig& cfg) : Module("FeedForward"), cfg_(cfg) {
  STRATA_CHECK(cfg.d_model > 0 && cfg.d_ff > 0, "FeedForward: d_model ", cfg.d_model, " and d_ff ",
               cfg.d_ff, " must be positive");
  if (gated())
    gate_proj_ = register_module(
        "gate_proj", std::make_shared<Linear>(cfg.d_model, cfg.d_ff, cfg.bias, cfg.init));
  up_proj_ = register_module("up_proj",
                             std::make_shared<Linear>(cfg.d_model, cfg.d_ff, cfg.bias, cfg.init));
  down_proj_ = register_module(
      "down_proj", std::make_shared<Linear>(cfg.d_ff, cfg.d_model, cfg.bias, cfg.out_init));
}

Tensor FeedForward::forward(const Tensor& x) const {
  Tensor h;
  switch (cfg_.kind) {
    case FFNKind::Gelu:
      h = gelu(up_proj_->forward(x), cfg_.gelu_tanh);
      break;
    case FFNKind::GatedGelu:
      h = strata::gated(cfg_.gelu_tanh ? GatedAct::GeluTanh : GatedAct::GeluExact,
                        gate_proj_->forward(x), up_proj_->forward(x));
      break;
    case FFNKind::SwiGLU:
      h = strata::gated(GatedAct::Silu, gate_proj_->forward(x), up_proj_->forward(x));
      break;
  }
  return down_proj_->forward(h);
}

}  // namespace strata::models
