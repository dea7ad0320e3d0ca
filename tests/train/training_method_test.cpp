// Training methods at the Trainer's hook points (train/training_method.h): the points run in their
// documented order with what each promises to show, a method's row selection is what the step
// trains and charges, its state resumes bit for bit, and the example of docs/architecture.md
// ("A new training method") works as written there.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>

#include "core/ops.h"
#include "tests/train/tiny_corpus.h"
#include "train/checkpoint.h"
#include "train/checkpoint_compare.h"
#include "train/trainer.h"
#include "train/training_method.h"

namespace strata::train {
namespace {

namespace fs = std::filesystem;

const fixtures::TinyCorpus& tiny() {
  static const fixtures::TinyCorpus corpus("training_method_test");
  return corpus;
}

TrainOptions short_run(const std::string& run, int64_t steps) {
  TrainOptions o = tiny().decoder_options(run);
  o.budget = double(steps);
  o.warmup_steps = std::min<int64_t>(o.warmup_steps, steps - 1);
  o.sample_tokens = 0;
  return o;
}

// --- The docs/architecture.md example, verbatim. ------------------------------------------------

// Sequence-length warmup (Li et al. 2022, "The Stability-Efficiency Dilemma"): early steps train
// on a prefix of every row, growing linearly from `start` tokens to the full row over the first
// `fraction` of the budget. A prefix of a causal row is a causal row, so it suits the decoder.
class SeqLenWarmup final : public TrainingMethod {
 public:
  SeqLenWarmup(int64_t start, double fraction) : start_(start), fraction_(fraction) {}
  std::string_view name() const override { return "seq_len_warmup"; }

  void on_batch(StepContext& step, std::vector<data::Batch>& micro_batches) override {
    const double t = std::min(1.0, step.budget_fraction / fraction_);
    for (data::Batch& b : micro_batches) {
      STRATA_CHECK(b.decoder_inputs.empty() && b.input_len == b.target_len,
                   "seq_len_warmup: causal LM batches only (model.type = decoder)");
      const int64_t len = start_ + int64_t(t * double(b.input_len - start_));
      if (len < b.input_len) b = prefix(b, len);
    }
  }

 private:
  static data::Batch prefix(const data::Batch& b, int64_t len) {
    data::Batch p = b;
    p.input_len = p.target_len = len;
    p.inputs.clear();
    p.targets.clear();
    for (int64_t r = 0; r < b.rows; ++r) {
      p.inputs.insert(p.inputs.end(), b.input_row(r).begin(), b.input_row(r).begin() + len);
      p.targets.insert(p.targets.end(), b.target_row(r).begin(), b.target_row(r).begin() + len);
    }
    return p;
  }

  int64_t start_;
  double fraction_;
};

// --- Methods that probe the Trainer. -----------------------------------------------------------

// What Recorder saw; owned by the test (the Trainer owns, and destroys, its methods).
struct Record {
  std::vector<std::string> events;
  std::vector<double> fractions, grad_l1;
  std::vector<int64_t> rows, charged;
};

// Records every hook call and what the step shows there.
class Recorder final : public TrainingMethod {
 public:
  explicit Recorder(Record& r) : r_(r) {}
  std::string_view name() const override { return "recorder"; }
  void before_step(StepContext& s) override {
    r_.events.push_back("before_step " + std::to_string(s.step));
    r_.fractions.push_back(s.budget_fraction);
  }
  void on_batch(StepContext& s, std::vector<data::Batch>& b) override {
    r_.events.push_back("on_batch " + std::to_string(s.step) + " x" + std::to_string(b.size()));
    for (const auto& x : b) r_.rows.push_back(x.rows);
  }
  void after_backward(StepContext& s) override {
    r_.events.push_back("after_backward " + std::to_string(s.step));
    double g = 0;  // the accumulated gradient is there, before the optimizer consumes it
    for (const Tensor& p : s.optimizer->params())
      if (p.grad().defined()) g += sum(abs(p.grad().to(DType::f64))).item<double>();
    r_.grad_l1.push_back(g);
  }
  void on_clock(StepContext& s, StepCharge& c) override {
    r_.events.push_back("on_clock " + std::to_string(s.step));
    r_.charged.push_back(c.trained_tokens);
  }

