// Reusable blocks against direct compositions of core ops.
#include <gtest/gtest.h>

#include "core/ops.h"
#include "models/attention.h"
#include "models/feed_forward.h"
#include "models/layer_norm.h"
#include "models/lm_head.h"
#include "test_util.h"

namespace strata::models {
namespace {

using testing::rel_err;

Tensor randx(const Shape& s, uint64_t step) {
  return randn(s, RandomKey{9, uint32_t(RngStream::Test), step, 0}, DType::f64);
}

TEST(BlocksTest, LinearWithBias) {
  Linear l(5, 3, true, Init::normal(1.0), Init::normal(1.0));
  l.init_parameters(1);
  l.to(DType::f64);
  Tensor x = randx({2, 4, 5}, 0);
  Tensor want = matmul(x, l.weight().t()) + l.bias();
  EXPECT_LT(rel_err(l.forward(x), want), 1e-14);
  EXPECT_EQ(l.num_parameters(), 18);
}

TEST(BlocksTest, FeedForwardKinds) {
  for (FFNKind kind : {FFNKind::Gelu, FFNKind::GatedGelu, FFNKind::SwiGLU}) {
    FeedForwardConfig c;
    c.d_model = 6;
    c.d_ff = 10;
    c.kind = kind;
    c.gelu_tanh = kind == FFNKind::GatedGelu;
    FeedForward f(c);
    f.init_parameters(2);
    f.to(DType::f64);
    Tensor x = randx({3, 6}, 1);
    Tensor up = linear(x, f.parameter("up_proj.weight"));
    Tensor h;
    if (kind == FFNKind::Gelu) h = gelu(up, false);
    if (kind == FFNKind::GatedGelu) h = gelu(linear(x, f.parameter("gate_proj.weight")), true) * up;
    if (kind == FFNKind::SwiGLU) h = silu(linear(x, f.parameter("gate_proj.weight"))) * up;
    EXPECT_LT(rel_err(f.forward(x), linear(h, f.parameter("down_proj.weight"))), 1e-13);
    EXPECT_EQ(f.has_parameter("gate_proj.weight"), kind != FFNKind::Gelu);
  }
}

TEST(BlocksTest, LayerNormWithAndWithoutBias) {
  LayerNorm with(8, 1e-5, true), without(8, 1e-5, false);
  EXPECT_EQ(with.num_parameters(), 16);
  EXPECT_EQ(without.num_parameters(), 8);
  Tensor x = randx({4, 8}, 2).to(DType::f32);
  Tensor mu = mean(x, {-1}, true);
  Tensor var = mean(square(x - mu), {-1}, true);
  EXPECT_LT(rel_err(without.forward(x), (x - mu) * rsqrt(var + 1e-5)), 1e-5);
}

// Grouped-query attention equals plain multi-head attention whose k/v projections repeat each
// kv head's rows for its group of query heads.
TEST(BlocksTest, GroupedQueryEqualsRepeatedHeads) {
  AttentionConfig g;
  g.d_model = 16;
  g.n_heads = 4;
  g.n_kv_heads = 2;
  g.causal = true;
  g.rope = true;
  AttentionConfig m = g;
  m.n_kv_heads = 4;
  MultiHeadAttention gqa(g), mha(m);
  gqa.init_parameters(3);
  gqa.to(DType::f64);
  mha.to(DType::f64);
  for (const char* n : {"q_proj.weight", "o_proj.weight"}) mha.load_parameter(n, gqa.parameter(n));
  for (const char* n : {"k_proj.weight", "v_proj.weight"}) {
    Tensor w = gqa.parameter(n).view({2, 1, 4, 16}).expand({2, 2, 4, 16}).reshape({16, 16});
    mha.load_parameter(n, w);
  }
  Tensor x = randx({2, 5, 16}, 3);
  EXPECT_LT(rel_err(gqa.forward(x), mha.forward(x)), 1e-13);
}

// Causality: changing a later token leaves earlier outputs unchanged.
TEST(BlocksTest, CausalAttentionIgnoresTheFuture) {
  AttentionConfig c;
  c.d_model = 8;
  c.n_heads = 2;
  c.causal = true;
  c.rope = true;
  MultiHeadAttention a(c);
  a.init_parameters(4);
  a.to(DType::f64);
  Tensor x = randx({1, 6, 8}, 4);
  Tensor y = x.clone();
  y.narrow(1, 5, 1).copy_(randx({1, 1, 8}, 5));
  EXPECT_LT(rel_err(a.forward(x).narrow(1, 0, 5), a.forward(y).narrow(1, 0, 5)), 1e-15);
  EXPECT_GT(rel_err(a.forward(x).narrow(1, 5, 1), a.forward(y).narrow(1, 5, 1)), 1e-3);
}

TEST(BlocksTest, CrossAttentionReadsMemory) {
  AttentionConfig c;
  c.d_model = 8;
  c.n_heads = 2;
  c.scale = 1.0;  // T5
  MultiHeadAttention a(c);
  a.init_parameters(5);
  a.to(DType::f64);
  Tensor x = randx({2, 3, 8}, 6), mem = randx({2, 7, 8}, 7);
  AttentionContext ctx;
  ctx.memory = mem;
  Tensor out = a.forward(x, ctx);
  EXPECT_EQ(out.shape(), Shape({2, 3, 8}));
  // Reference: unfused softmax(q k^T) v with unscaled scores.
  Tensor q = linear(x, a.parameter("q_proj.weight")).view({2, 3, 2, 4}).transpose(1, 2);
  Tensor k = linear(mem, a.parameter("k_proj.weight")).view({2, 7, 2, 4}).transpose(1, 2);
  Tensor v = linear(mem, a.parameter("v_proj.weight")).view({2, 7, 2, 4}).transpose(1, 2);
  Tensor o = matmul(softmax(matmul(q, k.t()), -1), v).transpose(1, 2).reshape({2, 3, 8});
  EXPECT_LT(rel_err(out, linear(o, a.parameter("o_proj.weight"))), 1e-13);
}

TEST(BlocksTest, TiedHeadSharesTheEmbedding) {
  auto emb = std::make_shared<Embedding>(10, 4, Init::normal(1.0));
  emb->init_parameters(6);
  LMHead tied(emb), own(4, 10, Init::normal(1.0));
  EXPECT_EQ(tied.num_parameters(), 0);
  EXPECT_EQ(own.num_parameters(), 40);
  EXPECT_TRUE(tied.weight().is_same(emb->weight()));
  Tensor h = randx({2, 4}, 8).to(DType::f32);
  EXPECT_LT(rel_err(tied.forward(h), matmul(h, emb->weight().t())), 1e-6);
}

}  // namespace
}  // namespace strata::models
