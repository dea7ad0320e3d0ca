// Whole models on the GPU against the CPU: the decoder (untied and tied, with and without
// dropout), BERT (with padding) and T5 tiny configs. The model is built on the CPU, its loss and
// gradients taken there, then moved with Module::to(cuda) and run again on the same batch.
//
// Tolerances (rel_err: max |gpu - cpu| / max |cpu| per tensor, and the loss relative):
//   f32: 1e-4 for the loss and every parameter gradient (f32 GEMMs without TF32, different
//        summation orders);
//   bf16 compute (precision = bf16, f32 master weights): 3e-2, a first bound (bf16 rounding of
//        matmul outputs, where one ulp is 2^-8 relative, compounded over two blocks).
// Dropout masks are Philox draws of the element index on both devices, so a model with dropout
// matches within the f32 tolerance too.
#include <gtest/gtest.h>

#include "models/bert.h"
#include "models/decoder_lm.h"
#include "models/precision.h"
#include "models/t5.h"
#include "tests/cuda/model_compare_util.h"

namespace strata::model_test {
namespace {

constexpr double kF32Tol = 1e-4;
constexpr double kBf16Tol = 3e-2;

models::DecoderConfig tiny_decoder(bool tied, double dropout) {
  models::DecoderConfig c;
  c.vocab = 64;
  c.d_model = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.d_ff = 64;
  c.max_seq = 32;
  c.tie_embeddings = tied;
  c.dropout = dropout;
  return c;
}

// Runs `loss_fn(device)` on the CPU, moves `m` to the GPU, runs it again, compares, and moves the
// model back, whose parameters must then be the CPU's bit for bit (the moves copy, never round).
template <class LossFn>
void compare_devices(models::Module& m, LossFn&& loss_fn, double tol, const std::string& what) {
  std::map<std::string, Tensor> before;
  for (const auto& [name, p] : m.named_parameters()) before[name] = p.clone();
  const Grads cpu = loss_and_grads(m, [&] { return loss_fn(Device::cpu()); });
  m.to(gpu());
  EXPECT_EQ(m.device(), gpu());
  for (const auto& [name, p] : m.named_parameters()) {
    EXPECT_EQ(p.device(), gpu()) << name;
    EXPECT_TRUE(p.requires_grad()) << name;
  }
  const Grads on_gpu = loss_and_grads(m, [&] { return loss_fn(gpu()); });
  for (const auto& [name, p] : m.named_parameters()) {
    if (p.grad().defined()) {
      EXPECT_EQ(p.grad().device(), gpu()) << name;
    }
  }
  expect_close(on_gpu, cpu, tol, what);
  m.to(Device::cpu());
  for (const auto& [name, p] : m.named_parameters()) {
    EXPECT_EQ(p.device(), Device::cpu()) << name;
    EXPECT_TRUE(bitwise_equal(p, before.at(name))) << what << ": " << name << " after the trip";
  }
}

Tensor on(Device d, const Tensor& t) {
  return d.is_cpu() ? t : t.to(d);
}

TEST(ModelCuda, DecoderF32) {
  STRATA_REQUIRE_GPU();
  for (bool tied : {false, true}) {
    const models::DecoderConfig c = tiny_decoder(tied, 0.0);
    models::DecoderLM m(c, 3);
    const Tensor ids = random_ids(2, 16, c.vocab, 1), targets = random_ids(2, 16, c.vocab, 2);
    compare_devices(
        m, [&](Device d) { return m.loss(on(d, ids), on(d, targets)); }, kF32Tol,
        tied ? "decoder (tied)" : "decoder");
  }
}

TEST(ModelCuda, DecoderWithDropoutDrawsTheSameMasks) {
  STRATA_REQUIRE_GPU();
  const models::DecoderConfig c = tiny_decoder(false, 0.1);
  models::DecoderLM m(c, 3);
  m.set_step(5);
  const Tensor ids = random_ids(2, 16, c.vocab, 1), targets = random_ids(2, 16, c.vocab, 2);
  compare_devices(
      m, [&](Device d) { return m.loss(on(d, ids), on(d, targets)); }, kF32Tol,
      "decoder (dropout 0.1)");
}

TEST(ModelCuda, DecoderBf16Compute) {
  STRATA_REQUIRE_GPU();
  models::DecoderConfig c = tiny_decoder(false, 0.0);
  c.precision = models::Precision::bf16();
  models::DecoderLM m(c, 3);
  const Tensor ids = random_ids(2, 16, c.vocab, 1), targets = random_ids(2, 16, c.vocab, 2);
  compare_devices(
      m, [&](Device d) { return m.loss(on(d, ids), on(d, targets)); }, kBf16Tol,
      "decoder (bf16 compute)");
}

TEST(ModelCuda, BertF32WithPadding) {
  STRATA_REQUIRE_GPU();
  models::BertConfig c;
  c.vocab = 40;
  c.d_model = 16;
  c.n_layers = 2;
  c.n_heads = 2;
  c.d_ff = 32;
  c.max_seq = 12;
  models::BertMLM m(c, 7);
  // Row 1 ends in three pads; labels at some positions, -100 elsewhere.
  std::vector<int64_t> ids = random_ids(2, 12, c.vocab, 1, 1).to_vector<int64_t>();
  for (int64_t j = 9; j < 12; ++j) ids[size_t(12 + j)] = c.pad_id;
  std::vector<int64_t> labels(24, -100);
  for (size_t i : {1, 4, 7, 13, 16, 19}) labels[i] = int64_t((i * 7) % size_t(c.vocab));
  const Tensor x = from_vector(ids, {2, 12}), y = from_vector(labels, {2, 12});
  const Tensor mask = ne(x, scalar_tensor(double(c.pad_id), DType::i64));
  compare_devices(
      m, [&](Device d) { return m.mlm_loss(on(d, x), on(d, y), on(d, mask)); }, kF32Tol, "bert");
}

TEST(ModelCuda, T5F32) {
  STRATA_REQUIRE_GPU();
  for (bool shared : {true, false}) {
    models::T5Config c = models::t5_preset("t5-tiny");
    c.vocab = 50;
    c.share_position_bias = shared;
    models::T5Model m(c, 7);
    const Tensor ids = random_ids(2, 9, c.vocab, 1, 2), labels = random_ids(2, 6, c.vocab, 2, 2);
    compare_devices(
        m, [&](Device d) { return m.loss(on(d, ids), on(d, labels)); }, kF32Tol,
        shared ? "t5 (shared bias)" : "t5 (per-block bias)");
  }
}

}  // namespace
}  // namespace strata::model_test
