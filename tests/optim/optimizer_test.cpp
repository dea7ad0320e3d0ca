#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/ops.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/kernels/adam_kernel.h"

namespace strata::optim {
namespace {

Tensor param(const Shape& shape, uint64_t seed, DType dt = DType::f32) {
  Tensor p = randn(shape, RandomKey{seed, 1, 0, 0}, DType::f32).to(dt);
  p.set_requires_grad(true);
  return p;
}

Tensor grad_for(const Tensor& p, uint64_t seed, int step) {
  return randn(p.shape(), RandomKey{seed, 2, uint64_t(step), 0}, DType::f32).to(p.dtype());
}

std::vector<NamedParam> model(DType dt = DType::f32) {
  return {{"blocks.0.attn.wq.weight", param({16, 8}, 1, dt)},
          {"blocks.0.attn.wq.bias", param({16}, 2, dt)},
          {"blocks.0.norm.weight", param({8}, 3, dt)},
          {"embed.weight", param({40000}, 4, dt).view({200, 200})}};
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.contiguous().raw_data(), b.contiguous().raw_data(),
                     size_t(a.numel()) * a.element_size()) == 0;
}

void feed(const std::vector<NamedParam>& ps, int step) {
  for (size_t i = 0; i < ps.size(); ++i) {
    Tensor p = ps[i].param;
    p.set_grad(grad_for(p, 100 + i, step));
  }
}

TEST(NameRule, NormsBiasesAndVectorsTakeNoDecay) {
  const Tensor mat = zeros({4, 4});
  const Tensor vec = zeros({4});
  EXPECT_TRUE(no_decay("enc.layer.0.attention.output.LayerNorm.weight", mat));
  EXPECT_TRUE(no_decay("decoder.final_norm.weight", mat));
  EXPECT_TRUE(no_decay("encoder.block.0.layer.0.layer_norm.weight", mat));
  EXPECT_TRUE(no_decay("mlp.fc1.bias", mat));
  EXPECT_TRUE(no_decay("attn.qkv_bias", mat));
  EXPECT_TRUE(no_decay("embeddings.pos_scale", vec));
  EXPECT_FALSE(no_decay("mlp.fc1.weight", mat));
  EXPECT_FALSE(no_decay("embed.weight", mat));
  // nanoT5's rule is a substring match: the relative position bias table takes no decay.
  EXPECT_TRUE(no_decay("encoder.layers.0.rel_bias.weight", mat));
  EXPECT_TRUE(no_decay("decoder.layers.3.rel_bias.weight", mat));
  EXPECT_FALSE(no_decay("encoder.layers.0.attn.q_proj.weight", mat));
}

TEST(NameRule, GroupsKeepOrderAndZeroDecay) {
  Hyper h;
  h.weight_decay = 0.01;
  auto groups = make_param_groups(model(), h);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].params[0].name, "blocks.0.attn.wq.weight");
  EXPECT_EQ(groups[0].params[1].name, "embed.weight");
  EXPECT_EQ(groups[0].hyper.weight_decay, 0.01);
  EXPECT_EQ(groups[1].params[0].name, "blocks.0.attn.wq.bias");
  EXPECT_EQ(groups[1].params[1].name, "blocks.0.norm.weight");
  EXPECT_EQ(groups[1].hyper.weight_decay, 0.0);
}

