#pragma once
// Pipeline parity checks shared by the in-process tests (threads, thread_group.h) and the
// MPI tests (one process per stage): one rank of the pp group builds its stage, runs `steps`
// training steps through the PipelineExecutor with AdamW, and compares against the whole model
// run in this process with gradient accumulation over the same micro-batches (the trainer's
// arithmetic): the loss and every gradient of the stage's parameters after each step, and every
// parameter after the last.
//
// Tolerances. f64: 1e-11 relative. f32: 1e-5 relative, or, for a tensor the whole model itself
// computes less accurately than that, within kConditionFactor times the whole model's own f32
// error on it, measured against the same model run in f64 (the "shadow"). A scalar such as a
// position scale gets its gradient from a sum of batch x length x width products that cancel;
// under another summation order (oneDNN's GEMM against ours, a different micro-batch split) its
// f32 value moves by more than 1e-5 of itself however right the pipeline is, and exactly as much
// as the whole model's own f32 rounding error shows. A dropped or mis-scaled micro-batch moves
// every gradient by about 1/m of itself, far beyond both bounds (PipelineParityTolerance tests).
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

// How far beyond the whole model's own f32 error (against f64) a result may be: two f32 results
// with different summation orders each carry an error of that size.
inline constexpr double kConditionFactor = 8.0;

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

// One tensor's error against the reference, in units of what it is allowed: below 1 passes.
struct Worst {
  double err = 0;     // max |a - ref| / max |ref|
  double own = 0;     // the reference's own f32 error: max |ref - shadow| / max |shadow|
  double excess = 0;  // err / max(tol, kConditionFactor * own)
  std::string name;
};

inline double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

inline std::vector<double> as_f64(const Tensor& t) {
  return t.to(DType::f64).contiguous().to_vector<double>();
}

// The error of `a` against `ref`, judged against `shadow` (the reference computed in f64; empty
// when `ref` is f64 itself).
inline Worst judged_error(const Tensor& a, const Tensor& ref, const Tensor& shadow, double tol) {
  Worst w;
  const auto x = as_f64(a), y = as_f64(ref);
  if (x.size() != y.size()) return {INFINITY, 0, INFINITY, ""};
  double diff = 0;
  for (size_t i = 0; i < x.size(); ++i) diff = std::max(diff, std::abs(x[i] - y[i]));
  const double scale = max_abs(y);
  w.err = scale > 0 ? diff / scale : diff;
  if (shadow.defined()) {
    const auto z = as_f64(shadow);
    double own = 0;
    for (size_t i = 0; i < y.size(); ++i) own = std::max(own, std::abs(y[i] - z[i]));
    const double zscale = max_abs(z);
    w.own = zscale > 0 ? own / zscale : own;
  }
  w.excess = w.err / std::max(tol, kConditionFactor * w.own);
  return w;
}

// The worst error of the stage's parameter gradients (or values) against the reference
// parameters of the same full names (against their slice where the stage's parameter is a
// tensor-parallel shard). `shadow`, when given, is the reference in f64.
inline Worst worst_error(const models::Module& stage, const models::Module& ref, bool grads,
                         double tol = 0, const models::Module* shadow = nullptr) {
  Worst w;
  for (const auto& [name, t] : stage.named_parameters()) {
    const auto slice = [&](const models::Module& m) {
      const Tensor r = m.parameter(name);
      Tensor b = grads ? r.grad() : r;
      return b.defined() ? stage.sharding(name).local_slice(b) : b;
    };
    const Tensor a = grads ? t.grad() : t;
    const Tensor b = slice(ref);
    EXPECT_TRUE(a.defined() && b.defined()) << name;
    if (!a.defined() || !b.defined()) continue;
    Worst e = judged_error(a, b, shadow != nullptr ? slice(*shadow) : Tensor(), tol);
    e.name = name;
    if (e.excess > w.excess || (e.excess == w.excess && e.err >= w.err)) w = e;
  }
  return w;
}

// A deliberate error in the reference's micro-batch accumulation, to show that the parity check
// catches the same error in a pipeline (PipelineParityTolerance tests).
enum class Fault { None, DropMicroBatch, DoubleMicroBatch };

// The model-specific parts of one parity run.
struct ParityCase {
  std::string what;  // for messages: "decoder PP2 1f1b f32"
  models::Module* stage = nullptr;
  StageCompute* compute = nullptr;
  models::Module* ref = nullptr;
  // The whole model again, kept in f64 when the run is f32: the yardstick of the reference's own
  // rounding error. Same seed and micro-batches as `ref`.
  models::Module* shadow = nullptr;
  int64_t micro_batches = 0;
  // Gives the stage, the reference and the shadow step `step`'s micro-batches (and dropout step).
  std::function<void(int step)> load_step;
  // The loss of micro-batch i of the loaded step on `model` (the reference or the shadow).
  std::function<Tensor(models::Module& model, int64_t i)> micro_batch_loss;
  // Expect bitwise equality: without tied weights a stage does exactly the whole model's
  // arithmetic on its blocks, and parameter gradients accumulate in the same (micro-batch)
  // order. Tied weights sum the two replicas' accumulated gradients, a different order.
  bool bitwise = false;
  // For the parameters after the AdamW steps, when looser than the gradients' tolerance.
  double param_tolerance = 0;
  Fault fault = Fault::None;
};

