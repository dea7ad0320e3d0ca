#include "train/step_path.h"

#include "core/ops.h"
#include "optim/clip.h"
#include "parallel/grad_reducer.h"
#include "parallel/pipeline_executor.h"
#include "train/parallel_grad_norm.h"
#include "train/parallel_step.h"

namespace strata::train {

namespace {

// What both paths share: the data-parallel reducer and the global gradient norm.
class StepPathBase : public StepPath {
 public:
  StepPathBase(Task& task, optim::Optimizer& optimizer, const parallel::Topology& topology,
               Device device)
      : task_(task), optimizer_(optimizer), topo_(topology), device_(device) {
    if (topo_.layout().dp > 1)
      reducer_ =
          std::make_unique<parallel::GradReducer>(task.module().named_parameters(), topo_.dp());
  }

  Tensor clip_gradients(double clip) override {
    if (topo_.world_size() == 1) {
      Tensor norm = optim::clip_grad_norm_tensor(optimizer_.params(), clip);
      return norm.device() == device_ ? norm : norm.to(device_);  // no gradients: a host 0
    }
    const double norm = clip_parallel_grad_norm(task_.module(), tied_replicas_, topo_, clip);
    return on_device(norm);
  }

 protected:
  // This rank's share of each micro-batch's loss positions (all 1 without data parallelism).
  std::vector<double> shares(const std::vector<data::Batch>& batches) const {
    return reducer_ ? loss_shares(batches, topo_.dp()) : std::vector<double>(batches.size(), 1.0);
  }
  // The step's loss summed over the data-parallel ranks' weighted shares.
  Tensor reduce_loss(Tensor loss) const {
    if (reducer_) topo_.dp().all_reduce(loss, parallel::ReduceOp::Sum, "dp.loss");
    return loss;
  }
  Tensor on_device(double value) const {
    Tensor t = from_vector<double>({value}, {1});
    return device_.is_cpu() ? t : t.to(device_);
  }

  Task& task_;
  optim::Optimizer& optimizer_;
  const parallel::Topology& topo_;
  Device device_;
  std::unique_ptr<parallel::GradReducer> reducer_;
  std::vector<Tensor> tied_replicas_;  // the last stage's copies of tied parameters
};

class WholeModelStep final : public StepPathBase {
 public:
  using StepPathBase::StepPathBase;

  Tensor forward_backward(const std::vector<data::Batch>& batches) override {
    const std::vector<double> share = shares(batches);
    const auto n = double(batches.size());
    const auto dp = double(topo_.layout().dp);
    Tensor step_loss;
    for (size_t m = 0; m < batches.size(); ++m) {
      // Gradients are reduced over dp once, during the last micro-batch's backward.
      auto no_sync = reducer_ && m + 1 < batches.size() ? reducer_->no_sync()
                                                        : parallel::GradReducer::NoSync();
      Tensor loss = task_.loss(batches[m]);
      const double weight = share[m] / n;  // in the step's mean
      Tensor value = loss.detach().to(DType::f64).reshape({1});
      if (weight != 1.0) value = value * weight;
      step_loss = m == 0 ? value : step_loss + value;
      // The reducer averages over dp; the weight is this rank's share of the sum.
      const double scale = dp * weight;
      (scale != 1.0 ? loss * scale : loss).backward();
    }
    if (reducer_) reducer_->finish();
    return reduce_loss(step_loss);
  }
};

class PipelineStep final : public StepPathBase {
 public:
  PipelineStep(Task& task, optim::Optimizer& optimizer, const parallel::Topology& topology,
               Device device, parallel::ScheduleKind schedule, int64_t micro_batches)
      : StepPathBase(task, optimizer, topology, device),
        executor_(topology.pp(),
                  parallel::PipelineSchedule(schedule, topology.layout().pp, micro_batches)) {
    if (topo_.is_last_stage()) tied_replicas_ = task.stage()->tied_parameters();
  }

  Tensor forward_backward(const std::vector<data::Batch>& batches) override {
    const std::vector<double> share = shares(batches);
    const int dp = topo_.layout().dp;
    task_.set_stage_batches(batches);
    std::vector<double> scale;
    for (double s : share) scale.push_back(double(dp) * s);
    ScaledLossStage stage(*task_.stage(), scale, topo_.is_last_stage());
    if (reducer_) reducer_->set_sync(false);  // reduce once, after the whole schedule
    const double mean = executor_.run(dp > 1 ? stage : *task_.stage()).loss;
    if (reducer_) {
      reducer_->set_sync(true);
      reducer_->finish();
      resync_tied_gradients(*task_.stage(), topo_.pp());
    }
    return reduce_loss(on_device(mean / double(dp)));
  }

 private:
  parallel::PipelineExecutor executor_;
};

}  // namespace

std::unique_ptr<StepPath> make_step_path(Task& task, optim::Optimizer& optimizer,
                                         const parallel::Topology& topology, Device device,
                                         parallel::ScheduleKind schedule, int64_t micro_batches) {
  if (task.stage())
    return std::make_unique<PipelineStep>(task, optimizer, topology, device, schedule,
                                          micro_batches);
  return std::make_unique<WholeModelStep>(task, optimizer, topology, device);
}

}  // namespace strata::train