 private:
  Record& r_;
};

TEST(TrainingMethod, HookPointsRunInOrderAndSeeTheStep) {
  TrainOptions o = short_run("hooks", 3);
  o.grad_accum = 2;
  Record rec;
  std::vector<std::unique_ptr<TrainingMethod>> methods;
  methods.push_back(std::make_unique<Recorder>(rec));
  std::ostringstream log;
  const TrainResult r = train(o, log, std::move(methods));
  ASSERT_EQ(r.step, 3);
  std::vector<std::string> want;
  for (int s = 0; s < 3; ++s)
    for (const char* e : {"before_step ", "on_batch ", "after_backward ", "on_clock "})
      want.push_back(e + std::to_string(s) + (std::string(e) == "on_batch " ? " x2" : ""));
  EXPECT_EQ(rec.events, want);
  EXPECT_EQ(rec.fractions, (std::vector<double>{0.0, 1.0 / 3, 2.0 / 3}));
  EXPECT_EQ(rec.rows, std::vector<int64_t>(6, o.micro_batch));
  for (double g : rec.grad_l1) EXPECT_GT(g, 0);
  EXPECT_EQ(rec.charged, std::vector<int64_t>(3, 2 * o.micro_batch * o.objective.seq_len));
  EXPECT_NE(log.str().find("training method: recorder"), std::string::npos) << log.str();
}

// Drops every k-th row the run has seen, counting across steps: its decisions depend on its
// state, so a resume that lost the count would train on other rows.
class SkipEveryKth final : public TrainingMethod {
 public:
  SkipEveryKth(int64_t k, bool restore) : k_(k), restore_(restore) {}
  std::string_view name() const override { return "skip"; }
  void on_batch(StepContext&, std::vector<data::Batch>& micro_batches) override {
    for (data::Batch& b : micro_batches) {
      std::vector<int64_t> keep;
      for (int64_t r = 0; r < b.rows; ++r)
        if (++seen_ % k_ != 0) keep.push_back(r);
      b = select_rows(b, keep);
    }
  }
  void save_state(CheckpointState& s) const override { s.ints[key("seen")] = seen_; }
  void load_state(const CheckpointState& s) override {
    if (restore_) seen_ = s.ints.at(key("seen"));
  }

 private:
  int64_t k_, seen_ = 0;
  bool restore_;
};

std::vector<std::unique_ptr<TrainingMethod>> skipper(bool restore = true) {
  std::vector<std::unique_ptr<TrainingMethod>> m;
  m.push_back(std::make_unique<SkipEveryKth>(3, restore));
  return m;
}

TEST(TrainingMethod, SelectedRowsAreWhatTheStepTrainsAndCharges) {
  std::ostringstream log;
  const TrainResult plain = train(short_run("plain", 6), log);
  const TrainResult skipped = train(short_run("skipped", 6), log, skipper());
  // 4 rows a step, every third dropped: 8 of the first 12 rows, 16 of 24 in 6 steps.
  const CheckpointState s = load_checkpoint(tiny().root() / "skipped" / "step_000000006");
  EXPECT_EQ(s.ints.at("tokens_consumed"), 16 * 32);
  EXPECT_EQ(s.ints.at("method.skip.seen"), 24);
  EXPECT_EQ(load_checkpoint(tiny().root() / "plain" / "step_000000006").ints.at("tokens_consumed"),
            24 * 32);
  EXPECT_NE(plain.losses[0], skipped.losses[0]);  // step 1 trained on 3 of its 4 rows
}

TEST(TrainingMethod, MethodStateResumesBitForBit) {
  std::ostringstream log;
  train(short_run("m_straight", 10), log, skipper());
  TrainOptions first = short_run("m_resumed", 10);
  first.stop_after = 5;
  train(first, log, skipper());
  const TrainResult b = train(short_run("m_resumed", 10), log, skipper());
  ASSERT_EQ(b.resumed_from, 5) << log.str();
  const fs::path straight = tiny().root() / "m_straight" / "step_000000010";
  const CheckpointComparison resumed =
      compare_checkpoints(straight, tiny().root() / "m_resumed" / "step_000000010");
  EXPECT_TRUE(resumed.identical) << resumed.report;

  // The control: a resume that drops the method's state trains on other rows.
  first = short_run("m_lost", 10);
  first.stop_after = 5;
  train(first, log, skipper());
  train(short_run("m_lost", 10), log, skipper(/*restore=*/false));
  EXPECT_FALSE(
      compare_checkpoints(straight, tiny().root() / "m_lost" / "step_000000010").identical);
}

TEST(TrainingMethod, SeqLenWarmupExampleTrainsOnGrowingPrefixes) {
  std::ostringstream log;
  std::vector<std::unique_ptr<TrainingMethod>> m;
  m.push_back(std::make_unique<SeqLenWarmup>(8, 0.5));
  TrainOptions o = short_run("warmup", 20);
  const TrainResult r = train(o, log, std::move(m));
  ASSERT_EQ(r.step, 20);
  // Step s (0-based) trains 8 + floor(min(1, (s/20)/0.5) * 24) tokens of each of its 4 rows.
  int64_t tokens = 0;
  for (int s = 0; s < 20; ++s)
    tokens += 4 * (8 + int64_t(std::min(1.0, (double(s) / 20) / 0.5) * 24.0));
  const CheckpointState c = load_checkpoint(fs::path(o.run_dir) / "step_000000020");
  EXPECT_EQ(c.ints.at("tokens_consumed"), tokens);
  double first = 0, last = 0;
  for (int i = 0; i < 3; ++i) first += r.losses[size_t(i)] / 3;
  for (int i = 17; i < 20; ++i) last += r.losses[size_t(i)] / 3;
  EXPECT_LT(last, first - 0.5) << log.str();

  // An encoder-decoder batch cannot be cut to a prefix: the method says so.
  data::Batch t5;
  t5.resize(2, 16, 4, /*decoder=*/true);
  std::vector<data::Batch> batches{t5};
  StepContext step;
  try {
    SeqLenWarmup(8, 0.5).on_batch(step, batches);
    FAIL() << "truncated an encoder-decoder batch";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("causal LM batches only"), std::string::npos);
  }
}

}  // namespace
}  // namespace strata::train