// The reference: the mean micro-batch loss with gradients accumulated as the trainer does.
inline double accumulate(const ParityCase& c, models::Module& model) {
  const int64_t m = c.micro_batches;
  double total = 0;
  for (int64_t i = 0; i < m; ++i) {
    double weight = 1.0 / double(m);
    if (i == 0 && c.fault == Fault::DropMicroBatch) weight = 0;
    if (i == 0 && c.fault == Fault::DoubleMicroBatch) weight *= 2;
    if (weight == 0) continue;
    const Tensor loss = c.micro_batch_loss(model, i);
    total += loss.item<double>() * weight;
    (loss * weight).backward();
  }
  return total;
}

// Runs `steps` steps on this rank's stage and checks them against the reference. Returns what
// failed, one line each (empty: parity holds).
inline std::vector<std::string> parity_failures(Communicator& pp, const PipelineSchedule& schedule,
                                                const ParityCase& c, DType dtype, int steps = 3) {
  std::vector<std::string> failures;
  const auto fail = [&](const std::string& what) { failures.push_back(c.what + ": " + what); };
  const double tol = parity_tolerance(dtype);
  // Same names, same init: the stage starts with exactly the whole model's numbers.
  for (const auto& [name, t] : c.stage->named_parameters())
    if (!models::testing::bitwise_equal(
            t, c.stage->sharding(name).local_slice(c.ref->parameter(name)).contiguous()))
      fail(name + " differs at init");
  c.stage->to(dtype);
  c.ref->to(dtype);
  models::Module* shadow = dtype == DType::f64 ? nullptr : c.shadow;
  if (shadow != nullptr) shadow->to(DType::f64);
  auto opt = make_adamw(*c.stage), ref_opt = make_adamw(*c.ref);
  auto shadow_opt = shadow != nullptr ? make_adamw(*shadow) : nullptr;
  PipelineExecutor exec(pp, schedule);
  for (int step = 0; step < steps; ++step) {
    const std::string at = " at step " + std::to_string(step);
    c.load_step(step);
    const double ref_loss = accumulate(c, *c.ref);
    if (shadow != nullptr) accumulate(c, *shadow);
    const PipelineStepResult r = exec.run(*c.compute);
    const double loss_err = std::abs(r.loss - ref_loss) / std::abs(ref_loss);
    const Worst g = worst_error(*c.stage, *c.ref, true, tol, shadow);
    std::printf(
        "%s stage %d step %d: loss %.6f (rel err %.2g), worst grad rel err %.2g (whole model's "
        "own f32 error %.2g, %.2g of allowed) (%s), busy %.1f ms, wait %.1f ms\n",
        c.what.c_str(), pp.rank(), step, r.loss, loss_err, g.err, g.own, g.excess, g.name.c_str(),
        1e3 * r.stats.busy_s(), 1e3 * r.stats.wait_s);
    if (!(loss_err < tol)) fail("loss rel err " + std::to_string(loss_err) + at);
    if (!(g.excess < 1))
      fail("gradient of " + g.name + at + ": rel err " + std::to_string(g.err) +
           " against an allowed " + std::to_string(std::max(tol, kConditionFactor * g.own)));
    if (c.bitwise && r.loss != ref_loss) fail("loss not bitwise equal" + at);
    if (c.bitwise && g.err != 0.0) fail("gradient of " + g.name + " not bitwise equal" + at);
    for (auto* o : {opt.get(), ref_opt.get(), shadow_opt.get()}) {
      if (o == nullptr) continue;
      o->step();
      o->zero_grad();
    }
  }
  const Worst p = worst_error(*c.stage, *c.ref, false, std::max(tol, c.param_tolerance), shadow);
  std::printf(
      "%s stage %d: worst parameter rel err after %d AdamW steps %.2g (%.2g of allowed) (%s)\n",
      c.what.c_str(), pp.rank(), steps, p.err, p.excess, p.name.c_str());
  if (!(p.excess < 1))
    fail("parameter " + p.name + " after the steps: rel err " + std::to_string(p.err));
  if (c.bitwise && p.err != 0.0) fail("parameter " + p.name + " not bitwise equal");
  return failures;
}

inline void run_parity(Communicator& pp, const PipelineSchedule& schedule, const ParityCase& c,
                       DType dtype, int steps = 3) {
  for (const std::string& f : parity_failures(pp, schedule, c, dtype, steps)) ADD_FAILURE() << f;
}

inline std::string case_name(const std::string& model, const PipelineSchedule& s, DType dtype) {
  return model + " PP" + std::to_string(s.stages()) + " " + s.name() + " m" +
         std::to_string(s.micro_batches()) + " " + std::string(dtype_name(dtype));
}

}  // namespace strata::parallel::testing
