#include "train/parallel_step.h"

#include <cmath>
#include <limits>

#include "core/autograd/grad_mode.h"
#include "core/ops.h"

namespace strata::train {

std::vector<double> loss_shares(const std::vector<data::Batch>& batches,
                                parallel::Communicator& dp) {
  std::vector<int64_t> local;
  for (const data::Batch& b : batches) local.push_back(loss_positions(b));
  Tensor total = from_vector<int64_t>(local, {int64_t(local.size())});
  dp.all_reduce(total, parallel::ReduceOp::Sum, "dp.loss_positions");
  const auto n = total.to_vector<int64_t>();
  std::vector<double> shares;
  for (size_t k = 0; k < local.size(); ++k)
    shares.push_back(n[k] > 0 ? double(local[k]) / double(n[k]) : 0.0);
  return shares;
}

std::vector<Tensor> ScaledLossStage::forward(int64_t micro, const std::vector<Tensor>& inputs) {
  std::vector<Tensor> out = stage_.forward(micro, inputs);
  if (last_) out[0] = out[0] * scale_.at(size_t(micro));
  return out;
}

void resync_tied_gradients(parallel::StageCompute& stage, parallel::Communicator& pp) {
  const std::vector<Tensor> tied = stage.tied_parameters();
  const int s = pp.rank(), p = pp.size();
  if (p == 1 || tied.empty() || (s != 0 && s != p - 1)) return;
  NoGradGuard no_grad;
  for (size_t k = 0; k < tied.size(); ++k) {
    Tensor w = tied[k];
    const std::string what = "pp.tied_resync." + std::to_string(k);
    if (s == 0) {
      pp.send(w.grad().contiguous(), p - 1, what);
    } else {
      Tensor g = Tensor::empty(w.shape(), w.grad().dtype());
      pp.recv(g, 0, what);
      w.set_grad(g);
    }
  }
}

double ShardedAdamWScale::param_rms(const std::string& name, const Tensor& param) {
  return sharded_rms(model_, tp_, name, param);
}

double sharded_rms(const models::Module& model, parallel::Communicator& tp, const std::string& name,
                   const Tensor& param) {
  const models::Sharding& sharding = model.sharding(name);
  const double local = optim::Optimizer::rms(param);
  if (sharding.is_replicated()) return local;
  Tensor ss = from_vector<double>({local * local * double(param.numel())}, {1});
  tp.all_reduce(ss, parallel::ReduceOp::Sum, "tp.adamwscale.rms");
  int64_t n = 1;
  for (int64_t d : sharding.global_shape) n *= d;
  return n > 0 ? std::sqrt(ss.item<double>() / double(n)) : 0.0;
}

namespace {

// Forward only through this rank's stage for one batch; the loss on the last stage, 0 elsewhere,
// and there the batch's hits added to `hits`.
double pipeline_forward_loss(Task& task, const data::Batch& batch, parallel::Communicator& pp,
                             EvalCounts& hits) {
  task.set_stage_batches({batch});
  parallel::StageCompute& stage = *task.stage();
  const int s = pp.rank(), p = pp.size();
  std::vector<Tensor> inputs;
  if (s > 0) {
    const auto specs = stage.input_specs(0);
    for (size_t k = 0; k < specs.size(); ++k) {
      Tensor t = Tensor::empty(specs[k].shape, specs[k].dtype);
      pp.recv(t, s - 1, "pp.eval.act." + std::to_string(k));
      inputs.push_back(std::move(t));
    }
  }
  const std::vector<Tensor> out = stage.forward(0, inputs);
  if (s == p - 1) {
    task.add_stage_hits(hits);
    return out.at(0).item<double>();
  }
  for (size_t k = 0; k < out.size(); ++k)
    pp.send(out[k].contiguous(), s + 1, "pp.eval.act." + std::to_string(k));
  return 0;
}

}  // namespace

EvalCounts evaluate_parallel(Task& task, const data::SampleSource& samples,
                             const data::Permutation& order, const data::LoaderOptions& lo,
                             int64_t batches, const parallel::Topology& topology) {
  NoGradGuard no_grad;
  models::EvalModeGuard eval_mode(task.module());
  const bool pipelined = task.stage() != nullptr;
  // Per batch: loss sum (mean x positions), positions, hits.
  std::vector<double> v;
  for (int64_t b = 0; b < batches; ++b) {
    const data::Batch batch =
        data::build_batch(samples, *task.objective(), order, lo, uint64_t(b * lo.global_batch));
    if (pipelined) {
      EvalCounts hits;
      const double mean = pipeline_forward_loss(task, batch, topology.pp(), hits);
      const auto n = double(loss_positions(batch));
      v.insert(v.end(), {mean * n, n, double(hits.correct)});
    } else {
      EvalCounts one;
      task.evaluate(batch, one);
      v.insert(v.end(),
               {one.loss_sum * double(one.counted), double(one.counted), double(one.correct)});
    }
  }
  Tensor t = from_vector<double>(v, {int64_t(v.size())});
  topology.dp().all_reduce(t, parallel::ReduceOp::Sum, "dp.eval");
  if (pipelined) topology.pp().broadcast(t, topology.pp().size() - 1, "pp.eval");
  const auto r = t.to_vector<double>();
  EvalCounts out;
  for (int64_t b = 0; b < batches; ++b) {
    const double sum = r[size_t(3 * b)], n = r[size_t(3 * b + 1)];
    out.loss_sum += n > 0 ? sum / n : 0.0;
    out.batches += 1;
    out.correct += int64_t(r[size_t(3 * b + 2)]);
    out.counted += int64_t(n);
  }
  return out;
}

}  // namespace strata::train
