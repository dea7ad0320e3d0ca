// The decoder against a plain torch.nn model written from the same spec
// (tests/fixtures/make_decoder.py): logits, loss and every parameter gradient.
#include <gtest/gtest.h>

#include "core/io/hdf5_file.h"
#include "test_util.h"

namespace strata::models {
namespace {

using testing::rel_err;

struct Result {
  double loss_err = 0, logits_err = 0, worst_grad_err = 0;
  std::string worst_grad;
};

Result run_parity(DType dtype) {
  auto f =
      io::H5File::open(std::string(STRATA_FIXTURE_DIR) + "/decoder.h5", io::H5File::Mode::Read);
  DecoderConfig cfg;
  cfg.vocab = f.attr_int("/", "vocab");
  cfg.d_model = f.attr_int("/", "d_model");
  cfg.n_layers = f.attr_int("/", "n_layers");
  cfg.n_heads = f.attr_int("/", "n_heads");
  cfg.n_kv_heads = f.attr_int("/", "n_kv_heads");
  cfg.d_ff = f.attr_int("/", "d_ff");
  cfg.rope_base = f.attr_double("/", "rope_base");
  cfg.norm_eps = f.attr_double("/", "norm_eps");
  cfg.max_seq = 16;
  DecoderLM model(cfg, 0);
  model.to(dtype);
  const auto params = model.named_parameters();
  EXPECT_EQ(f.list("/model").size(), params.size());
  for (auto& [name, t] : params) model.load_parameter(name, f.read("/model/" + name));

  const Tensor ids = f.read("/batch/ids"), targets = f.read("/batch/targets");
  Tensor logits = model.forward(ids);
  Tensor loss = cross_entropy(logits, targets);
  loss.backward();
  Result r;
  r.logits_err = rel_err(logits, f.read("/logits"));
  r.loss_err = rel_err(loss, f.read("/loss"));
  EXPECT_EQ(logits.dtype(), dtype);
  for (auto& [name, t] : params) {
    EXPECT_TRUE(t.grad().defined()) << name;
    if (!t.grad().defined()) continue;
    const double e = rel_err(t.grad(), f.read("/grad/" + name));
    if (e >= r.worst_grad_err) r.worst_grad_err = e, r.worst_grad = name;
  }
  // loss() is the same computation.
  model.zero_grad();
  EXPECT_LT(rel_err(model.loss(ids, targets), loss), dtype == DType::f64 ? 1e-15 : 1e-7);
  return r;
}

TEST(DecoderParityTest, MatchesTorchInF32) {
  const Result r = run_parity(DType::f32);
  RecordProperty("logits_rel_err", std::to_string(r.logits_err));
  std::printf("f32: loss %.3g, logits %.3g, worst grad %.3g (%s)\n", r.loss_err, r.logits_err,
              r.worst_grad_err, r.worst_grad.c_str());
  EXPECT_LT(r.loss_err, 1e-5);
  EXPECT_LT(r.logits_err, 1e-5);
  EXPECT_LT(r.worst_grad_err, 1e-4) << r.worst_grad;
}

TEST(DecoderParityTest, MatchesTorchInF64) {
  const Result r = run_parity(DType::f64);
  std::printf("f64: loss %.3g, logits %.3g, worst grad %.3g (%s)\n", r.loss_err, r.logits_err,
              r.worst_grad_err, r.worst_grad.c_str());
  EXPECT_LT(r.loss_err, 1e-10);
  EXPECT_LT(r.logits_err, 1e-10);
  EXPECT_LT(r.worst_grad_err, 1e-10) << r.worst_grad;
}

}  // namespace
}  // namespace strata::models
