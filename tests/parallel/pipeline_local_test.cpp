// The pipeline executor and the models' stages in one process: each stage is a thread and the
// pp group an in-process thread group (thread_group.h), so schedules, message order, gradient
// routing and parity with the whole model are tested without mpirun. The same parity cases run
// over MPI in pipeline_mpitest.cpp.
#include <gtest/gtest.h>

#include <mutex>
#include <string>

#include "core/ops.h"
#include "tests/parallel/pipeline_cases.h"
#include "tests/parallel/thread_group.h"

namespace strata::parallel::testing {
namespace {

template <class F>
std::string error_of(F&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Stage s multiplies its input by a scalar weight w_s; the first stage's input is micro-batch
// i's data d_i, the last stage's loss is sum(y^2). So with W = prod_s w_s,
//   loss_i = W^2 |d_i|^2,   d(mean_i loss_i)/dw_s = 2 W^2 mean_i |d_i|^2 / w_s.
class ScaleStage : public StageCompute {
 public:
  ScaleStage(int stage, int stages, double w, std::vector<Tensor> data)
      : stage_(stage), stages_(stages), data_(std::move(data)) {
    w_ = full({1}, w, DType::f64);
    w_.set_requires_grad(true);
  }
  std::vector<TensorSpec> input_specs(int64_t) const override {
    if (stage_ == 0) return {};
    return {{{3}, DType::f64}};
  }
  std::vector<TensorSpec> output_specs(int64_t) const override {
    if (stage_ == stages_ - 1) return {};
    return {{{3}, DType::f64}};
  }
  std::vector<Tensor> forward(int64_t micro, const std::vector<Tensor>& in) override {
    order.push_back(micro);
    const Tensor x = stage_ == 0 ? data_[size_t(micro)] : in.at(0);
    const Tensor y = x * w_;
    if (stage_ == stages_ - 1) return {sum(y * y)};
    return {y};
  }
  const Tensor& weight() const { return w_; }
  std::vector<int64_t> order;  // micro-batches in the order forward saw them

 private:
  int stage_, stages_;
  std::vector<Tensor> data_;
  Tensor w_;
};

TEST(PipelineExecutor, RoutesGradientsThroughEveryStage) {
  for (int p : {1, 2, 3, 4})
    for (ScheduleKind kind : {ScheduleKind::GPipe, ScheduleKind::OneFOneB}) {
      const int64_t m = 5;
      std::vector<Tensor> data;
      double mean_sq = 0;
      for (int64_t i = 0; i < m; ++i) {
        const std::vector<double> d{1.0 + double(i), -0.5 * double(i), 0.25};
        for (double v : d) mean_sq += v * v / double(m);
        data.push_back(from_vector<double>(d, {3}));
      }
      std::vector<double> w;
      double W = 1;
      for (int s = 0; s < p; ++s) W *= w.emplace_back(0.5 + 0.25 * s);
      const PipelineSchedule schedule(kind, p, m);
      ThreadGroup hub(p, "pp");
      hub.run([&](int s) {
        ScaleStage stage(s, p, w[size_t(s)], data);
        PipelineExecutor exec(hub.comm(s), schedule);
        const PipelineStepResult r = exec.run(stage);
        EXPECT_NEAR(r.loss, W * W * mean_sq, 1e-12) << schedule.str() << " stage " << s;
        EXPECT_NEAR(stage.weight().grad().item<double>(), 2 * W * W * mean_sq / w[size_t(s)], 1e-12)
            << schedule.str() << " stage " << s;
        std::vector<int64_t> want;
        for (const Action& a : schedule.actions(s))
          if (a.phase == Phase::Forward) want.push_back(a.micro);
        EXPECT_EQ(stage.order, want);
        EXPECT_GT(r.stats.busy_s(), 0);
        EXPECT_GE(r.stats.wall_s, r.stats.busy_s() + r.stats.wait_s);
      });
    }
}

TEST(PipelineExecutor, GroupSizeMustMatchTheSchedule) {
  ThreadGroup hub(2, "pp");
  const std::string e =
      error_of([&] { PipelineExecutor(hub.comm(0), PipelineSchedule(ScheduleKind::GPipe, 3, 4)); });
  EXPECT_NE(e.find("the pp group has 2 ranks but the schedule (gpipe, 3 stages x 4 "
                   "micro-batches) has 3 stages"),
            std::string::npos)
      << e;
}

TEST(PipelineExecutor, OutputsMustMatchTheirDeclaredSpecs) {
  class Liar : public StageCompute {
   public:
    explicit Liar(int s) : s_(s) {}
    std::vector<TensorSpec> input_specs(int64_t) const override {
      return s_ == 0 ? std::vector<TensorSpec>{} : std::vector<TensorSpec>{{{2}, DType::f32}};
    }
    std::vector<TensorSpec> output_specs(int64_t) const override {
      return s_ == 1 ? std::vector<TensorSpec>{} : std::vector<TensorSpec>{{{2}, DType::f32}};
    }
    std::vector<Tensor> forward(int64_t, const std::vector<Tensor>&) override {
      return {zeros({3}, DType::f32)};
    }

   private:
    int s_;
  };
  ThreadGroup hub(2, "pp");
  Liar stage(0);
  PipelineExecutor exec(hub.comm(0), PipelineSchedule(ScheduleKind::GPipe, 2, 1));
  const std::string e = error_of([&] { exec.run(stage); });
  EXPECT_NE(e.find("stage 0 output 0 of micro-batch 0 is [3] f32 but declared [2] f32"),
            std::string::npos)
      << e;
}

// ---------------------------------------------------------------------------------------------
// Stage layouts

TEST(StageLayout, BalancedGivesTheFirstStagesTheRemainder) {
  EXPECT_EQ(models::StageLayout::balanced(4, 2).str(), "[2, 2]");
  EXPECT_EQ(models::StageLayout::balanced(5, 3).str(), "[2, 2, 1]");
  const auto l = models::StageLayout::balanced(7, 4);
  EXPECT_EQ(l.str(), "[2, 2, 2, 1]");
  EXPECT_EQ(l.begin(2), 4);
  EXPECT_EQ(l.end(3), 7);
}

TEST(StageLayout, MoreStagesThanBlocksIsAnError) {
  const std::string e = error_of([] { models::StageLayout::balanced(2, 3); });
  EXPECT_NE(e.find("3 stages but the model has only 2 blocks; every stage needs at least one "
                   "block (use at most 2 pipeline stages)"),
            std::string::npos)
      << e;
  models::DecoderConfig cfg = models::testing::tiny_config();
  const std::string e2 = error_of(
      [&] { models::DecoderStage(cfg, 1, models::StageLayout::balanced(cfg.n_layers, 4), 0); });
  EXPECT_NE(e2.find("4 stages but the model has only 2 blocks"), std::string::npos) << e2;
}

TEST(StageLayout, AStageWithNoBlocksIsAnError) {
  const std::string e = error_of([] { models::StageLayout::from_counts({2, 0, 1}, 3); });
  EXPECT_NE(e.find("the layout [2, 0, 1] gives stage 1 no blocks"), std::string::npos) << e;
  const std::string e2 = error_of([] { models::StageLayout::from_counts({2, 2}, 3); });
  EXPECT_NE(e2.find("the layout [2, 2] covers 4 blocks but the model has 3"), std::string::npos)
      << e2;
  models::DecoderConfig cfg = models::testing::tiny_config();
  const std::string e3 = error_of([&] {
    models::DecoderStage(cfg, 1, models::StageLayout::from_counts({1, 1, 1}, 3), 0);
  });
  EXPECT_NE(e3.find("covers 3 blocks but the model has n_layers 2"), std::string::npos) << e3;
}

// ---------------------------------------------------------------------------------------------
// Decoder LM

models::DecoderConfig decoder_config(int64_t layers, bool tied = false) {
  models::DecoderConfig c = models::testing::tiny_config(tied);
  c.n_layers = layers;
  return c;
}

TEST(DecoderStage, OwnsExactlyItsPartOfTheWholeModelsNames) {
  const auto cfg = decoder_config(3);
  const auto layout = models::StageLayout::balanced(3, 2);  // [2, 1]
  models::DecoderLM whole(cfg, 5);
  std::vector<std::string> all;
  for (int s = 0; s < 2; ++s) {
    models::DecoderStage stage(cfg, 5, layout, s);
    for (const auto& [name, t] : stage.named_parameters()) {
      all.push_back(name);
      EXPECT_TRUE(models::testing::bitwise_equal(t, whole.parameter(name))) << name;
    }
  }
  std::vector<std::string> want;
  for (const auto& [name, t] : whole.named_parameters()) want.push_back(name);
  EXPECT_EQ(all, want);  // same names, same order, each on exactly one stage
  EXPECT_TRUE(models::DecoderStage(cfg, 5, layout, 0).has_parameter("layers.1.ffn.up_proj.weight"));
  EXPECT_TRUE(models::DecoderStage(cfg, 5, layout, 1).has_parameter("layers.2.attn_norm.weight"));
}

void decoder_parity(int p, const models::DecoderConfig& cfg, CaseOptions o) {
  ThreadGroup hub(p, "pp");
  hub.run([&](int rank) { check_decoder(hub.comm(rank), cfg, o); });
}

CaseOptions opts(ScheduleKind kind, int steps = 3, DType dtype = DType::f32) {
  CaseOptions o;
  o.kind = kind;
  o.steps = steps;
  o.dtype = dtype;
  return o;
}

TEST(DecoderPipeline, TwoStagesGPipeAndOneFOneBMatchTheWholeModelF32) {
  for (ScheduleKind k : {ScheduleKind::GPipe, ScheduleKind::OneFOneB})
    decoder_parity(2, decoder_config(2), opts(k));
}

TEST(DecoderPipeline, TwoStagesMatchTheWholeModelF64) {
  for (ScheduleKind k : {ScheduleKind::GPipe, ScheduleKind::OneFOneB})
    decoder_parity(2, decoder_config(2), opts(k, 3, DType::f64));
}

TEST(DecoderPipeline, FourStagesAndAnUnevenLayout) {
  decoder_parity(4, decoder_config(4), opts(ScheduleKind::OneFOneB, 2));
  decoder_parity(3, decoder_config(4), opts(ScheduleKind::GPipe, 2));  // [2, 1, 1]
  CaseOptions o = opts(ScheduleKind::OneFOneB, 2);
  o.layout = models::StageLayout::from_counts({3, 1}, 4);
  decoder_parity(2, decoder_config(4), o);
}

TEST(DecoderPipeline, TiedEmbeddingsSumTheReplicasGradients) {
  for (ScheduleKind k : {ScheduleKind::GPipe, ScheduleKind::OneFOneB})
    decoder_parity(2, decoder_config(2, true), opts(k));
  decoder_parity(3, decoder_config(3, true), opts(ScheduleKind::OneFOneB, 2));
}

TEST(DecoderPipeline, DropoutMasksMatchTheWholeModel) {
  auto cfg = decoder_config(2);
  cfg.dropout = 0.2;
  decoder_parity(2, cfg, opts(ScheduleKind::OneFOneB, 2));
}

TEST(DecoderPipeline, OneMicroBatchAndOneStage) {
  CaseOptions o = opts(ScheduleKind::OneFOneB);
  o.micro_batches = 1;
  decoder_parity(2, decoder_config(2), o);
  decoder_parity(1, decoder_config(2), opts(ScheduleKind::GPipe, 1));
}

// Gradient accumulation over equal micro-batches (the parity reference above) equals one pass
// over the whole global batch, so the pipeline matches the single-process global-batch run.
TEST(DecoderPipeline, AccumulatedMicroBatchesEqualTheGlobalBatch) {
  for (DType dtype : {DType::f32, DType::f64}) {
    const auto cfg = decoder_config(2);
    // The whole-batch run again in f64: the yardstick of its own f32 rounding (pipeline_parity.h).
    models::DecoderLM acc(cfg, 3), whole(cfg, 3), whole64(cfg, 3);
    acc.to(dtype);
    whole.to(dtype);
    whole64.to(DType::f64);
    const int64_t m = 4;
    const Tensor ids = random_ids(8, 8, cfg.vocab, 1), targets = random_ids(8, 8, cfg.vocab, 2);
    double acc_loss = 0;
    for (int64_t i = 0; i < m; ++i) {
      const Tensor l = acc.loss(rows_of(ids, i, m), rows_of(targets, i, m));
      acc_loss += l.item<double>() / double(m);
      (l * (1.0 / double(m))).backward();
    }
    const Tensor l = whole.loss(ids, targets);
    l.backward();
    whole64.loss(ids, targets).backward();
    const double tol = parity_tolerance(dtype);
    EXPECT_LT(std::abs(acc_loss - l.item<double>()) / l.item<double>(), tol);
    const Worst w = worst_error(acc, whole, true, tol, dtype == DType::f64 ? nullptr : &whole64);
    EXPECT_LT(w.excess, 1.0) << w.name << ": rel err " << w.err << ", own f32 error " << w.own;
  }
}

// The parity check itself: its condition-aware f32 tolerance still fails a pipeline that loses a
// micro-batch or counts one twice (here the reference does, which is the same disagreement), on
// every stage, for each model, in f32 and f64.
void expect_fault_caught(const std::string& model, Fault fault, DType dtype) {
  const int p = 2;
  std::vector<std::vector<std::string>> failures(p);
  ThreadGroup hub(p, "pp");
  hub.run([&](int rank) {
    CaseOptions o = opts(ScheduleKind::OneFOneB, 1, dtype);
    o.fault = fault;
    o.failures = &failures[size_t(rank)];
    if (model == "decoder") check_decoder(hub.comm(rank), decoder_config(2), o);
    if (model == "bert") check_bert(hub.comm(rank), bert_config(2), o);
    if (model == "t5") check_t5(hub.comm(rank), t5_config(2, 2), o);
  });
  for (int rank = 0; rank < p; ++rank) {
    bool tolerance_failed = false;
    for (const std::string& f : failures[size_t(rank)])
      tolerance_failed |= f.find("against an allowed") != std::string::npos;
    EXPECT_TRUE(tolerance_failed) << model << " " << dtype_name(dtype) << " stage " << rank
                                  << ": the gradient tolerance let a "
                                  << (fault == Fault::DropMicroBatch ? "dropped" : "doubled")
                                  << " micro-batch through";
  }
}

TEST(PipelineParityTolerance, CatchesADroppedOrDoubledMicroBatch) {
  for (const char* model : {"decoder", "bert", "t5"})
    for (Fault fault : {Fault::DropMicroBatch, Fault::DoubleMicroBatch})
      for (DType dtype : {DType::f32, DType::f64}) expect_fault_caught(model, fault, dtype);
}

// Where the reference is right, the same check reports nothing (BERT, whose tied decoder makes the
// comparison a tolerance one rather than bitwise).
TEST(PipelineParityTolerance, ReportsNothingWithoutAFault) {
  std::vector<std::vector<std::string>> failures(2);
  ThreadGroup hub(2, "pp");
  hub.run([&](int rank) {
    CaseOptions o = opts(ScheduleKind::OneFOneB, 2);
    o.failures = &failures[size_t(rank)];
    check_bert(hub.comm(rank), bert_config(2), o);
  });
  for (const auto& f : failures) EXPECT_TRUE(f.empty()) << f.front();
}

// ---------------------------------------------------------------------------------------------
// BERT (encoder-only, MLM decoder tied to the word embedding)

TEST(BertStage, OwnsExactlyItsPartOfTheWholeModelsNames) {
  const auto cfg = bert_config(3);
  const auto layout = models::StageLayout::balanced(3, 3);
  models::BertMLM whole(cfg, 5);
  std::vector<std::string> all;
  for (int s = 0; s < 3; ++s) {
    models::BertStage stage(cfg, 5, layout, s);
    for (const auto& [name, t] : stage.named_parameters()) {
      // The last stage's replica of the tied word table is listed again.
      if (s == 2 && name == "encoder.embed.word.weight") continue;
      all.push_back(name);
      EXPECT_TRUE(models::testing::bitwise_equal(t, whole.parameter(name))) << name;
    }
  }
  std::vector<std::string> want;
  for (const auto& [name, t] : whole.named_parameters()) want.push_back(name);
  EXPECT_EQ(all, want);
  // The replica starts equal to the original, pad row zeroed included.
  EXPECT_TRUE(models::testing::bitwise_equal(
      models::BertStage(cfg, 5, layout, 2).parameter("encoder.embed.word.weight"),
      whole.parameter("encoder.embed.word.weight")));
}

void bert_parity(int p, const models::BertConfig& cfg, CaseOptions o) {
  ThreadGroup hub(p, "pp");
  hub.run([&](int rank) { check_bert(hub.comm(rank), cfg, o); });
}

TEST(BertPipeline, TwoStagesGPipeAndOneFOneBMatchTheWholeModel) {
  for (ScheduleKind k : {ScheduleKind::GPipe, ScheduleKind::OneFOneB}) {
    bert_parity(2, bert_config(2), opts(k));
    bert_parity(2, bert_config(2), opts(k, 2, DType::f64));
  }
}

TEST(BertPipeline, FourStagesAndDropout) {
  bert_parity(4, bert_config(4), opts(ScheduleKind::OneFOneB, 2));
  auto cfg = bert_config(3);
  cfg.dropout = 0.1;
  bert_parity(3, cfg, opts(ScheduleKind::GPipe, 2));
}

// ---------------------------------------------------------------------------------------------
// T5 (encoder stages before decoder stages; memory and position biases cross the boundaries)

TEST(T5Stage, OwnsExactlyItsPartOfTheWholeModelsNames) {
  const auto cfg = t5_config(2, 3);
  const auto layout = models::StageLayout::from_counts({1, 2, 2}, 5);  // stage 1 straddles
  models::T5Model whole(cfg, 5);
  std::vector<std::string> all;
  for (int s = 0; s < 3; ++s) {
    models::T5Stage stage(cfg, 5, layout, s);
    for (const auto& [name, t] : stage.named_parameters()) {
      all.push_back(name);
      EXPECT_TRUE(models::testing::bitwise_equal(t, whole.parameter(name))) << name;
    }
  }
  std::vector<std::string> want;
  for (const auto& [name, t] : whole.named_parameters()) want.push_back(name);
  EXPECT_EQ(all, want);
  const std::string e =
      error_of([&] { models::T5Stage(cfg, 5, models::StageLayout::balanced(4, 2), 0); });
  EXPECT_NE(e.find("covers 4 blocks but the model has 2 encoder + 3 decoder blocks"),
            std::string::npos)
      << e;
}

void t5_parity(int p, const models::T5Config& cfg, CaseOptions o) {
  ThreadGroup hub(p, "pp");
  hub.run([&](int rank) { check_t5(hub.comm(rank), cfg, o); });
}

TEST(T5Pipeline, TwoStagesGPipeAndOneFOneBMatchTheWholeModel) {
  for (ScheduleKind k : {ScheduleKind::GPipe, ScheduleKind::OneFOneB}) {
    t5_parity(2, t5_config(2, 2), opts(k));
    t5_parity(2, t5_config(2, 2), opts(k, 2, DType::f64));
  }
}

TEST(T5Pipeline, FourStagesForwardTheMemoryToEveryDecoderStage) {
  t5_parity(4, t5_config(1, 3), opts(ScheduleKind::OneFOneB, 2));  // 1 encoder, 3 decoder stages
  t5_parity(4, t5_config(2, 2), opts(ScheduleKind::GPipe, 2));
}

TEST(T5Pipeline, StagesStraddlingTheStacksAndOwnBiasTables) {
  CaseOptions o = opts(ScheduleKind::OneFOneB, 2);
  o.layout = models::StageLayout::from_counts({1, 2, 2}, 5);
  t5_parity(3, t5_config(2, 3), o);
  auto own = t5_config(2, 2);
  own.share_position_bias = false;
  t5_parity(3, own, opts(ScheduleKind::GPipe, 2));
}

TEST(T5Pipeline, Dropout) {
  auto cfg = t5_config(2, 2);
  cfg.dropout = 0.1;
  t5_parity(2, cfg, opts(ScheduleKind::OneFOneB, 2));
}

}  // namespace
}  // namespace strata::parallel::testing
