// Lion, Sophia-G and Adafactor against independent PyTorch references, and per-parameter step
// counts, against tests/fixtures/optim2.h5 (tests/fixtures/make_optim2.py: lion-pytorch, the
// Sophia authors' SophiaG, transformers' Adafactor, torch.optim.AdamW). Ten steps from the same
// parameters and gradients in f32 and in f64; one parameter has no gradient for its first three
// steps, so every optimizer whose update depends on t must count that parameter's own steps.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <memory>

#include "core/io/hdf5_file.h"
#include "core/ops.h"
#include "optim/adafactor.h"
#include "optim/adamw.h"
#include "optim/lion.h"
#include "optim/sophia.h"

namespace strata::optim {
namespace {

constexpr int kSteps = 10;

io::H5File fixture() {
  return io::H5File::open(STRATA_FIXTURE_DIR "/optim2.h5", io::H5File::Mode::Read);
}

struct OptRun {
  std::vector<NamedParam> params;
  std::unique_ptr<Optimizer> opt;
};

OptRun make_run(const io::H5File& f, const std::string& kase, DType dt) {
  OptRun r;
  for (const std::string& name : f.list("/params0")) {
    Tensor p = f.read("/params0/" + name).to(dt);
    p.set_requires_grad(true);
    r.params.push_back({name, p});
  }
  const std::string g = "/" + kase;
  Hyper h;
  h.lr = f.attr_double(g, "lr");
  h.beta1 = f.attr_double(g, "beta1");
  h.beta2 = f.attr_double(g, "beta2");
  h.eps = f.attr_double(g, "eps");
  h.weight_decay = f.attr_double(g, "weight_decay");
  auto groups = make_param_groups(r.params, h);
  const std::string kind = f.attr_string(g, "optimizer");
  const bool rms = f.attr_int(g, "rms_scale") != 0;
  if (kind == "adamw") {
    r.opt = std::make_unique<AdamW>(std::move(groups));
  } else if (kind == "adamwscale") {
    r.opt = std::make_unique<AdamWScale>(std::move(groups));
  } else if (kind == "lion") {
    r.opt = std::make_unique<Lion>(std::move(groups), rms);
  } else if (kind == "sophiag") {
    SophiaOptions so;
    so.rho = f.attr_double(g, "rho");
    so.batch_tokens = f.attr_double(g, "batch_tokens");
    so.rms_scale = rms;
    r.opt = std::make_unique<Sophia>(std::move(groups), so);
  } else {
    EXPECT_EQ(kind, "adafactor");
    AdafactorOptions ao;
    ao.relative_step = f.attr_int(g, "relative_step") != 0;
    ao.scale_parameter = f.attr_int(g, "scale_parameter") != 0;
    ao.warmup_init = f.attr_int(g, "warmup_init") != 0;
    ao.momentum = f.attr_int(g, "momentum") != 0;
    r.opt = std::make_unique<Adafactor>(std::move(groups), ao);
  }
  return r;
}

// max |ours - ref| / max |ref| over the tensor (the bound of tests/optim/parity_test.cpp).
double normwise(const Tensor& ours, const Tensor& ref) {
  const auto a = ours.to(DType::f64).to_vector<double>();
  const auto b = ref.to(DType::f64).to_vector<double>();
  double scale = 0.0, worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    scale = std::max(scale, std::abs(b[i]));
    worst = std::max(worst, std::abs(a[i] - b[i]));
  }
  return worst / scale;
}

void set_grads(const io::H5File& f, const std::string& root, int k, OptRun& r, DType dt) {
  const std::string dir = root + "/" + std::to_string(k);
  const std::vector<std::string> have = f.exists(dir) ? f.list(dir) : std::vector<std::string>{};
  for (NamedParam& np : r.params) {
    const bool given = std::find(have.begin(), have.end(), np.name) != have.end();
    np.param.set_grad(given ? f.read(dir + "/" + np.name).to(dt) : Tensor());
  }
}

// Returns the worst normwise error over the ten steps and every parameter.
double check_case(const std::string& kase, DType dt) {
  const double bound = dt == DType::f32 ? 1e-6 : 1e-12;
  const std::string dts = dt == DType::f32 ? "f32" : "f64";
  const io::H5File f = fixture();
  OptRun r = make_run(f, kase, dt);
  const int64_t every = f.attr_int("/", "hessian_every");
  std::vector<double> ref_win;
  auto* sophia = dynamic_cast<Sophia*>(r.opt.get());
  if (sophia) ref_win = f.read("/" + kase + "/" + dts + "/win_rate").to_vector<double>();
  double worst = 0;
  for (int k = 0; k < kSteps; ++k) {
    set_grads(f, "/grads", k, r, dt);
    r.opt->step();
    for (const NamedParam& np : r.params) {
      const Tensor ref = f.read("/" + kase + "/" + dts + "/" + std::to_string(k) + "/" + np.name);
      const double err = normwise(np.param, ref);
      worst = std::max(worst, err);
      EXPECT_LE(err, bound) << kase << " " << dts << " step " << k << " " << np.name;
    }
    if (sophia) {
      // Off by at most one coordinate whose ratio rounds across 1 in f32.
      EXPECT_NEAR(sophia->win_rate(), ref_win[size_t(k)],
                  1.01 / double(sophia->counted_coordinates()))
          << kase << " step " << k;
      if (k % every == every - 1) {
        set_grads(f, "/hgrads", k, r, dt);
        sophia->update_hessian();
      }
    }
  }
  EXPECT_EQ(r.opt->step_count(), kSteps);
  const std::string late = f.attr_string("/", "late_param");
  EXPECT_EQ(r.opt->param_steps().at(late), kSteps - f.attr_int("/", "late_from"));
  std::printf("[parity] %s %s: over %d steps max normwise relative error %.3g\n", kase.c_str(),
              dts.c_str(), kSteps, worst);
  return worst;
}

class OptimParity2 : public ::testing::TestWithParam<const char*> {};

TEST_P(OptimParity2, MatchesReferenceInF32) {
  check_case(GetParam(), DType::f32);
}
TEST_P(OptimParity2, MatchesReferenceInF64) {
  check_case(GetParam(), DType::f64);
}

INSTANTIATE_TEST_SUITE_P(Cases, OptimParity2,
                         ::testing::Values("adamw_late", "adamwscale_late", "lion", "lion_rms",
                                           "sophiag", "sophiag_rms", "adafactor",
                                           "adafactor_manual", "adafactor_warmup"),
                         [](const auto& info) { return std::string(info.param); });

// A parameter that first gets a gradient at step 4 takes its first AdamW step with t = 1: its
// value then equals a fresh AdamW's first step on it. With one global step count (t = 4) the
// bias corrections differ and this fails (the deviation issue 17 found: 9.5e-3 after 10 steps).
TEST(OptimParity2Steps, LateParameterStartsItsBiasCorrectionAtOne) {
  const io::H5File f = fixture();
  const std::string late = f.attr_string("/", "late_param");
  OptRun r = make_run(f, "adamw_late", DType::f64);
  for (int k = 0; k < 4; ++k) {
    set_grads(f, "/grads", k, r, DType::f64);
    r.opt->step();
  }
  Tensor fresh = f.read("/params0/" + late).to(DType::f64);
  fresh.set_requires_grad(true);
  Hyper h;
  h.lr = f.attr_double("/adamw_late", "lr");
  h.beta1 = f.attr_double("/adamw_late", "beta1");
  h.beta2 = f.attr_double("/adamw_late", "beta2");
  h.eps = f.attr_double("/adamw_late", "eps");
  h.weight_decay = f.attr_double("/adamw_late", "weight_decay");
  AdamW one({ParamGroup{{{late, fresh}}, h}});
  fresh.set_grad(f.read("/grads/3/" + late).to(DType::f64));
  one.step();
  for (const NamedParam& np : r.params)
    if (np.name == late) {
      EXPECT_EQ(normwise(np.param, fresh), 0.0);
    }
  EXPECT_EQ(r.opt->param_steps().at(late), 1);
  EXPECT_EQ(r.opt->step_count(), 4);
}

// bf16 parameters (f32 state and math) follow the f32 trajectory to bf16 rounding.
TEST(OptimParity2Steps, Bf16ParametersTrackF32) {
  for (const char* kase : {"lion", "sophiag", "adafactor_manual"}) {
    const io::H5File f = fixture();
    OptRun r16 = make_run(f, kase, DType::bf16);
    OptRun r32 = make_run(f, kase, DType::f32);
    for (int k = 0; k < kSteps; ++k) {
      set_grads(f, "/grads", k, r16, DType::bf16);
      set_grads(f, "/grads", k, r32, DType::f32);
      r16.opt->step();
      r32.opt->step();
    }
    for (size_t i = 0; i < r16.params.size(); ++i)
      EXPECT_LE(normwise(r16.params[i].param, r32.params[i].param), 3e-2)
          << kase << " " << r16.params[i].name;
  }
}

}  // namespace
}  // namespace strata::optim
