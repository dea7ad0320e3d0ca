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
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace strata::train {
namespace {

namespace fs = std::filesystem;

// A small corpus with real structure (repeated sentences with variations), byte-tokenised.
struct TinyData {
  fs::path root;
  TinyData() {
    root = fs::temp_directory_path() / ("strata_trainer_test_" + std::to_string(::getpid()));
    fs::remove_all(root);
    fs::create_directories(root / "text/train");
    fs::create_directories(root / "text/valid");
    const char* words[] = {"the cat", "a dog", "the bird", "my fish"};
    const char* verbs[] = {" sat on ", " ran to ", " looked at ", " slept by "};
    const char* places[] = {"the mat.", "the door.", "a tree.", "the river."};
    for (int d = 0; d < 12; ++d) {
      std::ofstream out(root / (d < 10 ? "text/train/" : "text/valid/") /
                        ("doc" + std::to_string(d) + ".txt"));
      for (int i = 0; i < 60; ++i)
        out << words[(i + d) % 4] << verbs[(i * 3 + d) % 4] << places[(i * 7 + d) % 4] << "\n";
    }
    {
      std::ofstream tok(root / "bytes.tok", std::ios::binary);
      tok << data::byte_tokenizer_file();
    }
    const auto tok = data::load_tokenizer((root / "bytes.tok").string());
    for (auto [in, out] : {std::pair{"text/train", "train"}, std::pair{"text/valid", "valid"}}) {
      data::PrepareOptions p;
      p.inputs = {(root / in).string()};
      p.out = (root / out).string();
      p.progress = false;
      data::prepare(p, *tok);
    }
  }
  ~TinyData() { fs::remove_all(root); }

  TrainOptions options(const std::string& run) const {
    TrainOptions o;
    o.run_dir = (root / run).string();
    o.tokenizer = (root / "bytes.tok").string();
    o.train_data = (root / "train").string();
    o.valid_data = (root / "valid").string();
    o.objective.seq_len = 32;
    o.micro_batch = 4;
    o.model.decoder.d_model = 32;
    o.model.decoder.n_layers = 2;
    o.model.decoder.n_heads = 4;
    o.model.decoder.n_kv_heads = 2;
    o.model.decoder.d_ff = 64;
    o.model.decoder.dropout = 0.1;  // exercises the dropout keys across a resume
    o.lr = 3e-3;
    o.warmup_steps = 4;
    o.budget = 40;
    o.log_every = 10;
    o.eval_every = 20;
    o.eval_batches = 2;
    o.save_every = 20;
    o.peak_gflops = 1;
    o.sample_tokens = 8;
    return o;
  }
};

const TinyData& tiny() {
  static TinyData d;
  return d;
}

TEST(Trainer, LossFallsOnATinyCorpus) {
  TrainOptions o = tiny().options("falls");
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
  const TrainResult straight = train(tiny().options("straight"), log);

  TrainOptions first = tiny().options("interrupted");
  first.stop_after = 17;  // not a save boundary: the stop itself saves
  const TrainResult a = train(first, log);
  ASSERT_EQ(a.step, 17);
  const TrainResult b = train(tiny().options("interrupted"), log);  // resume auto
  ASSERT_EQ(b.resumed_from, 17) << log.str();
  ASSERT_EQ(b.step, 40);
  for (size_t i = 0; i < a.losses.size(); ++i) EXPECT_EQ(a.losses[i], straight.losses[i]) << i;
  for (size_t i = 0; i < b.losses.size(); ++i)
    EXPECT_EQ(b.losses[i], straight.losses[17 + i]) << "step " << 18 + i;
  EXPECT_EQ(b.valid_loss, straight.valid_loss);
  expect_bitwise_equal(load_checkpoint(fs::path(tiny().root) / "straight" / "step_000000040"),
                       load_checkpoint(fs::path(tiny().root) / "interrupted" / "step_000000040"));
}

TEST(Trainer, DivergenceStopsWithTheLastCheckpointIntact) {
  TrainOptions o = tiny().options("diverge");
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

TEST(Trainer, TokenizerMismatchOnResumeIsAnError) {
  TrainOptions o = tiny().options("mismatch");
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
