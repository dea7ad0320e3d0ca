// The decoder against a plain torch.nn model written from the same spec
// (tests/fixtures/make_decoder.py): logits, loss and every parameter gradient.
#include <gtest/gtest.h>

#include "core/io/hdf5_file.h"
#include "test_util.h"

namespace strata::models {
namespace {

using testing::rel_err;

testing::ParityResult run_parity(DType dtype) {
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
  EXPECT_EQ(logits.dtype(), dtype);
  const testing::ParityResult r = testing::compare_with_fixture(f, "", loss, logits, params);
  // loss() is the same computation.
  model.zero_grad();
  EXPECT_LT(rel_err(model.loss(ids, targets), loss), dtype == DType::f64 ? 1e-15 : 1e-7);
  return r;
}

TEST(DecoderParityTest, MatchesTorchInF32) {
  testing::expect_parity(run_parity(DType::f32), DType::f32);
}

TEST(DecoderParityTest, MatchesTorchInF64) {
  testing::expect_parity(run_parity(DType::f64), DType::f64);
}

}  // namespace
}  // namespace strata::models
