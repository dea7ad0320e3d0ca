// Tensor parallelism without MPI: what a rank builds needs no communication, so a stand-in group
// that only reports (rank, size) checks every rank's shards of whole models against the
// single-process model's numbers, the recorded shardings, loading a global tensor into a shard,
// the indivisibility errors, and that a group of one is the single-process model.
#include <gtest/gtest.h>

#include <string>

#include "core/ops.h"
#include "models/bert.h"
#include "models/decoder_lm.h"
#include "models/t5.h"
#include "models/tp_embedding.h"
#include "models/tp_linear.h"
#include "models/tp_lm_head.h"
#include "parallel/local_communicator.h"
#include "tests/models/test_util.h"
#include "tests/parallel/thread_group.h"

namespace strata::models {
namespace {

using testing::bitwise_equal;

// Every parameter of the TP model is its slice of the single-process one, bit for bit, and the
// two list the same names with the same global shapes.
void expect_shards_of(const Module& tp_model, const Module& single, int rank, int size) {
  const auto tp_params = tp_model.named_parameters();
  const auto single_params = single.named_parameters();
  ASSERT_EQ(tp_params.size(), single_params.size());
  int split = 0;
  for (size_t i = 0; i < single_params.size(); ++i) {
    const auto& [name, want] = single_params[i];
    SCOPED_TRACE(name + " on rank " + std::to_string(rank));
    ASSERT_EQ(tp_params[i].first, name);
    const Sharding& sh = tp_model.sharding(name);
    EXPECT_EQ(sh.global_shape, want.shape());
    if (!sh.is_replicated()) {
      ++split;
      EXPECT_EQ(sh.part, rank);
      EXPECT_EQ(sh.parts, size);
    }
    EXPECT_EQ(tp_params[i].second.shape(), sh.local_shape());
    EXPECT_TRUE(bitwise_equal(tp_params[i].second, sh.local_slice(want)));
  }
  EXPECT_GT(split, 0) << "nothing was split";
}

TEST(TpSharding, SplitSlicesAndErrors) {
  const Sharding s = Sharding::split({6, 4}, 1, 1, 2, "w");
  EXPECT_EQ(s.local_shape(), (Shape{6, 2}));
  EXPECT_EQ(s.offset(), 2);
  const Tensor g = arange(0, 24, 1, DType::f64).view({6, 4});
  EXPECT_EQ(s.local_slice(g).contiguous().to_vector<double>(),
            (std::vector<double>{2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23}));
  EXPECT_TRUE(Sharding::split({6, 4}, 0, 0, 1, "w").is_replicated());
  EXPECT_THROW(Sharding::split({6, 4}, 1, 0, 3, "w"), Error);
  EXPECT_THROW(Sharding::split({6, 4}, 2, 0, 2, "w"), Error);
}

TEST(TpSharding, UnsplitParametersReportThemselvesReplicated) {
  const DecoderLM m(testing::tiny_config(), 1);
  for (const auto& [name, t] : m.named_parameters()) {
    EXPECT_TRUE(m.sharding(name).is_replicated()) << name;
    EXPECT_EQ(m.sharding(name).global_shape, t.shape()) << name;
  }
  EXPECT_THROW(m.sharding("no.such.weight"), Error);
}

TEST(TpSharding, LoadParameterTakesTheGlobalTensorOrTheShard) {
  const auto inert = parallel::testing::ThreadGroup::inert(1, 2);
  parallel::Communicator& g = *inert;
  ColumnParallelLinear col(3, 4, false, Init::normal(1.0), Init::zeros(), g);
  const Tensor global = arange(0, 12, 1, DType::f64).view({4, 3});
  col.load_parameter("weight", global);
  EXPECT_EQ(col.weight().to(DType::f64).to_vector<double>(),
            (std::vector<double>{6, 7, 8, 9, 10, 11}));
  col.load_parameter("weight", zeros({2, 3}));
  EXPECT_EQ(col.weight().to_vector<float>(), std::vector<float>(6, 0.0f));
  EXPECT_THROW(col.load_parameter("weight", zeros({3, 3})), Error);
}

TEST(TpInit, EveryRankOfADecoderHoldsItsSliceOfTheSingleProcessModel) {
  for (bool tied : {false, true}) {
    auto cfg = testing::tiny_config(tied);  // 4 heads, 2 kv heads, d_ff 64, vocab 64
    const DecoderLM single(cfg, 7);
    for (int r = 0; r < 2; ++r) {
      const auto inert = parallel::testing::ThreadGroup::inert(r, 2);
      parallel::Communicator& g = *inert;
      cfg.tp = &g;
      const DecoderLM m(cfg, 7);
      expect_shards_of(m, single, r, 2);
      EXPECT_EQ(m.layer(0).attn().local_heads(), 2);
      EXPECT_EQ(m.layer(0).attn().local_kv_heads(), 1);
      EXPECT_EQ(m.sharding("layers.0.attn.q_proj.weight").dim, 0);
      EXPECT_EQ(m.sharding("layers.0.attn.o_proj.weight").dim, 1);
      EXPECT_EQ(m.sharding("layers.0.ffn.down_proj.weight").dim, 1);
      EXPECT_EQ(m.sharding("embed.weight").dim, 0);
      EXPECT_TRUE(m.sharding("norm.weight").is_replicated());
    }
  }
}

TEST(TpInit, EveryRankOfBertAndT5HoldsItsSliceOfTheSingleProcessModel) {
  BertConfig b = bert_preset("bert-tiny", 96);
  b.pad_id = 50;  // held by rank 1 of 2: its row starts at zero there
  const BertMLM bert(b, 3);
  T5Config t = t5_preset("t5-tiny");
  t.vocab = 96;
  t.share_position_bias = false;
  const T5Model t5(t, 3);
  for (int r = 0; r < 2; ++r) {
    const auto inert = parallel::testing::ThreadGroup::inert(r, 2);
    parallel::Communicator& g = *inert;
    b.tp = &g;
    t.tp = &g;
    expect_shards_of(BertMLM(b, 3), bert, r, 2);
    const T5Model m(t, 3);
    expect_shards_of(m, t5, r, 2);
    EXPECT_EQ(m.sharding("encoder.layers.1.rel_bias.weight").dim, 1);
    EXPECT_EQ(m.sharding("lm_head.weight").dim, 0);
  }
}

template <class F>
void expect_error(F&& f, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(TpErrors, IndivisibleSizesNameTheQuantityTheValueAndTp) {
  const auto inert = parallel::testing::ThreadGroup::inert(0, 3);
  parallel::Communicator& g = *inert;
  auto dec = testing::tiny_config();
  dec.tp = &g;
  dec.n_heads = 6, dec.n_kv_heads = 3, dec.d_ff = 96, dec.vocab = 96, dec.d_model = 48;
  dec.validate();  // all divisible by 3
  auto bad = dec;
  bad.n_heads = 4, bad.n_kv_heads = 0;
  expect_error([&] { bad.validate(); }, "n_heads 4 is not divisible by the tensor-parallel size 3");
  bad = dec;
  bad.n_kv_heads = 2;
  expect_error([&] { DecoderLM(bad, 1); },
               "n_kv_heads 2 is not divisible by the tensor-parallel size 3");
  bad = dec;
  bad.d_ff = 100;
  expect_error([&] { bad.validate(); }, "d_ff 100 is not divisible by the tensor-parallel size 3");
  bad = dec;
  bad.vocab = 100;
  expect_error([&] { bad.validate(); }, "vocab 100 is not divisible by the tensor-parallel size 3");

  BertConfig b = bert_preset("bert-tiny", 96);  // 2 heads
  b.tp = &g;
  expect_error([&] { b.validate(); }, "n_heads 2 is not divisible by the tensor-parallel size 3");
  b.n_heads = 3, b.d_model = 66, b.d_ff = 256;
  expect_error([&] { b.validate(); },
               "GLU width d_ff / 2 = 128 is not divisible by the tensor-parallel size 3");

  T5Config t = t5_preset("t5-tiny");  // 4 heads
  t.tp = &g;
  t.vocab = 99;
  expect_error([&] { T5Model(t, 1); }, "n_heads 4 is not divisible by the tensor-parallel size 3");

  AttentionConfig a;
  a.d_model = 32, a.n_heads = 4, a.tp = &g;
  expect_error([&] { MultiHeadAttention m(a); },
               "n_heads 4 is not divisible by the tensor-parallel size 3");
  FeedForwardConfig f;
  f.d_model = 8, f.d_ff = 10, f.tp = &g;
  expect_error([&] { FeedForward m(f); }, "d_ff 10 is not divisible by the tensor-parallel size 3");
  expect_error([&] { VocabParallelEmbedding e(100, 4, Init::normal(1.0), g); },
               "vocab 100 is not divisible by the tensor-parallel size 3");
  expect_error([&] { ParallelLMHead h(4, 100, Init::normal(1.0), g); },
               "vocab 100 is not divisible by the tensor-parallel size 3");
  expect_error([&] { T5RelativeBias rb(8, 20, 4, true, Init::normal(1.0), &g); },
               "n_heads 4 is not divisible by the tensor-parallel size 3");
}

// With one kv head per rank (or multi-query attention in one process) the kv head must be
// expanded to the query heads, not mistaken for a bias that broadcasts over heads.
TEST(TpAttention, OneKvHeadIsExpandedToEveryQueryHead) {
  AttentionConfig c;
  c.d_model = 16, c.n_heads = 4, c.n_kv_heads = 1, c.causal = true, c.rope = true;
  MultiHeadAttention mqa(c);
  c.n_kv_heads = 4;
  MultiHeadAttention mha(c);
  mqa.init_parameters(1);
  mqa.to(DType::f64);
  mha.to(DType::f64);
  for (const char* name : {"q_proj.weight", "o_proj.weight"})
    mha.load_parameter(name, mqa.parameter(name));
  for (const char* name : {"k_proj.weight", "v_proj.weight"}) {
    const Tensor w = mqa.parameter(name);  // one head's rows serve all four heads
    mha.load_parameter(name, cat({w, w, w, w}, 0));
  }
  const Tensor x = randn({2, 5, 16}, RandomKey{2, uint32_t(RngStream::Test), 0, 0}, DType::f64);
  EXPECT_LT(testing::rel_err(mqa.forward(x), mha.forward(x)), 1e-14);
}

TEST(TpGroupOfOne, IsTheSingleProcessModel) {
  parallel::LocalCommunicator one("tp");
  auto cfg = testing::tiny_config();
  const DecoderLM single(cfg, 5);
  cfg.tp = &one;
  const DecoderLM m(cfg, 5);
  for (const auto& [name, t] : m.named_parameters()) {
    EXPECT_TRUE(m.sharding(name).is_replicated()) << name;
    EXPECT_TRUE(bitwise_equal(t, single.parameter(name))) << name;
  }
  const Tensor ids = testing::random_ids(2, 8, cfg.vocab, 1);
  EXPECT_TRUE(bitwise_equal(m.loss(ids, ids), single.loss(ids, ids)));
}

}  // namespace
}  // namespace strata::models
