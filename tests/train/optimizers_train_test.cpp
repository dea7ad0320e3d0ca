// Lion, Sophia-G and Adafactor in the trainer (optim.name): a run stopped in the middle of its
// budget and resumed equals the straight run bit for bit (Sophia: between two Hessian passes, so
// the pass counter and the label draws must resume too), bad option values are refused naming
// the option, and Sophia's Hessian pass updates h exactly as a direct computation on a tiny model.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <sstream>

#include "core/ops.h"
#include "core/random/philox.h"
#include "optim/sophia.h"
#include "tests/train/tiny_corpus.h"
#include "train/checkpoint.h"
#include "train/methods/sophia_hessian.h"
#include "train/step_path.h"
#include "train/trainer.h"

namespace strata::train {
namespace {

namespace fs = std::filesystem;

const fixtures::TinyCorpus& tiny() {
  static const fixtures::TinyCorpus corpus("optimizers_train_test");
  return corpus;
}

TrainOptions options(const std::string& run, OptimizerKind kind) {
  TrainOptions o = tiny().decoder_options(run);
  o.optimizer = kind;
  o.budget = 12;
  o.save_every = 0;
  o.eval_every = 0;
  o.log_every = 4;
  o.sample_tokens = 0;
  o.hessian_every = 3;  // passes after steps 3, 6, 9, 12
  if (kind == OptimizerKind::Lion) o.lr = 3e-4, o.beta2 = 0.99;
  if (kind == OptimizerKind::SophiaG) o.rho = 0.04, o.beta1 = 0.965, o.beta2 = 0.99;
  return o;
}

void expect_bitwise_equal(const CheckpointState& a, const CheckpointState& b) {
  ASSERT_EQ(a.model.size(), b.model.size());
  auto same = [](const Tensor& t, const Tensor& u) {
    return t.shape() == u.shape() &&
           std::memcmp(t.contiguous().raw_data(), u.contiguous().raw_data(),
                       size_t(t.numel()) * t.element_size()) == 0;
  };
  for (const auto& [name, t] : a.model) EXPECT_TRUE(same(t, b.model.at(name))) << name;
  ASSERT_EQ(a.optim.size(), b.optim.size());
  for (const auto& [param, states] : a.optim)
    for (const auto& [k, t] : states)
      EXPECT_TRUE(same(t, b.optim.at(param).at(k))) << param << "/" << k;
  EXPECT_EQ(a.ints, b.ints);
  EXPECT_EQ(a.doubles.size(), b.doubles.size());
  for (const auto& [k, v] : a.doubles)
    if (k != "clock_seconds") {
      EXPECT_EQ(v, b.doubles.at(k)) << k;
    }
}

class OptimizerResume : public ::testing::TestWithParam<std::pair<const char*, OptimizerKind>> {};

TEST_P(OptimizerResume, ResumedInTheMiddleOfTheBudgetEqualsStraightRunBitForBit) {
  const auto [tag, kind] = GetParam();
  const std::string straight_dir = std::string(tag) + "_straight";
  const std::string resumed_dir = std::string(tag) + "_resumed";
  std::ostringstream log;
  const TrainResult straight = train(options(straight_dir, kind), log);
  ASSERT_EQ(straight.step, 12) << log.str();
  TrainOptions first = options(resumed_dir, kind);
  first.stop_after = 7;  // between Sophia's passes after steps 6 and 9
  const TrainResult a = train(first, log);
  ASSERT_EQ(a.step, 7);
  const TrainResult b = train(options(resumed_dir, kind), log);
  ASSERT_EQ(b.resumed_from, 7) << log.str();
  ASSERT_EQ(b.step, 12);
  for (size_t i = 0; i < a.losses.size(); ++i) EXPECT_EQ(a.losses[i], straight.losses[i]) << i;
  for (size_t i = 0; i < b.losses.size(); ++i)
    EXPECT_EQ(b.losses[i], straight.losses[7 + i]) << "step " << 8 + i;
  const CheckpointState s = load_checkpoint(tiny().root() / straight_dir / "step_000000012");
  expect_bitwise_equal(s, load_checkpoint(tiny().root() / resumed_dir / "step_000000012"));
  EXPECT_TRUE(std::isfinite(straight.losses.back()));
  if (kind == OptimizerKind::SophiaG) {
    EXPECT_EQ(s.ints.at("method.sophia_hessian.passes"), 4);
    EXPECT_NE(log.str().find("sophia: Hessian pass 4 after step 12; win rate"), std::string::npos)
        << log.str();
    // The pass has moved h off zero, so the clip is no longer the plain sign step everywhere.
    const Tensor h = s.optim.at("layers.0.ffn.up_proj.weight").at("hessian");
    EXPECT_GT(amax(abs(h)).item<double>(), 0.0);
  }
  // Every parameter has a gradient at every step here: its own count equals the global one.
  EXPECT_EQ(s.ints.at("optimizer_step.lm_head.weight"), 12);
}

INSTANTIATE_TEST_SUITE_P(Optimizers, OptimizerResume,
                         ::testing::Values(std::pair{"lion", OptimizerKind::Lion},
                                           std::pair{"sophiag", OptimizerKind::SophiaG},
                                           std::pair{"adafactor", OptimizerKind::Adafactor}),
                         [](const auto& info) { return std::string(info.param.first); });

// The Hessian pass is one forward and one backward of the step's batch: a FLOP clock charges it
// (2 passes in 6 steps: 8/6 of the optimizer-only run), a token clock does not.
TEST(SophiaHessianPass, IsChargedToTheFlopClockNotToTokens) {
  std::ostringstream log;
  auto run = [&](OptimizerKind kind, const std::string& dir) {
    TrainOptions o = options(dir, kind);
    o.budget = 6;
    train(o, log);
    return load_checkpoint(tiny().root() / dir / "step_000000006");
  };
  const CheckpointState lion = run(OptimizerKind::Lion, "charge_lion");
  const CheckpointState sophia = run(OptimizerKind::SophiaG, "charge_sophia");
  EXPECT_EQ(sophia.ints.at("method.sophia_hessian.passes"), 2);
  EXPECT_NEAR(sophia.doubles.at("clock_flops") / lion.doubles.at("clock_flops"), 8.0 / 6.0, 1e-12);
  EXPECT_EQ(sophia.ints.at("tokens_consumed"), lion.ints.at("tokens_consumed"));
  EXPECT_EQ(sophia.ints.at("method.sophia_hessian.hessian_tokens"),
            lion.ints.at("tokens_consumed") / 3);
}

void expect_refused(TrainOptions o, const std::string& needle) {
  std::ostringstream log;
  try {
    train(o, log);
    FAIL() << "accepted; expected an error naming " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(OptimizerOptions, BadValuesAreRefusedNamingTheOption) {
  TrainOptions o = options("bad", OptimizerKind::SophiaG);
  o.rho = 0;
  expect_refused(o, "optim.rho");
  o = options("bad", OptimizerKind::SophiaG);
  o.hessian_every = 0;
  expect_refused(o, "optim.hessian_every");
  o = options("bad", OptimizerKind::SophiaG);
  o.hessian_batch_tokens = -1;
  expect_refused(o, "optim.hessian_batch_tokens");
  o = options("bad", OptimizerKind::AdamW);
  o.rms_scale = true;
  expect_refused(o, "optim.rms_scale");
  o = options("bad", OptimizerKind::Adafactor);
  o.relative_step = false;
  o.warmup_init = true;
  expect_refused(o, "optim.warmup_init");
}

TEST(OptimizerOptions, NamesParse) {
  EXPECT_EQ(parse_option(optimizer_names(), "lion", "optim.name"), OptimizerKind::Lion);
  EXPECT_EQ(parse_option(optimizer_names(), "sophiag", "optim.name"), OptimizerKind::SophiaG);
  EXPECT_EQ(parse_option(optimizer_names(), "adafactor", "optim.name"), OptimizerKind::Adafactor);
  EXPECT_THROW(parse_option(optimizer_names(), "sophia", "optim.name"), Error);
}

// ---- Sophia's Hessian pass -----------------------------------------------------------------

struct TinyDecoder {
  std::unique_ptr<data::Tokenizer> tok =
      data::load_tokenizer((tiny().root() / "bytes.tok").string());
  std::unique_ptr<Task> task;
  data::Batch batch;
  TinyDecoder() {
    ModelSpec m;
    m.decoder.d_model = 16;
    m.decoder.n_layers = 1;
    m.decoder.n_heads = 2;
    m.decoder.d_ff = 32;
    m.decoder.dropout = 0;
    ObjectiveSpec obj;
    obj.seq_len = 8;
    task = make_task(m, obj, *tok, 7);
    batch.rows = 2, batch.input_len = 8, batch.target_len = 8;
    batch.global_index = {5, 9};
    for (int i = 0; i < 16; ++i) {
      batch.inputs.push_back(int32_t(40 + (i * 7) % 50));
      batch.targets.push_back(i == 3 ? -100 : int32_t(40 + (i * 7 + 7) % 50));
    }
  }
  std::vector<optim::NamedParam> params() {
    std::vector<optim::NamedParam> out;
    for (const auto& [name, p] : task->module().named_parameters()) out.push_back({name, p});
    return out;
  }
};

// The test's own draw: softmax in f64 and the inverse CDF, written apart from sample_labels.
std::vector<int64_t> direct_labels(const Tensor& logits, const data::Batch& b, uint64_t seed,
                                   uint64_t step) {
  const std::vector<int32_t>& targets = b.targets;
  const int64_t V = logits.shape().back();
  const auto l = logits.detach().to(DType::f64).to_vector<double>();
  const Philox rng(seed, kHessianLabelStream, step);
  std::vector<int64_t> out;
  for (size_t i = 0; i < targets.size(); ++i) {
    if (targets[i] == -100) {
      out.push_back(-100);
      continue;
    }
    std::vector<double> p(static_cast<size_t>(V));
    double mx = -1e300, z = 0;
    for (int64_t v = 0; v < V; ++v) mx = std::max(mx, l[i * size_t(V) + size_t(v)]);
    for (int64_t v = 0; v < V; ++v) z += p[size_t(v)] = std::exp(l[i * size_t(V) + size_t(v)] - mx);
    const uint64_t row = b.global_index[i / size_t(b.target_len)];
    const double u = rng.uniform_f64(row * uint64_t(b.target_len) + i % size_t(b.target_len)) * z;
    int64_t pick = V - 1;
    double c = 0;
    for (int64_t v = 0; v < V; ++v)
      if ((c += p[size_t(v)]) > u) {
        pick = v;
        break;
      }
    out.push_back(pick);
  }
  return out;
}

TEST(SophiaHessianPass, UpdatesHessianAsTheDirectComputation) {
  TinyDecoder d;
  optim::Hyper h;
  h.beta2 = 0.9;
  optim::SophiaOptions so;
  optim::Sophia sophia(optim::make_param_groups(d.params(), h), so);
  const parallel::Topology one = parallel::Topology::single();  // the path keeps a reference
  const auto path =
      make_step_path(*d.task, sophia, one, Device::cpu(), parallel::ScheduleKind::OneFOneB, 1);
  SophiaHessian::hessian_pass(*d.task, sophia, *path, {d.batch}, 1234, 5);
  // Gradients are released after the pass.
  for (const auto& np : d.params()) EXPECT_FALSE(np.param.grad().defined()) << np.name;

  // Direct: the same forward, the test's own draw, cross-entropy, backward.
  Tensor ids = batch_ids(d.batch.inputs, 2, 8);
  models::DecoderLM& lm = dynamic_cast<models::DecoderLM&>(d.task->module());
  const Tensor logits = lm.forward(ids);
  const std::vector<int64_t> labels = direct_labels(logits, d.batch, 1234, 5);
  cross_entropy(logits, from_vector(labels, {2, 8})).backward();
  const auto state = sophia.state();
  int checked = 0;
  for (const auto& np : d.params()) {
    const Tensor g = np.param.grad();
    ASSERT_TRUE(g.defined()) << np.name;
    const auto expect = (g * g * 0.1).to(DType::f64).to_vector<double>();
    const auto got = state.at(np.name + "/hessian").to(DType::f64).to_vector<double>();
    double scale = 0, worst = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      scale = std::max(scale, std::abs(expect[i]));
      worst = std::max(worst, std::abs(got[i] - expect[i]));
    }
    EXPECT_GT(scale, 0) << np.name;
    EXPECT_LE(worst, 1e-6 * scale) << np.name;
    ++checked;
  }
  EXPECT_GT(checked, 3);
}

TEST(SophiaHessianPass, DrawsArePureFunctionsOfTheKeyAndFollowTheSoftmax) {
  // Four classes with probabilities 0.1, 0.2, 0.3, 0.4 at 20000 positions.
  const int64_t n = 20000;
  std::vector<float> l;
  for (int64_t i = 0; i < n; ++i)
    for (double p : {0.1, 0.2, 0.3, 0.4}) l.push_back(float(std::log(p) + 3.0));
  const Tensor logits = from_vector(l, {1, n, 4});
  const Tensor targets = zeros({1, n}, DType::i64);
  RandomKey key{9, kHessianLabelStream, 3, 0};
  const std::vector<uint64_t> rows{0};  // one row of n positions
  const auto a = sample_labels(logits, targets, key, rows).to_vector<int64_t>();
  EXPECT_EQ(a, sample_labels(logits, targets, key, rows).to_vector<int64_t>());
  key.step = 4;
  EXPECT_NE(a, sample_labels(logits, targets, key, rows).to_vector<int64_t>());
  key.step = 3;
  EXPECT_NE(a, sample_labels(logits, targets, key, {1}).to_vector<int64_t>());
  std::vector<double> count(4, 0.0);
  for (int64_t v : a) count[size_t(v)] += 1;
  for (int v = 0; v < 4; ++v) {
    const double p = 0.1 * (v + 1), sd = std::sqrt(n * p * (1 - p));
    EXPECT_NEAR(count[size_t(v)], n * p, 4 * sd) << "class " << v;
  }
  // Ignored positions stay ignored.
  const Tensor ign = full({3, 1}, -100, DType::i64);
  EXPECT_EQ(sample_labels(from_vector(std::vector<float>(12, 0.f), {3, 4}), ign, key, {0, 1, 2})
                .to_vector<int64_t>(),
            (std::vector<int64_t>{-100, -100, -100}));
}

}  // namespace
}  // namespace strata::train
