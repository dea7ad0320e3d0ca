#pragma once
// What the three Task implementations share: they hold either the whole model or, in a
// pipelined run, this rank's stage of it (models/pipeline_stage_*.h), plus the objective and
// the spec they were built from. Internal to train/.
#include <algorithm>
#include <memory>
#include <string_view>

#include "train/task_factories.h"

namespace strata::train {

template <class Model, class Stage, class Objective>
class ModelTask : public Task {
 public:
  models::Module& module() override {
    return stage_ ? static_cast<models::Module&>(*stage_) : *model_;
  }
  std::shared_ptr<const data::Objective> objective() const override { return objective_; }
  void set_step(uint64_t step) override {
    if (stage_)
      stage_->set_step(step);
    else
      model_->set_step(step);
  }
  void set_batch_rows(int64_t first, int64_t stride) override {
    if (stage_)
      stage_->set_batch_rows(first, stride);
    else
      model_->set_batch_rows(first, stride);
  }
  parallel::StageCompute* stage() override { return stage_.get(); }
  void add_stage_hits(EvalCounts& counts) const override {
    if (!stage_ || !stage_->is_last()) return;
    const models::StageHits h = stage_->eval_hits();
    counts.correct += h.correct;
    counts.counted += h.counted;
  }

 protected:
  // Builds the stage of `placement` or the whole model; `build_stage(layout, stage)` and
  // `build_model()` construct them.
  template <class BuildStage, class BuildModel>
  ModelTask(const ObjectiveSpec& spec, std::shared_ptr<Objective> objective,
            const TaskPlacement& placement, int64_t layers, BuildStage&& build_stage,
            BuildModel&& build_model)
      : spec_(spec), objective_(std::move(objective)) {
    if (placement.pipelined())
      stage_ = build_stage(models::StageLayout::balanced(layers, placement.pp_stages),
                           placement.pp_stage);
    else
      model_ = build_model();
  }

  // Device plumbing: the trainer moves the model (Module::to), and the tasks' batch tensors
  // follow it here. This member hides train::batch_ids inside the task classes, so their code
  // reads the same on every device; on the CPU it is train::batch_ids itself. For a GPU the ids
  // are widened straight into a fresh pinned host tensor, whose copy to the device runs
  // asynchronously (the pinned allocator holds the block until the copy has read it).
  Tensor batch_ids(const std::vector<int32_t>& values, int64_t rows, int64_t cols) const {
    const Device d = held_module().device();
    if (d.is_cpu()) return train::batch_ids(values, rows, cols);
    STRATA_CHECK(int64_t(values.size()) == rows * cols, "batch_ids: ", values.size(), " ids for a ",
                 rows, " x ", cols, " batch");
    Tensor host = Tensor::empty_pinned({rows, cols}, DType::i64);
    std::copy(values.begin(), values.end(), host.data<int64_t>());
    return host.to(d);
  }

  // The whole model, for what a pipeline stage cannot do alone (sampling, generation).
  Model& model() const {
    if (!model_) fail_pipelined(kind(), "run the whole model");
    return *model_;
  }

  const models::Module& held_module() const {
    return stage_ ? static_cast<const models::Module&>(*stage_)
                  : static_cast<const models::Module&>(*model_);
  }

  ObjectiveSpec spec_;
  std::shared_ptr<Objective> objective_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Stage> stage_;
};

}  // namespace strata::train
