#pragma once
// Pipeline parity checks shared by the in-process tests (threads, pipeline_local_comm.h) and the
// MPI tests (one process per stage): one rank of the pp group builds its stage, runs `steps`
// training steps through the PipelineExecutor with AdamW, and compares against the whole model
// run in this process with gradient accumulation over the same micro-batches (the trainer's
// arithmetic): the loss and every gradient of the stage's parameters after each step, and every
// parameter after the last. Tolerances: 1e-5 relative in f32, 1e-11 in f64.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/module.h"
#include "optim/adamw.h"
#include "parallel/communicator.h"
#include "parallel/pipeline_executor.h"
#include "tests/models/test_util.h"

namespace strata::parallel::testing {

using models::testing::rel_err;

inline double parity_tolerance(DType dtype) {
  return dtype == DType::f64 ? 1e-11 : 1e-5;
}

inline std::vector<optim::NamedParam> named_params(const models::Module& m) {
  std::vector<optim::NamedParam> out;
  for (const auto& [name, t] : m.named_parameters()) out.push_back({name, t});
  return out;
}

inline std::unique_ptr<optim::AdamW> make_adamw(const models::Module& m) {
  optim::Hyper h;
  h.lr = 1e-3;
  h.weight_decay = 0.1;
  return std::make_unique<optim::AdamW>(optim::make_param_groups(named_params(m), h));
}

struct Worst {
  double err = 0;
  std::string name;
};

// The worst relative error of the stage's parameter gradients (or values) against the reference
// parameters of the same full names (against their slice where the stage's parameter is a
// tensor-parallel shard).
inline Worst worst_error(const models::Module& stage, const models::Module& ref, bool grads) {
  Worst w;
  for (const auto& [name, t] : stage.named_parameters()) {
    const Tensor r = ref.parameter(name);
    const Tensor a = grads ? t.grad() : t;
    Tensor b = grads ? r.grad() : r;
    if (b.defined()) b = stage.sharding(name).local_slice(b);
    EXPECT_TRUE(a.defined() && b.defined()) << name;
    if (!a.defined() || !b.defined()) continue;
    const double e = rel_err(a, b);
    if (e >= w.err) w = {e, name};
  }
  return w;
}

// The model-specific parts of one parity run.
struct ParityCase {
  std::string what;  // for messages: "decoder PP2 1f1b f32"
  models::Module* stage = nullptr;
  StageCompute* compute = nullptr;
  models::Module* ref = nullptr;
  // Gives both the stage and the reference step `step`'s micro-batches (and dropout step).
  std::function<void(int step)> load_step;
  // The reference: the mean micro-batch loss with gradients accumulated as the trainer does.
  std::function<double()> ref_loss_and_grads;
  // Expect bitwise equality: without tied weights a stage does exactly the whole model's
  // arithmetic on its blocks, and parameter gradients accumulate in the same (micro-batch)
  // order. Tied weights sum the two replicas' accumulated gradients, a different order.
  bool bitwise = false;
  // For the parameters after the AdamW steps, when looser than the gradients' tolerance.
  double param_tolerance = 0;
};

// Runs `steps` steps on this rank's stage and checks them against the reference.
inline void run_parity(Communicator& pp, const PipelineSchedule& schedule, const ParityCase& c,
                       DType dtype, int steps = 3) {
  const double tol = parity_tolerance(dtype);
  // Same names, same init: the stage starts with exactly the whole model's numbers.
  for (const auto& [name, t] : c.stage->named_parameters())
    EXPECT_TRUE(models::testing::bitwise_equal(
        t, c.stage->sharding(name).local_slice(c.ref->parameter(name)).contiguous()))
        << c.what << ": " << name << " differs at init";
  c.stage->to(dtype);
  c.ref->to(dtype);
  auto opt = make_adamw(*c.stage), ref_opt = make_adamw(*c.ref);
  PipelineExecutor exec(pp, schedule);
  for (int step = 0; step < steps; ++step) {
    c.load_step(step);
    const double ref_loss = c.ref_loss_and_grads();
    const PipelineStepResult r = exec.run(*c.compute);
    const double loss_err = std::abs(r.loss - ref_loss) / std::abs(ref_loss);
    const Worst g = worst_error(*c.stage, *c.ref, true);
    std::printf(
        "%s stage %d step %d: loss %.6f (rel err %.2g), worst grad rel err %.2g (%s), "
        "busy %.1f ms, wait %.1f ms\n",
        c.what.c_str(), pp.rank(), step, r.loss, loss_err, g.err, g.name.c_str(),
        1e3 * r.stats.busy_s(), 1e3 * r.stats.wait_s);
    EXPECT_LT(loss_err, tol) << c.what << " step " << step;
    EXPECT_LT(g.err, tol) << c.what << " step " << step << ": " << g.name;
    if (c.bitwise) {
      EXPECT_EQ(r.loss, ref_loss) << c.what << " step " << step;
      EXPECT_EQ(g.err, 0.0) << c.what << " step " << step << ": " << g.name;
    }
    opt->step();
    ref_opt->step();
    opt->zero_grad();
    ref_opt->zero_grad();
  }
  const Worst p = worst_error(*c.stage, *c.ref, false);
  std::printf("%s stage %d: worst parameter rel err after %d AdamW steps %.2g (%s)\n",
              c.what.c_str(), pp.rank(), steps, p.err, p.name.c_str());
  EXPECT_LT(p.err, std::max(tol, c.param_tolerance)) << c.what << ": " << p.name;
  if (c.bitwise) {
    EXPECT_EQ(p.err, 0.0) << c.what << ": " << p.name;
  }
}

inline std::string case_name(const std::string& model, const PipelineSchedule& s, DType dtype) {
  return model + " PP" + std::to_string(s.stages()) + " " + s.name() + " m" +
         std::to_string(s.micro_batches()) + " " + std::string(dtype_name(dtype));
}

}  // namespace strata::parallel::testing
