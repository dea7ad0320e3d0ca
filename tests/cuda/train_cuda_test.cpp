// Training on the GPU against the CPU: the optimizer kernels, clipping, a few AdamW steps of a
// model, and the trainer end to end with checkpoints that move between devices.
//
// What is exact and what is within a tolerance (rel_err: max |gpu - cpu| / max |cpu|):
//   - AdamW from equal parameters, gradients and state: bit-exact in f32, f64 and bf16 (the CUDA
//     kernel rounds each operation as the CPU kernel does); Sophia-G too, and Lion's state (its
//     RMS-scaled parameters within 1e-6). AdamWScale: state bit-exact, parameters
//     within 1e-6 (its step size contains RMS(p), an f64 sum in another order).
//   - clip_grad_norm from equal gradients: the norm within 1e-12 relative (f64 sums in another
//     order), the clipped gradients within 1e-6.
//   - Training steps: losses within 1e-4 relative at the first step and 1e-3 after a few steps
//     (f32 differences in the gradients, amplified where Adam's update m / sqrt(v) flips for
//     gradients near zero); parameters within 1e-3.
//   - Checkpoints: a checkpoint saved on the GPU holds host f32 tensors with the same names,
//     shapes and dtypes as a CPU one. Resumed on the CPU twice, it continues bit for bit the same
//     both times (it is an ordinary checkpoint); resumed on the GPU, within 1e-3 of the CPU. A CPU
//     checkpoint resumed on the GPU continues within 1e-3 of its CPU continuation.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/prepare.h"
#include "data/tokenizer.h"
#include "models/decoder_lm.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/lion.h"
#include "optim/sophia.h"
#include "tests/cuda/model_compare_util.h"
#include "tests/train/tiny_corpus.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace strata::model_test {
namespace {

namespace fs = std::filesystem;

// ---- optimizer kernels --------------------------------------------------------------------------

Tensor host_randn(int64_t n, DType dtype, uint64_t seed, double std = 1.0) {
  return randn({n}, RandomKey{seed, uint32_t(RngStream::Test), 0, 0}, DType::f32, 0.0, std)
      .to(dtype);
}

template <class Opt>
void compare_optimizer_steps(DType param_dtype, DType grad_dtype, bool exact_params) {
  const int64_t n = 70001;  // several blocks and a ragged tail
  const Tensor p0 = host_randn(n, param_dtype, 1, 0.5);
  Tensor pc = p0.clone(), pg = p0.to(gpu());
  pc.set_requires_grad(true);
  pg.set_requires_grad(true);
  const optim::Hyper h{1e-2, 0.1, 0.9, 0.95, 1e-8};
  Opt oc({optim::ParamGroup{{optim::NamedParam{"w", pc}}, h}});
  Opt og({optim::ParamGroup{{optim::NamedParam{"w", pg}}, h}});
  for (const auto& [key, t] : og.state()) EXPECT_EQ(t.device(), gpu()) << key;
  for (int step = 0; step < 3; ++step) {
    const Tensor g = host_randn(n, grad_dtype, 10 + uint64_t(step), 1e-2);
    pc.set_grad(g.clone());
    pg.set_grad(g.to(gpu()));
    oc.step();
    og.step();
  }
  const std::string what = std::string(dtype_name(param_dtype)) + " params, " +
                           std::string(dtype_name(grad_dtype)) + " grads, " + oc.name();
  if (exact_params)
    EXPECT_TRUE(bitwise_equal(pg, pc)) << what << " (rel_err " << rel_err(pg, pc) << ")";
  else
    EXPECT_LE(rel_err(pg, pc), 1e-6) << what;
  const auto sc = oc.state(), sg = og.state();
  for (const auto& [key, t] : sc) EXPECT_TRUE(bitwise_equal(sg.at(key), t)) << what << " " << key;
}

TEST(OptimCuda, AdamWIsBitExact) {
  STRATA_REQUIRE_GPU();
  compare_optimizer_steps<optim::AdamW>(DType::f32, DType::f32, true);
  compare_optimizer_steps<optim::AdamW>(DType::f64, DType::f64, true);
  compare_optimizer_steps<optim::AdamW>(DType::bf16, DType::bf16, true);
  compare_optimizer_steps<optim::AdamW>(DType::bf16, DType::f32, true);
}

TEST(OptimCuda, AdamWScaleMatches) {
  STRATA_REQUIRE_GPU();
  compare_optimizer_steps<optim::AdamWScale>(DType::f32, DType::f32, false);
  compare_optimizer_steps<optim::AdamWScale>(DType::bf16, DType::f32, false);
  // RMS on the device is the CPU's value up to f64 summation order.
  const Tensor p = host_randn(123457, DType::f32, 3);
  EXPECT_NEAR(optim::AdamWScale::rms(p.to(gpu())), optim::AdamWScale::rms(p),
              1e-12 * optim::AdamWScale::rms(p));
}

// Lion and Sophia-G (with a Hessian update between steps): their kernels round each operation as
// the CPU loops do, so parameters, state and Sophia's win rate are bit-exact.
void compare_sign_steps(bool sophia, DType param_dtype, DType grad_dtype) {
  const int64_t n = 70001;
  const Tensor p0 = host_randn(n, param_dtype, 1, 0.5);
  Tensor pc = p0.clone(), pg = p0.to(gpu());
  pc.set_requires_grad(true);
  pg.set_requires_grad(true);
  const optim::Hyper h{1e-2, 0.1, 0.9, 0.99, 1e-8};
  optim::SophiaOptions so;
  so.batch_tokens = 1e4;
  auto make = [&](Tensor& p) -> std::unique_ptr<optim::Optimizer> {
    std::vector<optim::ParamGroup> groups{optim::ParamGroup{{optim::NamedParam{"w", p}}, h}};
    if (sophia) return std::make_unique<optim::Sophia>(std::move(groups), so);
    return std::make_unique<optim::Lion>(std::move(groups), true);
  };
  auto oc = make(pc), og = make(pg);
  for (int step = 0; step < 3; ++step) {
    const Tensor g = host_randn(n, grad_dtype, 10 + uint64_t(step), 1e-2);
    pc.set_grad(g.clone());
    pg.set_grad(g.to(gpu()));
    oc->step();
    og->step();
    if (sophia) {
      auto& sc = dynamic_cast<optim::Sophia&>(*oc);
      auto& sg = dynamic_cast<optim::Sophia&>(*og);
      EXPECT_EQ(sg.unclipped_count(), sc.unclipped_count()) << "step " << step;
      const Tensor hg = host_randn(n, grad_dtype, 20 + uint64_t(step), 1e-2);
      pc.set_grad(hg.clone());
      pg.set_grad(hg.to(gpu()));
      sc.update_hessian();
      sg.update_hessian();
    }
  }
  const std::string what = std::string(dtype_name(param_dtype)) + " params, " +
                           std::string(dtype_name(grad_dtype)) + " grads, " + oc->name();
  // Lion's RMS factor is an f64 sum in another order on the GPU: within 1e-6, not bit-exact.
  EXPECT_LE(rel_err(pg, pc), sophia ? 0.0 : 1e-6) << what;
  const auto sc = oc->state(), sg = og->state();
  for (const auto& [key, t] : sc) EXPECT_TRUE(bitwise_equal(sg.at(key), t)) << what << " " << key;
}

TEST(OptimCuda, LionAndSophiaMatchTheCpu) {
  STRATA_REQUIRE_GPU();
  for (bool sophia : {false, true}) {
    compare_sign_steps(sophia, DType::f32, DType::f32);
    compare_sign_steps(sophia, DType::f64, DType::f64);
    compare_sign_steps(sophia, DType::bf16, DType::bf16);
    compare_sign_steps(sophia, DType::bf16, DType::f32);
  }
}

std::vector<Tensor> params_with_grads(Device d, DType dtype, double scale) {
  std::vector<Tensor> ps;
  uint64_t seed = 20;
  for (int64_t n : {300000, 4097, 1, 0}) {
    Tensor p = zeros({n}, dtype, d);
    p.set_requires_grad(true);
    const Tensor g = host_randn(n, dtype, seed++, scale);
    p.set_grad(d.is_cpu() ? g : g.to(d));
    ps.push_back(p);
  }
  return ps;
}

TEST(OptimCuda, ClipGradNormMatchesAndIsDeterministic) {
  STRATA_REQUIRE_GPU();
  for (DType dt : {DType::f32, DType::bf16, DType::f64})
    for (double max_norm : {0.1, 1e9}) {
      auto c = params_with_grads(Device::cpu(), dt, 1.0), g = params_with_grads(gpu(), dt, 1.0);
      const double nc = optim::clip_grad_norm(c, max_norm), ng = optim::clip_grad_norm(g, max_norm);
      EXPECT_NEAR(ng, nc, 1e-12 * nc) << dtype_name(dt);
      for (size_t i = 0; i < c.size(); ++i)
        EXPECT_LE(rel_err(g[i].grad(), c[i].grad()), 1e-6) << dtype_name(dt) << " " << i;
      // The same gradients give the same bits on every run (no atomics).
      auto g2 = params_with_grads(gpu(), dt, 1.0);
      const Tensor t1 = optim::clip_grad_norm_tensor(g2, 0);
      const Tensor t2 = optim::clip_grad_norm_tensor(g2, 0);
      EXPECT_EQ(t1.device(), gpu());
      EXPECT_TRUE(bitwise_equal(t1, t2));
      EXPECT_NEAR(host(t1).item<double>(), nc, 1e-12 * nc);  // g2 is unclipped, as c was
    }
}

TEST(OptimCuda, NonFiniteNormLeavesGradientsUnchanged) {
  STRATA_REQUIRE_GPU();
  auto g = params_with_grads(gpu(), DType::f32, 1.0);
  Tensor bad = host(g[1].grad()).clone();
  bad.data<float>()[7] = NAN;
  g[1].set_grad(bad.to(gpu()));
  std::vector<Tensor> before;
  for (const Tensor& p : g) before.push_back(host(p.grad()).clone());
  EXPECT_TRUE(std::isnan(optim::clip_grad_norm(g, 0.1)));
  for (size_t i = 0; i < g.size(); ++i) EXPECT_TRUE(bitwise_equal(g[i].grad(), before[i])) << i;
}

// ---- a few training steps -----------------------------------------------------------------------

TEST(TrainCuda, AdamWStepsFollowTheCpu) {
  STRATA_REQUIRE_GPU();
  models::DecoderConfig c;
  c.vocab = 64;
  c.d_model = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.d_ff = 64;
  c.max_seq = 32;
  models::DecoderLM mc(c, 11), mg(c, 11);
  mg.to(gpu());
  auto named = [](const models::Module& m) {
    std::vector<optim::NamedParam> out;
    for (const auto& [name, p] : m.named_parameters()) out.push_back({name, p});
    return optim::make_param_groups(out, optim::Hyper{1e-3, 0.1, 0.9, 0.95, 1e-8});
  };
  optim::AdamW oc(named(mc)), og(named(mg));
  for (int step = 0; step < 4; ++step) {
    const Tensor ids = random_ids(4, 16, c.vocab, 100 + uint64_t(step));
    const Tensor tgt = random_ids(4, 16, c.vocab, 200 + uint64_t(step));
    Tensor lc = mc.loss(ids, tgt), lg = mg.loss(ids.to(gpu()), tgt.to(gpu()));
    const double vc = lc.item<double>(), vg = host(lg).item<double>();
    EXPECT_LE(std::abs(vg - vc), (step == 0 ? 1e-4 : 1e-3) * std::abs(vc)) << "step " << step;
    lc.backward();
    lg.backward();
    const double nc = optim::clip_grad_norm(oc, 1.0), ng = optim::clip_grad_norm(og, 1.0);
    EXPECT_LE(std::abs(ng - nc), 1e-3 * nc) << "step " << step;
    oc.step();
    og.step();
    oc.zero_grad();
    og.zero_grad();
  }
  for (const auto& [name, p] : mc.named_parameters())
    EXPECT_LE(rel_err(mg.parameter(name), p), 1e-3) << name;
}

// ---- the trainer and its checkpoints ------------------------------------------------------------

// The trainer tests' corpus and decoder, shortened (12 steps, accumulation 2, no dropout, no
// evaluation or periodic saves), on the given device.
struct TinyData {
  train::fixtures::TinyCorpus corpus{"train_cuda_test"};
  train::TrainOptions options(const std::string& run, const std::string& device) const {
    train::TrainOptions o = corpus.decoder_options(run);
    o.device = device;
    o.grad_accum = 2;
    o.model.decoder.dropout = 0.0;
    o.warmup_steps = 2;
    o.budget = 12;
    o.log_every = 4;
    o.eval_every = 0;
    o.save_every = 0;
    o.sample_tokens = 0;
    return o;
  }
  const std::filesystem::path& root() const { return corpus.root(); }
};

train::TrainResult train_run(const train::TrainOptions& o) {
  std::ostringstream log;
  return train::train(o, log);
}

void expect_losses_close(const std::vector<double>& a, const std::vector<double>& b, double tol,
                         const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_LE(std::abs(a[i] - b[i]), tol * std::abs(b[i])) << what << " step " << i;
}

TEST(TrainCuda, TrainerOnTheGpuFollowsTheCpu) {
  STRATA_REQUIRE_GPU();
  const TinyData data;
  train::TrainOptions og = data.options("gpu", "cuda"), oc = data.options("cpu", "cpu");
  og.sample_tokens = 8;  // the end-of-run sample runs on a CPU copy of the GPU model
  const train::TrainResult g = train_run(og), c = train_run(oc);
  EXPECT_EQ(g.step, 12);
  expect_losses_close(g.losses, c.losses, 1e-3, "gpu vs cpu");
  EXPECT_NEAR(g.valid_loss, c.valid_loss, 1e-3 * c.valid_loss);
  EXPECT_FALSE(g.sample.empty());
  std::ifstream metrics(fs::path(og.run_dir) / "metrics.jsonl");
  std::stringstream text;
  text << metrics.rdbuf();
  EXPECT_NE(text.str().find("reserved_bytes"), std::string::npos);
}

// The loss and norm are read back late on a GPU, but always before a save, so a diverging run
// stops with the same error as on the CPU and leaves its earlier checkpoints intact.
TEST(TrainCuda, DivergenceStopsBeforeSaving) {
  STRATA_REQUIRE_GPU();
  const TinyData data;
  train::TrainOptions o = data.options("diverge", "cuda");
  o.lr = 1e30;
  o.warmup_steps = 0;
  o.save_every = 1;
  o.clip = 0;
  try {
    train_run(o);
    FAIL() << "training with lr 1e30 did not stop";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("stopping without saving"), std::string::npos) << e.what();
  }
  // Whatever was saved before the divergence still verifies.
  std::string warnings;
  if (auto latest = train::find_latest_checkpoint(o.run_dir, &warnings)) {
    EXPECT_NO_THROW(train::load_checkpoint(*latest));
  }
  EXPECT_TRUE(warnings.empty()) << warnings;
}

