// The training loop end to end on a tiny prepared corpus: the loss falls, a resumed run equals
// the straight one bit for bit, and a diverging run stops with the last checkpoint intact.
#include <gtest/gtest.h>

#include <cmath>
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

const fixtures::TinyCorpus& tiny() {
  static const fixtures::TinyCorpus corpus("trainer_test");
  return corpus;
}

TEST(Trainer, LossFallsOnATinyCorpus) {
  TrainOptions o = tiny().decoder_options("falls");
  std::ostringstream log;
  const TrainResult r = train(o, log);
  ASSERT_EQ(r.step, 40) << log.str();
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) first += r.losses[i] / 5;
  for (int i = 35; i < 40; ++i) last += r.losses[i] / 5;
  EXPECT_LT(last, first - 1.0) << log.str();
  EXPECT_LT(r.valid_loss, std::log(260.0) - 1.0) << log.str();
  EXPECT_TRUE(fs::exists(fs::path(o.run_dir) / "step_000000040" / "DONE"));
  EXPECT_TRUE(fs::exists(fs::path(o.run_dir) / "metrics.jsonl"));
  EXPECT_FALSE(r.sample.empty());
}

void expect_bitwise_equal(const CheckpointState& a, const CheckpointState& b) {
  ASSERT_EQ(a.model.size(), b.model.size());
  for (const auto& [name, t] : a.model) {
    const Tensor& u = b.model.at(name);
    ASSERT_EQ(t.shape(), u.shape()) << name;
    EXPECT_EQ(std::memcmp(t.contiguous().raw_data(), u.contiguous().raw_data(),
                          size_t(t.numel()) * t.element_size()),
              0)
        << "parameter " << name << " differs";
  }
  for (const auto& [param, states] : a.optim)
    for (const auto& [k, t] : states)
      EXPECT_EQ(
          std::memcmp(t.contiguous().raw_data(), b.optim.at(param).at(k).contiguous().raw_data(),
                      size_t(t.numel()) * t.element_size()),
          0)
          << "optimizer state " << param << "/" << k << " differs";
  EXPECT_EQ(a.ints.at("loader_counter"), b.ints.at("loader_counter"));
  EXPECT_EQ(a.ints.at("tokens_consumed"), b.ints.at("tokens_consumed"));
}

TEST(Trainer, ResumedRunEqualsStraightRunBitForBit) {
  std::ostringstream log;
  const TrainResult straight = train(tiny().decoder_options("straight"), log);

  TrainOptions first = tiny().decoder_options("interrupted");
  first.stop_after = 17;  // not a save boundary: the stop itself saves
  const TrainResult a = train(first, log);
  ASSERT_EQ(a.step, 17);
  const TrainResult b = train(tiny().decoder_options("interrupted"), log);  // resume auto
  ASSERT_EQ(b.resumed_from, 17) << log.str();
  ASSERT_EQ(b.step, 40);
  for (size_t i = 0; i < a.losses.size(); ++i) EXPECT_EQ(a.losses[i], straight.losses[i]) << i;
  for (size_t i = 0; i < b.losses.size(); ++i)
    EXPECT_EQ(b.losses[i], straight.losses[17 + i]) << "step " << 18 + i;
  EXPECT_EQ(b.valid_loss, straight.valid_loss);
  expect_bitwise_equal(load_checkpoint(tiny().root() / "straight" / "step_000000040"),
                       load_checkpoint(tiny().root() / "interrupted" / "step_000000040"));
}

TEST(Trainer, DivergenceStopsWithTheLastCheckpointIntact) {
  TrainOptions o = tiny().decoder_options("diverge");
  o.lr = 1e30;  // the first update sends the weights to inf
  o.warmup_steps = 0;
  o.save_every = 1;
  o.clip = 0;
  std::ostringstream log;
  try {
    train(o, log);
    FAIL() << "training with lr 1e30 did not stop";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("stopping without saving"), std::string::npos) << m << "\n" << log.str();
  }
  // Whatever was saved before the divergence still verifies.
  std::string warnings;
  auto latest = find_latest_checkpoint(o.run_dir, &warnings);
  if (latest) {
    EXPECT_NO_THROW(load_checkpoint(*latest));
  }
  EXPECT_TRUE(warnings.empty()) << warnings;
}

TEST(Trainer, NoProgressLinesWhenLogEveryIsZero) {
  // The library takes log.every 0 as "only at the end" (the command line refuses it earlier).
  TrainOptions o = tiny().decoder_options("quiet_log");
  o.budget = 3;
  o.warmup_steps = 0;
  o.log_every = 0;
  o.eval_every = 0;
  o.save_every = 0;
  std::ostringstream log;
  const TrainResult r = train(o, log);
  EXPECT_EQ(r.step, 3);
  size_t lines = 0;
  for (size_t at = log.str().find("step "); at != std::string::npos;
       at = log.str().find("step ", at + 1))
    lines += log.str().compare(at, 9, "step     ") == 0;
  EXPECT_EQ(lines, 1u) << log.str();  // the last step's line only
}

TEST(Trainer, TokenizerMismatchOnResumeIsAnError) {
  TrainOptions o = tiny().decoder_options("mismatch");
  o.budget = 2;
  o.warmup_steps = 0;
  o.save_every = 1;
  std::ostringstream log;
  train(o, log);
  CheckpointState s = load_checkpoint(fs::path(o.run_dir) / "step_000000002");
  s.strings["tokenizer_fingerprint"] = "unigram:0123456789abcdef";
  s.ints["step"] = 3;
  save_checkpoint(o.run_dir, 3, s, 0);
  o.budget = 5;
  try {
    train(o, log);
    FAIL() << "resumed with another tokenizer";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unigram:0123456789abcdef"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace strata::train
