#pragma once
// What the three Task implementations share: they hold either the whole model or, in a
// pipelined run, this rank's stage of it (models/pipeline_stage_*.h), plus the objective and
// the spec they were built from. Internal to train/.
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

  // The whole model, for what a pipeline stage cannot do alone (sampling, generation).
  Model& model() const {
    if (!model_) fail_pipelined(kind(), "run the whole model");
    return *model_;
  }

  ObjectiveSpec spec_;
  std::shared_ptr<Objective> objective_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Stage> stage_;
};

}  // namespace strata::train
