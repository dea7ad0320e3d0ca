// bf16 mixed precision through the training loop on the CPU: a bf16 run tracks the f32 loss curve,
// is deterministic, stores f32 weights and f32 optimizer state with its precision in the
// checkpoint (which load_trained honours), resumes bit for bit with gradient accumulation and
// clipping, and the option's errors reach the command line. Also prints the residual-stream
// measurement behind Precision::bf16() (docs/training.md, "Mixed precision").
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/ops.h"
#include "data/prepare.h"
#include "data/tokenizer.h"
#include "tests/train/tiny_corpus.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace strata::train {
namespace {

namespace fs = std::filesystem;

const fixtures::TinyCorpus& tiny_corpus() {
  static const fixtures::TinyCorpus corpus("mixed_precision_test");
  return corpus;
}

// The trainer test's decoder on the tiny corpus, at the given precision.
TrainOptions tiny_options(const std::string& run, const models::Precision& precision) {
  TrainOptions o = tiny_corpus().decoder_options(run);
  o.model.decoder.precision = precision;
  return o;
}

struct CurveGap {
  double max_abs = 0, mean_abs = 0, final_rel = 0;
};

CurveGap gap(const std::vector<double>& a, const std::vector<double>& ref) {
  CurveGap g;
  for (size_t i = 0; i < a.size() && i < ref.size(); ++i) {
    const double d = std::abs(a[i] - ref[i]);
    g.max_abs = std::max(g.max_abs, d);
    g.mean_abs += d / double(a.size());
  }
  g.final_rel = std::abs(a.back() - ref.back()) / std::abs(ref.back());
  return g;
}

// 40 steps of the tiny decoder: the bf16 curve stays within 0.05 nats of the f32 curve at every
// step (the loss starts at ln 260 = 5.6 and falls by more than 1), the validation losses within
// 2%, and a second bf16 run gives the same numbers bit for bit.
TEST(MixedPrecisionTraining, Bf16TracksF32AndIsDeterministic) {
  std::ostringstream log;
  const TrainResult f = train(tiny_options("f32", models::Precision::f32()), log);
  const TrainResult b = train(tiny_options("bf16", models::Precision::bf16()), log);
  const TrainResult b2 = train(tiny_options("bf16_again", models::Precision::bf16()), log);
  ASSERT_EQ(f.losses.size(), 40u);
  ASSERT_EQ(b.losses.size(), 40u);
  const CurveGap g = gap(b.losses, f.losses);
  std::printf(
      "bf16 vs f32 over 40 steps: max |dloss| %.4f, mean %.4f, final loss %.4f vs %.4f; "
      "validation %.4f vs %.4f\n",
      g.max_abs, g.mean_abs, b.losses.back(), f.losses.back(), b.valid_loss, f.valid_loss);
  EXPECT_LT(g.max_abs, 0.05) << log.str();
  EXPECT_LT(std::abs(b.valid_loss - f.valid_loss) / f.valid_loss, 0.02);
  EXPECT_LT(b.losses.back(), b.losses.front() - 1.0) << "the bf16 run learns";
  for (size_t i = 0; i < b.losses.size(); ++i) EXPECT_EQ(b.losses[i], b2.losses[i]) << i;
  EXPECT_EQ(b.valid_loss, b2.valid_loss);
  EXPECT_EQ(b.sample, b2.sample);
  EXPECT_NE(log.str().find("precision bf16"), std::string::npos) << "logged at start-up";
}

// The checkpoint of a bf16 run holds f32 master weights and f32 optimizer state, names its
// precision, and the task rebuilt from it (strata generate, eval) computes in bf16.
TEST(MixedPrecisionTraining, CheckpointStoresF32AndThePrecision) {
  std::ostringstream log;
  TrainOptions o = tiny_options("ckpt", models::Precision::bf16());
  o.budget = 10;
  o.save_every = 10;
  const TrainResult r = train(o, log);
  ASSERT_EQ(r.step, 10);
  const fs::path dir = fs::path(o.run_dir) / "step_000000010";
  const CheckpointState s = load_checkpoint(dir);
  ASSERT_FALSE(s.model.empty());
  for (const auto& [name, t] : s.model) EXPECT_EQ(t.dtype(), DType::f32) << name;
  ASSERT_FALSE(s.optim.empty());
  for (const auto& [param, states] : s.optim)
    for (const auto& [k, t] : states) EXPECT_EQ(t.dtype(), DType::f32) << param << "/" << k;
  ASSERT_EQ(s.strings.count("model.precision"), 1u);
  EXPECT_EQ(s.strings.at("model.precision"), "bf16");

  const LoadedTask loaded = load_trained(dir.string());
  EXPECT_EQ(loaded.task->module().precision(), models::Precision::bf16());
  for (const auto& [name, t] : loaded.task->module().named_parameters())
    EXPECT_EQ(t.dtype(), DType::f32) << name;
  SampleOptions so;
  so.max_new_tokens = 4;
  so.greedy = true;
  EXPECT_FALSE(loaded.task->generate(*loaded.tokenizer, "the ", so).empty());

  // An f32 checkpoint (and one written before the option existed) reads back as f32.
  TrainOptions of = tiny_options("ckpt_f32", models::Precision::f32());
  of.budget = 6;
  of.save_every = 2;
  train(of, log);
  const LoadedTask lf = load_trained((fs::path(of.run_dir) / "step_000000002").string());
  EXPECT_EQ(lf.task->module().precision(), models::Precision::f32());
}

// With gradient accumulation (2 micro-batches) and clipping on, a bf16 run interrupted at step 17
// and resumed equals the straight bf16 run bit for bit, as f32 runs do (trainer_test.cpp).
TEST(MixedPrecisionTraining, ResumedBf16RunEqualsStraightRunBitForBit) {
  auto opts = [](const std::string& run) {
    TrainOptions o = tiny_options(run, models::Precision::bf16());
    o.grad_accum = 2;
    o.clip = 0.5;
    return o;
  };
  std::ostringstream log;
  const TrainResult straight = train(opts("straight"), log);
  TrainOptions first = opts("interrupted");
  first.stop_after = 17;
  const TrainResult a = train(first, log);
  ASSERT_EQ(a.step, 17);
  const TrainResult b = train(opts("interrupted"), log);
  ASSERT_EQ(b.resumed_from, 17) << log.str();
  ASSERT_EQ(b.step, 40);
  for (size_t i = 0; i < a.losses.size(); ++i) EXPECT_EQ(a.losses[i], straight.losses[i]) << i;
  for (size_t i = 0; i < b.losses.size(); ++i)
    EXPECT_EQ(b.losses[i], straight.losses[17 + i]) << "step " << 18 + i;
  EXPECT_EQ(b.valid_loss, straight.valid_loss);
  const CheckpointState x = load_checkpoint(tiny_corpus().root() / "straight" / "step_000000040");
  const CheckpointState y =
      load_checkpoint(tiny_corpus().root() / "interrupted" / "step_000000040");
  ASSERT_EQ(x.model.size(), y.model.size());
  for (const auto& [name, t] : x.model) {
    const Tensor& u = y.model.at(name);
    EXPECT_EQ(std::memcmp(t.contiguous().raw_data(), u.contiguous().raw_data(),
                          size_t(t.numel()) * t.element_size()),
              0)
        << name;
  }
  for (const auto& [param, states] : x.optim)
    for (const auto& [k, t] : states)
      EXPECT_EQ(
          std::memcmp(t.contiguous().raw_data(), y.optim.at(param).at(k).contiguous().raw_data(),
                      size_t(t.numel()) * t.element_size()),
          0)
          << param << "/" << k;
}

// The measurement behind the f32 residual stream of Precision::bf16(): 50 steps of the tiny
// decoder (no dropout) in f32, bf16 with an f32 residual and bf16 with a bf16 residual. Prints
// both gaps; checks the chosen recipe stays within 0.05 nats of f32.
TEST(MixedPrecisionTraining, ResidualStreamMeasurement) {
  auto opts = [](const std::string& run, const models::Precision& p) {
    TrainOptions o = tiny_options(run, p);
    o.model.decoder.dropout = 0;
    o.budget = 50;
    o.save_every = 0;
    o.eval_every = 0;
    o.sample_tokens = 0;
    return o;
  };
  std::ostringstream log;
  auto timed = [&](const TrainOptions& o, double& secs) {
    const auto t0 = std::chrono::steady_clock::now();
    TrainResult r = train(o, log);
    secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
  };
  double s_f32 = 0, s_res32 = 0, s_res16 = 0;
  const TrainResult f = timed(opts("m_f32", models::Precision::f32()), s_f32);
  const TrainResult r32 = timed(opts("m_res32", models::Precision::bf16()), s_res32);
  const TrainResult r16 =
      timed(opts("m_res16", models::Precision{DType::bf16, DType::bf16}), s_res16);
  const CurveGap g32 = gap(r32.losses, f.losses), g16 = gap(r16.losses, f.losses);
  std::printf(
      "50 steps, tiny decoder: final loss f32 %.4f (%.2fs)\n"
      "  bf16, f32 residual:  max |dloss| %.4f  mean %.4f  final %.4f (rel %.2e)  valid %.4f  "
      "(%.2fs)\n"
      "  bf16, bf16 residual: max |dloss| %.4f  mean %.4f  final %.4f (rel %.2e)  valid %.4f  "
      "(%.2fs)\n  f32 valid %.4f\n",
      f.losses.back(), s_f32, g32.max_abs, g32.mean_abs, r32.losses.back(), g32.final_rel,
      r32.valid_loss, s_res32, g16.max_abs, g16.mean_abs, r16.losses.back(), g16.final_rel,
      r16.valid_loss, s_res16, f.valid_loss);
  EXPECT_LT(g32.max_abs, 0.05);
}

std::pair<int, std::string> run_strata(const std::string& args) {
  const std::string cmd = std::string(STRATA_BIN) + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// A bad value fails before any work, naming the key and the valid choices.
TEST(MixedPrecisionTraining, BadPrecisionIsAnErrorNamingTheChoices) {
  const fs::path dir = tiny_corpus().root() / "bad_precision";
  for (const char* bad : {"fp16", "bfloat16", "half"}) {
    auto [rc, out] =
        run_strata(std::string("train --model.precision ") + bad + " --run.dir " + dir.string() +
                   " --data.tokenizer " + (tiny_corpus().root() / "bytes.tok").string() +
                   " --data.train " + (tiny_corpus().root() / "train").string() + " --data.valid " +
                   (tiny_corpus().root() / "valid").string() + " --data.prepare never");
    EXPECT_EQ(rc, 2) << out;  // refused as it is parsed (launch/option_checks.h)
    EXPECT_NE(out.find("model.precision"), std::string::npos) << out;
    EXPECT_NE(out.find("unknown value '" + std::string(bad) + "'; valid: f32, bf16"),
              std::string::npos)
        << out;
    EXPECT_NE(out.find("bf16"), std::string::npos) << out;
  }
  EXPECT_FALSE(fs::exists(dir / "metrics.jsonl"));
}

}  // namespace
}  // namespace strata::train
