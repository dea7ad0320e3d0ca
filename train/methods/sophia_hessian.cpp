#include "train/methods/sophia_hessian.h"

#include <cstdio>
#include <ostream>

#include "core/error.h"
#include "core/ops.h"
#include "parallel/topology.h"

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
  sophia_of(step);
  if (checked_) return;
  // A task that cannot draw labels (a classifier, a pipeline stage) says so before the first
  // step rather than at the first pass, k steps in.
  step.task->set_label_sampling(RandomKey{});
  step.task->set_label_sampling(std::nullopt);
  checked_ = true;
}

void SophiaHessian::on_batch(StepContext&, std::vector<data::Batch>& micro_batches) {
  batches_ = micro_batches;
}

void SophiaHessian::hessian_pass(Task& task, optim::Sophia& sophia, StepPath& path,
                                 const std::vector<data::Batch>& batches, uint64_t seed,
                                 int64_t step) {
  STRATA_CHECK(!batches.empty(), "sophia_hessian: no batches for the Hessian pass");
  RandomKey key;
  key.seed = seed;
  key.stream = kHessianLabelStream;
  key.step = uint64_t(step);
  // Restores the targets however the pass ends.
  struct Sampling {
    Task& task;
    Sampling(Task& t, const RandomKey& k) : task(t) { task.set_label_sampling(k); }
    ~Sampling() { task.set_label_sampling(std::nullopt); }
  } sampling(task, key);
  path.forward_backward(batches);
  sophia.update_hessian();
  sophia.zero_grad();
}

void SophiaHessian::on_clock(StepContext& step, StepCharge& charge) {
  optim::Sophia& sophia = sophia_of(step);
  if (step.step % every_ != every_ - 1) return;
  // Each rank counts the coordinates it holds: tensor-parallel shards and pipeline stages add up
  // to the whole model (data-parallel replicas count the same).
  double counts[2] = {double(sophia.unclipped_count()), double(sophia.counted_coordinates())};
  if (step.topology) {
    for (parallel::Communicator* c : {&step.topology->tp(), &step.topology->pp()}) {
      if (c->size() == 1) continue;
      Tensor t = from_vector<double>({counts[0], counts[1]}, {2});
      c->all_reduce(t, parallel::ReduceOp::Sum, "sophia.win_rate");
      const std::vector<double> v = t.to_vector<double>();
      counts[0] = v[0], counts[1] = v[1];
    }
  }
  last_win_rate_ = counts[1] > 0 ? counts[0] / counts[1] : 0.0;
  STRATA_CHECK(step.path, "sophia_hessian: the trainer gave no step path");
  hessian_pass(*step.task, sophia, *step.path, batches_, step.seed, step.step);
  // The whole job's tokens (data-parallel ranks hold some rows each), the same on every rank.
  int64_t tokens = 0;
  for (const data::Batch& b : batches_) tokens += b.rows * b.input_len;
  if (step.topology && step.topology->layout().dp > 1) {
    Tensor t = from_vector<int64_t>({tokens}, {1});
    step.topology->dp().all_reduce(t, parallel::ReduceOp::Sum, "dp.sophia.tokens");
    tokens = t.item<int64_t>();
  }
  hessian_tokens_ += tokens;
  // One forward and one backward over the step's batch: what RST and FLOP budgets charge.
  charge.forward_tokens += tokens;
  charge.backward_tokens += tokens;
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
