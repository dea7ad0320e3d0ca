// Budgets in every unit (steps, tokens, FLOPs, reference seconds): a run stops at the first step
// whose charged cost reaches the budget, with the schedule at its end value; forward-only work of
// a method is charged to FLOP and reference-time budgets and not to a token budget; and the
// reference-cost tables of `strata calibrate` round-trip and refuse what they cannot use.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "tests/train/tiny_corpus.h"
#include "train/budget_costs.h"
#include "train/calibrate.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace strata::train {
namespace {

namespace fs = std::filesystem;

const fixtures::TinyCorpus& tiny() {
  static const fixtures::TinyCorpus corpus("budget_test");
  return corpus;
}

// 4 rows of 32 tokens per step.
constexpr int64_t kTokensPerStep = 4 * 32;

TrainOptions budget_run(const std::string& run, optim::ClockKind unit, double amount) {
  TrainOptions o = tiny().decoder_options(run);
  o.budget_unit = unit;
  o.budget = amount;
  o.warmup_steps = 2;
  o.eval_every = 0;
  o.save_every = 0;
  o.sample_tokens = 0;
  return o;
}

CheckpointState final_state(const TrainOptions& o, int64_t step) {
  return load_checkpoint(fs::path(o.run_dir) / checkpoint_dir_name(step));
}

// The model's description, as a cost table must name it.
std::string model_description(const TrainOptions& o) {
  const auto tok = data::load_tokenizer(o.tokenizer);
  return make_task(o.model, o.objective, *tok, o.seed)->describe();
}

TEST(Budget, EveryUnitStopsWhereTheChargedCostReachesTheBudget) {
  std::ostringstream log;
  {  // steps
    const TrainResult r = train(budget_run("b_steps", optim::ClockKind::steps, 7), log);
    EXPECT_EQ(r.step, 7);
    EXPECT_EQ(r.final_lr, 2e-5);  // the schedule's end value
  }
  {  // tokens: 5.5 steps' worth ends after the 6th
    const TrainOptions o =
        budget_run("b_tokens", optim::ClockKind::tokens, 5.5 * double(kTokensPerStep));
    const TrainResult r = train(o, log);
    EXPECT_EQ(r.step, 6);
    EXPECT_EQ(r.final_lr, 2e-5);
    EXPECT_EQ(final_state(o, 6).ints.at("tokens_consumed"), 6 * kTokensPerStep);
  }
  {  // FLOPs: the task's training FLOPs per token times the tokens trained
    TrainOptions o = budget_run("b_flops", optim::ClockKind::flops, 1);
    const auto tok = data::load_tokenizer(o.tokenizer);
    const auto task = make_task(o.model, o.objective, *tok, o.seed);
    const double per_step =
        task->flops_per_row() / double(task->tokens_per_row()) * double(kTokensPerStep);
    o.budget = 7.5 * per_step;
    const TrainResult r = train(o, log);
    EXPECT_EQ(r.step, 8);
    EXPECT_EQ(r.final_lr, 2e-5);
    EXPECT_NEAR(final_state(o, 8).doubles.at("clock_flops"), 8 * per_step, 1e-9 * per_step);
  }
  {  // reference seconds, from a table
    TrainOptions o = budget_run("b_rst", optim::ClockKind::reference_seconds, 1);
    const ReferenceCosts costs(model_description(o), {{2, {1e-4, 2e-4, 0.01}}});
    o.rst_table = (tiny().root() / "rst.table").string();
    costs.save(o.rst_table, "test table");
    const double per_step = double(kTokensPerStep) * (1e-4 + 2e-4) + 0.01;
    o.budget = 4.2 * per_step;
    const TrainResult r = train(o, log);
    EXPECT_EQ(r.step, 5);
    EXPECT_EQ(r.final_lr, 2e-5);
    EXPECT_NEAR(final_state(o, 5).doubles.at("clock_reference_seconds"), 5 * per_step, 1e-12);
  }
}

// Scores every micro-batch with a forward pass it charges, as selective backprop would.
class ForwardScorer final : public TrainingMethod {
 public:
  std::string_view name() const override { return "scorer"; }
  void on_clock(StepContext&, StepCharge& c) override { c.forward_tokens += 2 * c.trained_tokens; }
};

TEST(Budget, ForwardOnlyWorkIsChargedToFlopAndReferenceBudgetsOnly) {
  std::ostringstream log;
  auto scorer = [] {
    std::vector<std::unique_ptr<TrainingMethod>> m;
    m.push_back(std::make_unique<ForwardScorer>());
    return m;
  };
  // A token budget counts trained tokens: the scoring costs nothing there.
  const TrainResult tokens =
      train(budget_run("s_tokens", optim::ClockKind::tokens, 6.0 * kTokensPerStep), log, scorer());
  EXPECT_EQ(tokens.step, 6);
  // Reference seconds: a step costs 3 forwards + 1 backward + 1 update instead of 1 + 1 + 1.
  TrainOptions o = budget_run("s_rst", optim::ClockKind::reference_seconds, 1);
  o.rst_table = (tiny().root() / "rst_scorer.table").string();
  ReferenceCosts(model_description(o), {{2, {1e-4, 1e-4, 0.0}}}).save(o.rst_table, "");
  const double plain = double(kTokensPerStep) * 2e-4, scored = double(kTokensPerStep) * 4e-4;
  o.budget = 6 * plain;
  EXPECT_EQ(train(o, log, scorer()).step, int64_t(std::ceil(6 * plain / scored)));
  o.run_dir += "_plain";
  EXPECT_EQ(train(o, log).step, 6);
}

TEST(Budget, ReferenceTablesRoundTripAndRefuseWhatTheyCannotUse) {
  const fs::path dir = tiny().root() / "tables";
  fs::create_directories(dir);
  const ReferenceCosts costs("my model", {{1, {1e-6, 2e-6, 0.5}}, {3, {3e-6, 6e-6, 0.75}}});
  costs.save((dir / "t").string(), "two rows");
  const ReferenceCosts back = ReferenceCosts::load((dir / "t").string());
  EXPECT_EQ(back.model(), "my model");
  EXPECT_EQ(back.at(0).backward_per_token, 6e-6);  // 0: the deepest row
  EXPECT_EQ(back.at(1).per_update, 0.5);
  EXPECT_THROW(back.at(2), Error);  // a depth it was not measured at

  auto expect_error = [](const std::function<void()>& fn, const std::string& needle) {
    try {
      fn();
      ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error([&] { ReferenceCosts::load((dir / "missing").string()); }, "strata calibrate");
  std::ofstream((dir / "bad")) << "model m\n1 0.1 nope 3\n";
  expect_error([&] { ReferenceCosts::load((dir / "bad").string()); }, "line 2");
  std::ofstream((dir / "nomodel")) << "1 0.1 0.2 3\n";
  expect_error([&] { ReferenceCosts::load((dir / "nomodel").string()); }, "no 'model' line");
  expect_error([] { ReferenceCosts("m", {{1, {0.0, 1.0, 0.0}}}); }, "must cost > 0");

  // A run whose model is not the table's, or without a table, says what to do.
  std::ostringstream log;
  TrainOptions o = budget_run("b_wrong", optim::ClockKind::reference_seconds, 1);
  expect_error([&] { train(o, log); }, "needs budget.rst_table");
  o.rst_table = (dir / "t").string();
  expect_error([&] { train(o, log); }, "was measured for 'my model'");
}

TEST(Budget, CalibrateMeasuresATableTheRunAccepts) {
  TrainOptions o = budget_run("calibrated", optim::ClockKind::reference_seconds, 1);
  const auto tok = data::load_tokenizer(o.tokenizer);
  CalibrateOptions c;
  c.reps = 1;
  c.all_depths = true;
  std::ostringstream log;
  const ReferenceCosts costs = calibrate(o, *tok, c, log);
  ASSERT_EQ(costs.rows().size(), 2u) << log.str();  // 1 and 2 layers
  for (const auto& [layers, w] : costs.rows()) {
    EXPECT_GT(w.forward_per_token, 0) << layers;
    EXPECT_GE(w.backward_per_token, w.forward_per_token) << layers;
    EXPECT_GT(w.per_update, 0) << layers;
  }
  o.rst_table = (tiny().root() / "calibrated.table").string();
  costs.save(o.rst_table, "calibrated in a test");
  o.budget = 3.5 * reference_seconds({kTokensPerStep, kTokensPerStep, kTokensPerStep, 1, 0}, costs);
  EXPECT_EQ(train(o, log).step, 4) << log.str();
}

}  // namespace
}  // namespace strata::train