TEST(Optimizer, StateNamesShapesAndCheckpointRoundTripIsBitExact) {
  Hyper h;
  h.lr = 1e-2, h.weight_decay = 0.1;
  for (int which = 0; which < 2; ++which) {
    auto make = [&](const std::vector<NamedParam>& ps) -> std::unique_ptr<Optimizer> {
      if (which == 0) return std::make_unique<AdamW>(make_param_groups(ps, h));
      return std::make_unique<AdamWScale>(make_param_groups(ps, h));
    };
    auto straight = model();
    auto opt = make(straight);
    const auto st0 = opt->state();
    ASSERT_EQ(st0.size(), 8u);
    EXPECT_EQ(st0.at("embed.weight/exp_avg").shape(), (Shape{200, 200}));
    EXPECT_EQ(st0.at("blocks.0.norm.weight/exp_avg_sq").dtype(), DType::f32);
    for (int s = 0; s < 6; ++s) {
      feed(straight, s);
      opt->step();
    }

    // 3 steps, "save" (clone params and state), fresh objects, "load", 3 more.
    auto first = model();
    auto opt1 = make(first);
    for (int s = 0; s < 3; ++s) {
      feed(first, s);
      opt1->step();
    }
    std::map<std::string, Tensor> saved;
    for (auto& [k, v] : opt1->state()) saved[k] = v.clone();
    auto resumed = model();
    {
      NoGradGuard ng;
      for (size_t i = 0; i < resumed.size(); ++i) resumed[i].param.copy_(first[i].param);
    }
    auto opt2 = make(resumed);
    opt2->load_state(saved, opt1->step_count());
    EXPECT_EQ(opt2->step_count(), 3);
    for (int s = 3; s < 6; ++s) {
      feed(resumed, s);
      opt2->step();
    }
    for (size_t i = 0; i < straight.size(); ++i)
      EXPECT_TRUE(bitwise_equal(straight[i].param, resumed[i].param))
          << opt->name() << " " << straight[i].name;
    const auto a = opt->state(), b = opt2->state();
    for (const auto& [k, v] : a) EXPECT_TRUE(bitwise_equal(v, b.at(k))) << k;
  }
}

TEST(Optimizer, LoadStateRejectsMissingUnknownAndMisshapen) {
  auto ps = model();
  AdamW opt(make_param_groups(ps, Hyper{}));
  auto st = opt.state();
  auto missing = st;
  missing.erase("embed.weight/exp_avg");
  EXPECT_THROW(opt.load_state(missing, 1), Error);
  auto extra = st;
  extra["nope/exp_avg"] = zeros({1});
  EXPECT_THROW(opt.load_state(extra, 1), Error);
  auto bad = st;
  bad["embed.weight/exp_avg"] = zeros({3});
  EXPECT_THROW(opt.load_state(bad, 1), Error);
}

TEST(Optimizer, SkipsParamsWithoutGradAndZeroGrad) {
  auto ps = model();
  const Tensor before = ps[1].param.clone();
  AdamW opt(make_param_groups(ps, Hyper{}));
  feed(ps, 0);
  ps[1].param.set_grad(Tensor());
  opt.step();
  EXPECT_TRUE(bitwise_equal(before, ps[1].param));
  EXPECT_EQ(opt.state().at("blocks.0.attn.wq.bias/exp_avg").to_vector<float>()[0], 0.0f);
  opt.zero_grad(false);
  EXPECT_EQ(ps[0].param.grad().to_vector<float>()[3], 0.0f);
  opt.zero_grad();
  EXPECT_FALSE(ps[0].param.grad().defined());
}

TEST(Optimizer, SetLrAndConstructionErrors) {
  auto ps = model();
  AdamW opt(make_param_groups(ps, Hyper{}));
  opt.set_lr(0.25);
  EXPECT_EQ(opt.lr(0), 0.25);
  EXPECT_EQ(opt.lr(1), 0.25);
  opt.set_lr(1, 0.5);
  EXPECT_EQ(opt.lr(1), 0.5);
  EXPECT_THROW(opt.set_lr(-1.0), Error);
  EXPECT_THROW(opt.lr(2), Error);
  Hyper bad;
  bad.beta1 = 1.0;
  EXPECT_THROW(AdamW(make_param_groups(ps, bad)), Error);
  std::vector<NamedParam> dup = {{"a", ps[0].param}, {"a", ps[1].param}};
  EXPECT_THROW(AdamW({ParamGroup{dup, Hyper{}}}), Error);
}

