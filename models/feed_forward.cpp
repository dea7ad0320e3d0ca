#include "models/feed_forward.h"

#include "core/error.h"
#include "core/ops.h"
#include "models/tp_linear.h"
#include "parallel/tp_mappings.h"

namespace strata::models {

FeedForward::FeedForward(const FeedForwardConfig& cfg)
    : Module("FeedForward"),
      cfg_(cfg),
      tp_(cfg.tp != nullptr && cfg.tp->size() > 1 ? cfg.tp : nullptr) {
  STRATA_CHECK(cfg.d_model > 0 && cfg.d_ff > 0, "FeedForward: d_model ", cfg.d_model, " and d_ff ",
               cfg.d_ff, " must be positive");
  if (tp_ != nullptr) {
    STRATA_CHECK(cfg.d_ff % tp_->size() == 0, "FeedForward: d_ff ", cfg.d_ff,
                 " is not divisible by the tensor-parallel size ", tp_->size());
    using Column = ColumnParallelLinear;
    auto column = [&](const char* name) {
      return register_module(
          name, std::make_shared<Column>(cfg.d_model, cfg.d_ff, cfg.bias, cfg.init, Init::zeros(),
                                         *tp_, Column::Input::InRegion, name));
    };
    if (gated()) gate_proj_ = column("gate_proj");
    up_proj_ = column("up_proj");
    down_proj_ = register_module(
        "down_proj", std::make_shared<RowParallelLinear>(
                         cfg.d_ff, cfg.d_model, cfg.bias, cfg.out_init, Init::zeros(), *tp_,
                         RowParallelLinear::Input::Split, "ffn.down_proj"));
    return;
  }
  if (gated())
    gate_proj_ = register_module(
        "gate_proj", std::make_shared<Linear>(cfg.d_model, cfg.d_ff, cfg.bias, cfg.init));
  up_proj_ = register_module("up_proj",
                             std::make_shared<Linear>(cfg.d_model, cfg.d_ff, cfg.bias, cfg.init));
  down_proj_ = register_module(
      "down_proj", std::make_shared<Linear>(cfg.d_ff, cfg.d_model, cfg.bias, cfg.out_init));
}

Tensor FeedForward::forward(const Tensor& in) const {
  // Under tensor parallelism gate and up share one copy_to_tp (one backward all-reduce).
  const Tensor x = tp_ != nullptr ? parallel::copy_to_tp(in, *tp_, "tp.ffn_in") : in;
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
