#include "train/methods/sophia_hessian.h"

#include <cstdio>
#include <ostream>

#include "core/error.h"
#include "core/ops.h"

namespace strata::train {

namespace {

optim::Sophia& sophia_of(const StepContext& step) {
  auto* s = dynamic_cast<optim::Sophia*>(step.optimizer);
  STRATA_CHECK(s, "sophia_hessian: the run's optimizer is ",
               step.optimizer ? step.optimizer->name() : std::string("none"),
               "; the Hessian pass belongs to optim.name = sophiag");
  return *s;
}

}  // namespace

SophiaHessian::SophiaHessian(int64_t every) : every_(every) {
  STRATA_CHECK(every >= 1, "sophia_hessian: optim.hessian_every must be >= 1, got ", every);
}

void SophiaHessian::before_step(StepContext& step) {
  STRATA_CHECK(!step.topology || step.topology->world_size() == 1,
               "sophiag: the Hessian pass runs in one process only so far (its gradients are "
               "not reduced over data parallelism, and tensor parallelism would need a "
               "vocabulary-parallel draw); train sophiag without mpirun, or use optim.name = lion "
               "in parallel");
  sophia_of(step);
}

void SophiaHessian::on_batch(StepContext&, std::vector<data::Batch>& micro_batches) {
  batches_ = micro_batches;
}

void SophiaHessian::hessian_pass(Task& task, optim::Sophia& sophia,
                                 const std::vector<data::Batch>& batches, uint64_t seed,
                                 int64_t step) {
  STRATA_CHECK(!batches.empty(), "sophia_hessian: no batches for the Hessian pass");
  const double weight = 1.0 / double(batches.size());
  for (size_t m = 0; m < batches.size(); ++m) {
    RandomKey key;
    key.seed = seed;
    key.stream = kHessianLabelStream;
    key.step = uint64_t(step);
    // Micro-batches draw disjoint numbers: 2^40 positions each is more than any batch holds.
    key.index_offset = uint64_t(m) << 40;
    Tensor loss = task.sampled_label_loss(batches[m], key);
    if (batches.size() > 1) loss = loss * weight;
    loss.backward();
  }
  sophia.update_hessian();
  sophia.zero_grad();
}

void SophiaHessian::on_clock(StepContext& step, StepCharge&) {
  optim::Sophia& sophia = sophia_of(step);
  last_win_rate_ = sophia.win_rate();
  if (step.step % every_ != every_ - 1) return;
  hessian_pass(*step.task, sophia, batches_, step.seed, step.step);
  for (const data::Batch& b : batches_) hessian_tokens_ += b.rows * b.input_len;
  ++passes_;
  if (step.log) {
    char line[160];
    std::snprintf(line, sizeof line,
                  "sophia: Hessian pass %lld after step %lld; win rate %.3f (unclipped "
                  "coordinates; the authors keep it within 0.1-0.5 by rho)\n",
                  (long long)passes_, (long long)(step.step + 1), last_win_rate_);
    *step.log << line;
  }
}

void SophiaHessian::save_state(CheckpointState& state) const {
  state.ints[key("every")] = every_;
  state.ints[key("passes")] = passes_;
  state.ints[key("hessian_tokens")] = hessian_tokens_;
  state.doubles[key("last_win_rate")] = last_win_rate_;
}

void SophiaHessian::load_state(const CheckpointState& state) {
  auto p = state.ints.find(key("passes"));
  STRATA_CHECK(p != state.ints.end(),
               "sophia_hessian: the checkpoint has no Sophia Hessian state "
               "(was it trained with another optimizer?); resume with the checkpoint's "
               "optim.name or start a new run.dir");
  const int64_t every = state.ints.at(key("every"));
  STRATA_CHECK(every == every_, "sophia_hessian: the checkpoint ran a Hessian pass every ", every,
               " steps, this run asks for every ", every_,
               "; resume with optim.hessian_every = ", every, " or start a new run.dir");
  passes_ = p->second;
  hessian_tokens_ = state.ints.at(key("hessian_tokens"));
  last_win_rate_ = state.doubles.at(key("last_win_rate"));
}

}  // namespace strata::train