// f64 parameters keep f64 state; the f32 run agrees with it to f32 rounding.
TEST(Optimizer, F64AndBf16ParamsFollowTheF32Trajectory) {
  Hyper h;
  h.lr = 1e-2, h.weight_decay = 0.1;
  for (int which = 0; which < 2; ++which) {
    std::vector<std::vector<NamedParam>> runs = {model(DType::f32), model(DType::f64),
                                                 model(DType::bf16)};
    for (auto& ps : runs) {
      std::unique_ptr<Optimizer> opt;
      if (which == 0)
        opt = std::make_unique<AdamW>(make_param_groups(ps, h));
      else
        opt = std::make_unique<AdamWScale>(make_param_groups(ps, h));
      EXPECT_EQ(opt->state().at("embed.weight/exp_avg").dtype(),
                ps[0].param.dtype() == DType::f64 ? DType::f64 : DType::f32);
      for (int s = 0; s < 5; ++s) {
        // Same gradient values for every dtype.
        for (size_t i = 0; i < ps.size(); ++i) {
          Tensor p = ps[i].param;
          p.set_grad(grad_for(p, 100 + i, s).to(DType::f32).to(p.dtype()));
        }
        opt->step();
      }
    }
    for (size_t i = 0; i < runs[0].size(); ++i) {
      const auto a = runs[0][i].param.to(DType::f64).to_vector<double>();
      const auto b = runs[1][i].param.to_vector<double>();
      const auto c = runs[2][i].param.to(DType::f64).to_vector<double>();
      double e64 = 0, e16 = 0;
      for (size_t k = 0; k < a.size(); ++k) {
        e64 = std::max(e64, std::abs(a[k] - b[k]));
        e16 = std::max(e16, std::abs(c[k] - b[k]) / std::max(1.0, std::abs(b[k])));
      }
      EXPECT_LT(e64, 2e-6) << runs[0][i].name;
      EXPECT_LT(e16, 3e-2) << runs[0][i].name;  // bf16 grads and params: 8-bit mantissa
    }
  }
}

TEST(AdamKernel, Avx2AndScalarPathsAreBitIdentical) {
  if (!kernels::adam_update_avx2_available()) GTEST_SKIP() << "no AVX2";
  const int64_t n = 50'003;
  for (bool lerp : {true, false}) {
    kernels::AdamScalars<float> s;
    s.pre_decay = 0.999f, s.lerp_m = lerp, s.b1 = 0.9f, s.w1 = 0.1f, s.b2 = 0.98f, s.w2 = 0.02f;
    s.denom_div = 0.3f, s.eps = 1e-6f, s.neg_step = -0.01f, s.post_decay = lerp ? 0.0f : -1e-3f;
    std::vector<float> p(n), g(n), m(n), v(n);
    for (int64_t i = 0; i < n; ++i) {
      p[i] = std::sin(0.1f * float(i));
      g[i] = std::cos(0.37f * float(i));
      m[i] = 0.01f * std::sin(0.7f * float(i));
      v[i] = 1e-4f * (1.0f + std::cos(0.2f * float(i)));
    }
    auto p2 = p, m2 = m, v2 = v;
    kernels::adam_update_avx2(p.data(), g.data(), m.data(), v.data(), n, s);
    kernels::adam_update_scalar(p2.data(), g.data(), m2.data(), v2.data(), n, s);
    EXPECT_EQ(std::memcmp(p.data(), p2.data(), n * 4), 0);
    EXPECT_EQ(std::memcmp(m.data(), m2.data(), n * 4), 0);
    EXPECT_EQ(std::memcmp(v.data(), v2.data(), n * 4), 0);
  }
}