TEST(TrainCuda, CheckpointsMoveBetweenDevices) {
  STRATA_REQUIRE_GPU();
  const TinyData data;
  auto first_half = [&](const std::string& dir, const std::string& device) {
    train::TrainOptions o = data.options(dir, device);
    o.stop_after = 6;  // saves step 6 and stops
    EXPECT_EQ(train_run(o).step, 6) << dir;
    return fs::path(o.run_dir);
  };
  auto copy_run = [&](const fs::path& from, const std::string& to) {
    fs::copy(from, data.root() / to, fs::copy_options::recursive);
  };
  auto second_half = [&](const std::string& dir, const std::string& device) {
    const train::TrainResult r = train_run(data.options(dir, device));  // resume auto
    EXPECT_EQ(r.resumed_from, 6) << dir;
    EXPECT_EQ(r.step, 12) << dir;
    return r.losses;
  };

  // Saved on the GPU: host tensors with the CPU checkpoint's names, shapes and dtypes.
  const fs::path g = first_half("g", "cuda");
  const fs::path c = first_half("c", "cpu");
  const train::CheckpointState sg = train::load_checkpoint(g / train::checkpoint_dir_name(6));
  const train::CheckpointState sc = train::load_checkpoint(c / train::checkpoint_dir_name(6));
  ASSERT_EQ(sg.model.size(), sc.model.size());
  for (const auto& [name, t] : sc.model) {
    const Tensor& u = sg.model.at(name);
    EXPECT_EQ(u.device(), Device::cpu()) << name;
    EXPECT_EQ(u.dtype(), t.dtype()) << name;
    EXPECT_EQ(u.shape(), t.shape()) << name;
    EXPECT_LE(rel_err(u, t), 1e-3) << name;
  }
  ASSERT_EQ(sg.optim.size(), sc.optim.size());
  for (const auto& [name, states] : sc.optim)
    for (const auto& [k, t] : states) {
      EXPECT_EQ(sg.optim.at(name).at(k).dtype(), t.dtype()) << name << "/" << k;
      EXPECT_EQ(sg.optim.at(name).at(k).shape(), t.shape()) << name << "/" << k;
    }
  EXPECT_EQ(sg.ints.at("optimizer_steps"), 6);

  // The GPU checkpoint resumed on the CPU twice: bit for bit the same continuation; resumed on
  // the GPU: within the tolerance of the CPU continuation.
  copy_run(g, "g_cpu1");
  copy_run(g, "g_cpu2");
  const auto g_cpu1 = second_half("g_cpu1", "cpu");
  const auto g_cpu2 = second_half("g_cpu2", "cpu");
  EXPECT_EQ(g_cpu1, g_cpu2);
  expect_losses_close(second_half("g", "cuda"), g_cpu1, 1e-3, "GPU checkpoint: gpu vs cpu");

  // A CPU checkpoint resumed on the GPU, against its CPU continuation.
  copy_run(c, "c_gpu");
  const auto c_gpu = second_half("c_gpu", "cuda");
  expect_losses_close(c_gpu, second_half("c", "cpu"), 1e-3, "CPU checkpoint: gpu vs cpu");
}

}  // namespace
}  // namespace strata::model_test
