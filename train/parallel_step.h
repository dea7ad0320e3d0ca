#pragma once
// The pieces of a training step that only a parallel job needs, internal to train/trainer.cpp.
//
// Loss normalisation. One process divides each micro-batch's loss by its count of loss positions
// (targets that are not -100). Under data parallelism a rank holds some rows of that micro-batch,
// and BERT's masked positions (T5's target padding) differ per row, so each rank's mean is scaled
// by its share c_r / N of the micro-batch's N positions: the shares' sum over the group is the
// single-process mean. The gradient reducer averages over dp, so the backward runs on
// dp * share * mean.
#include <cstdint>
#include <vector>

#include "data/loader.h"
#include "optim/adamw.h"
#include "parallel/communicator.h"
#include "parallel/pipeline_stage_compute.h"
#include "parallel/topology.h"
#include "train/task.h"

namespace strata::train {

// c_r / N for each micro-batch of a step (one all-reduce over `dp`). A micro-batch without any
// loss position anywhere gets 0 (its loss is an exact 0 then).
std::vector<double> loss_shares(const std::vector<data::Batch>& batches,
                                parallel::Communicator& dp);

// A pipeline stage whose last-stage loss of micro-batch i is multiplied by scale[i] (the data
// parallel normalisation above); every other call is the wrapped stage's.
class ScaledLossStage final : public parallel::StageCompute {
 public:
  ScaledLossStage(parallel::StageCompute& stage, std::vector<double> scale, bool last)
      : stage_(stage), scale_(std::move(scale)), last_(last) {}
  std::vector<parallel::TensorSpec> input_specs(int64_t micro) const override {
    return stage_.input_specs(micro);
  }
  std::vector<parallel::TensorSpec> output_specs(int64_t micro) const override {
    return stage_.output_specs(micro);
  }
  std::vector<Tensor> forward(int64_t micro, const std::vector<Tensor>& inputs) override;
  std::vector<Tensor> tied_parameters() const override { return stage_.tied_parameters(); }

 private:
  parallel::StageCompute& stage_;
  std::vector<double> scale_;
  bool last_;
};

// After the data-parallel reduction, the last stage takes the first stage's gradients of the tied
// parameters, so the two replicas stay bitwise equal whatever order the two dp groups summed in.
void resync_tied_gradients(parallel::StageCompute& stage, parallel::Communicator& pp);

// Validation loss and accuracy over the first `batches` validation batches of a parallel job,
// equal to the one-process evaluation: each dp rank evaluates its rows, the per-batch sums are
// added over dp, and under pipeline parallelism the stages run forward only and the last stage's
// loss and hits are shared.
EvalCounts evaluate_parallel(Task& task, const data::SampleSource& samples,
                             const data::Permutation& order, const data::LoaderOptions& lo,
                             int64_t batches, const parallel::Topology& topology);

// The whole tensor's RMS of parameter `name` from this rank's shard: the shard's sum of squares
// is added over the tp group (one small all-reduce per split parameter; every rank of the group
// must call it for the same parameters in the same order). A replicated parameter's own RMS.
double sharded_rms(const models::Module& model, parallel::Communicator& tp, const std::string& name,
                   const Tensor& param);

// An optimizer whose RMS factor (Optimizer::param_rms) is the whole tensor's under tensor
// parallelism: the RMS-scaled Lion and Sophia-G.
template <class Base>
class TpRms final : public Base {
 public:
  template <class... Args>
  TpRms(const models::Module& model, parallel::Communicator& tp, Args&&... args)
      : Base(std::forward<Args>(args)...), model_(model), tp_(tp) {}

 protected:
  double param_rms(const std::string& name, const Tensor& param) override {
    return sharded_rms(model_, tp_, name, param);
  }

 private:
  const models::Module& model_;
  parallel::Communicator& tp_;
};

// AdamWScale whose per-tensor RMS is the whole tensor's (sharded_rms).
class ShardedAdamWScale final : public optim::AdamWScale {
 public:
  ShardedAdamWScale(std::vector<optim::ParamGroup> groups, const models::Module& model,
                    parallel::Communicator& tp)
      : AdamWScale(std::move(groups)), model_(model), tp_(tp) {}

 protected:
  double param_rms(const std::string& name, const Tensor& param) override;

 private:
  const models::Module& model_;
  parallel::Communicator& tp_;
};

}  // namespace strata::train