TEST(AdamKernel, SumSquaresIsExactishAndThreadCountIndependent) {
  const int64_t n = 1'000'003;
  std::vector<float> x(n);
  double ref = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::sin(0.001f * float(i)) * 3.0f;
    ref += double(x[i]) * double(x[i]);
  }
  const double a = kernels::sum_squares(x.data(), n);
  EXPECT_NEAR(a, ref, 1e-12 * ref);
  EXPECT_EQ(a, kernels::sum_squares_scalar(x.data(), n));
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const double one = kernels::sum_squares(x.data(), n);
  omp_set_num_threads(threads);
  EXPECT_EQ(a, one);
}

TEST(Clip, NormClipsLikeTorchAndLeavesSmallGradsAlone) {
  auto ps = model();
  feed(ps, 0);
  double ref = 0;
  for (auto& np : ps)
    for (float g : np.param.grad().to_vector<float>()) ref += double(g) * double(g);
  ref = std::sqrt(ref);
  EXPECT_NEAR(grad_norm({ps[0].param, ps[1].param, ps[2].param, ps[3].param}), ref, 1e-12 * ref);

  const Tensor g0 = ps[0].param.grad().clone();
  std::vector<Tensor> params;
  for (auto& np : ps) params.push_back(np.param);
  EXPECT_NEAR(clip_grad_norm(params, 2.0 * ref), ref, 1e-12 * ref);
  EXPECT_TRUE(bitwise_equal(g0, ps[0].param.grad()));

  EXPECT_NEAR(clip_grad_norm(params, 1.0), ref, 1e-12 * ref);
  EXPECT_NEAR(grad_norm(params), 1.0 / (1.0 + 1e-6 / ref), 1e-6);
  const float c = float(1.0 / (ref + 1e-6));
  EXPECT_FLOAT_EQ(ps[0].param.grad().to_vector<float>()[5], g0.to_vector<float>()[5] * c);
  EXPECT_THROW(clip_grad_norm(params, 0.0), Error);
}

TEST(Clip, NonFiniteNormIsReportedAndGradsUntouched) {
  auto ps = model();
  feed(ps, 0);
  {
    NoGradGuard ng;
    Tensor g = ps[1].param.grad();
    g.data<float>()[2] = std::nanf("");
  }
  const Tensor g0 = ps[0].param.grad().clone();
  std::vector<Tensor> params;
  for (auto& np : ps) params.push_back(np.param);
  EXPECT_TRUE(std::isnan(clip_grad_norm(params, 1.0)));
  EXPECT_TRUE(bitwise_equal(g0, ps[0].param.grad()));
}

TEST(AdamWScale, RmsScalesTheStep) {
  // One step from zero state: m/(sqrt(v)+eps) = sign(g) * |g|(1-b1) / (|g| sqrt(1-b2) + eps),
  // times lr*sqrt(1-b2)/(1-b1) * max(1e-3, rms) -> about lr * rms * sign(g).
  std::vector<NamedParam> ps = {{"w", param({64, 64}, 7)}, {"tiny", param({64, 64}, 8)}};
  {
    NoGradGuard ng;
    ps[0].param.mul_(4.0);
    ps[1].param.mul_(1e-6);
  }
  const double rms0 = AdamWScale::rms(ps[0].param);
  Hyper h;
  h.lr = 1e-2, h.eps = 1e-30;
  AdamWScale opt({ParamGroup{ps, h}});
  const auto before0 = ps[0].param.to_vector<float>();
  const auto before1 = ps[1].param.to_vector<float>();
  feed(ps, 0);
  const auto g0 = ps[0].param.grad().to_vector<float>();
  const auto g1 = ps[1].param.grad().to_vector<float>();
  opt.step();
  const auto after0 = ps[0].param.to_vector<float>();
  const auto after1 = ps[1].param.to_vector<float>();
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_NEAR(before0[i] - after0[i], 1e-2 * rms0 * (g0[i] > 0 ? 1 : -1), 1e-5 * rms0);
    EXPECT_NEAR(before1[i] - after1[i], 1e-2 * 1e-3 * (g1[i] > 0 ? 1 : -1), 1e-9);
  }
}

}  // namespace
}  // namespace strata::optim
