#include "train/optimizer_factory.h"

#include <cmath>

#include "core/error.h"
#include "optim/adafactor.h"
#include "optim/adamw.h"
#include "optim/lion.h"
#include "optim/sophia.h"
#include "train/parallel_step.h"

namespace strata::train {

void check_optimizer_options(const TrainOptions& o) {
  const bool sophia = o.optimizer == OptimizerKind::SophiaG;
  STRATA_CHECK(!o.rms_scale || sophia || o.optimizer == OptimizerKind::Lion,
               "train: optim.rms_scale applies to lion and sophiag only (adamwscale always scales "
               "by the RMS, adafactor by optim.scale_parameter); unset it for optim.name = ",
               option_name(optimizer_names(), o.optimizer));
  if (sophia) {
    STRATA_CHECK(o.rho > 0 && std::isfinite(o.rho), "train: optim.rho must be > 0, got ", o.rho,
                 " (the Sophia authors use 0.04, No Train No Gain's T5 0.01)");
    STRATA_CHECK(o.hessian_every >= 1, "train: optim.hessian_every must be >= 1, got ",
                 o.hessian_every, " (the Sophia authors use 10)");
    STRATA_CHECK(o.hessian_batch_tokens >= 0 && std::isfinite(o.hessian_batch_tokens),
                 "train: optim.hessian_batch_tokens must be >= 0 (0: the tokens of one step), "
                 "got ",
                 o.hessian_batch_tokens);
  }
  if (o.optimizer == OptimizerKind::Adafactor)
    STRATA_CHECK(!o.warmup_init || o.relative_step,
                 "train: optim.warmup_init needs optim.relative_step = true (as HF's Adafactor)");
}

std::unique_ptr<optim::Optimizer> make_optimizer(const TrainOptions& o, const models::Module& model,
                                                 parallel::Communicator& tp,
                                                 int64_t tokens_per_step) {
  std::vector<optim::NamedParam> named;
  for (const auto& [name, p] : model.named_parameters()) named.push_back({name, p});
  const optim::Hyper hyper{o.lr, o.weight_decay, o.beta1, o.beta2, o.eps};
  auto groups = optim::make_param_groups(named, hyper);
  check_optimizer_options(o);
  const bool tp_rms = tp.size() > 1;  // RMS factors need the whole tensor's sum of squares
  switch (o.optimizer) {
    case OptimizerKind::AdamW:
      return std::make_unique<optim::AdamW>(std::move(groups));
    case OptimizerKind::AdamWScale:
      if (tp_rms) return std::make_unique<ShardedAdamWScale>(std::move(groups), model, tp);
      return std::make_unique<optim::AdamWScale>(std::move(groups));
    case OptimizerKind::Lion:
      if (tp_rms && o.rms_scale)
        return std::make_unique<TpRms<optim::Lion>>(model, tp, std::move(groups), true);
      return std::make_unique<optim::Lion>(std::move(groups), o.rms_scale);
    case OptimizerKind::SophiaG: {
      optim::SophiaOptions so;
      so.rho = o.rho;
      so.batch_tokens = o.hessian_batch_tokens > 0 ? o.hessian_batch_tokens
                        : tokens_per_step > 0      ? double(tokens_per_step)
                                                   : 5120.0;
      so.rms_scale = o.rms_scale;
      if (tp_rms && o.rms_scale)
        return std::make_unique<TpRms<optim::Sophia>>(model, tp, std::move(groups), so);
      return std::make_unique<optim::Sophia>(std::move(groups), so);
    }
    case OptimizerKind::Adafactor: {
      STRATA_CHECK(tp.size() == 1,
                   "train: adafactor's factored moments are per whole tensor and "
                   "not written for tensor parallelism yet; use parallel.tp = 1 (data and "
                   "pipeline parallelism work) or optim.name = adamwscale");
      optim::AdafactorOptions ao;
      ao.relative_step = o.relative_step;
      ao.scale_parameter = o.scale_parameter;
      ao.warmup_init = o.warmup_init;
      ao.momentum = o.adafactor_momentum;
      return std::make_unique<optim::Adafactor>(std::move(groups), ao);
    }
  }
  STRATA_FAIL("train: optimizer ", int(o.optimizer), " has no implementation");
}

}  // namespace strata::train
