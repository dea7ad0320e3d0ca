// bf16 mixed precision (models/precision.h) on the CPU: parameters and their gradients stay f32,
// the bf16 loss of one batch is within 1e-2 of the f32 loss and every parameter gradient points
// the same way (cosine > 0.99) for the decoder, BERT and T5; f32 precision is the f32 model bit for
// bit; the option's errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "core/ops.h"
#include "models/bert.h"
#include "models/decoder_lm.h"
#include "models/generate.h"
#include "models/precision.h"
#include "models/t5.h"
#include "parallel/communicator.h"
#include "tests/models/test_util.h"
#include "tests/parallel/thread_group.h"

namespace strata::models {
namespace {

using testing::random_ids;

double cosine(const Tensor& a, const Tensor& b) {
  const auto x = a.to(DType::f64).contiguous().to_vector<double>();
  const auto y = b.to(DType::f64).contiguous().to_vector<double>();
  double xy = 0, xx = 0, yy = 0;
  for (size_t i = 0; i < x.size(); ++i) xy += x[i] * y[i], xx += x[i] * x[i], yy += y[i] * y[i];
  if (xx == 0 && yy == 0) return 1.0;  // both exactly zero (e.g. BERT's pad row)
  return xy / std::sqrt(xx * yy);
}

struct Agreement {
  double loss_f32 = 0, loss_bf16 = 0, loss_rel = 0;
  double worst_cos = 1;
  std::string worst;
};

// Runs `loss_of` (one forward + backward) on an f32 and a bf16 model built by `make` from the
// same seed, checks the bf16 model's parameters and gradients are f32, and compares.
template <class M>
Agreement compare(const std::function<std::unique_ptr<M>(Precision)>& make,
                  const std::function<Tensor(M&)>& loss_of) {
  auto f = make(Precision::f32());
  auto b = make(Precision::bf16());
  EXPECT_EQ(b->precision(), Precision::bf16());
  const Tensor lf = loss_of(*f);
  const Tensor lb = loss_of(*b);
  EXPECT_EQ(lb.dtype(), DType::f32) << "the loss is computed in f32";
  lf.backward();
  lb.backward();
  Agreement a;
  a.loss_f32 = lf.item<double>();
  a.loss_bf16 = lb.item<double>();
  a.loss_rel = std::abs(a.loss_bf16 - a.loss_f32) / std::abs(a.loss_f32);
  const auto pf = f->named_parameters();
  const auto pb = b->named_parameters();
  EXPECT_EQ(pf.size(), pb.size());
  for (size_t i = 0; i < pf.size() && i < pb.size(); ++i) {
    const auto& [name, t] = pb[i];
    EXPECT_EQ(t.dtype(), DType::f32) << name << ": master weights stay f32";
    EXPECT_TRUE(testing::bitwise_equal(t, pf[i].second)) << name << ": same initial weights";
    EXPECT_TRUE(t.grad().defined()) << name;
    if (!t.grad().defined()) continue;
    EXPECT_EQ(t.grad().dtype(), DType::f32) << name << ": gradients arrive in f32";
    const double c = cosine(t.grad(), pf[i].second.grad());
    if (c < a.worst_cos) a.worst_cos = c, a.worst = name;
  }
  return a;
}

void expect_agreement(const Agreement& a, const char* model) {
  std::printf("%s: loss f32 %.6f bf16 %.6f (rel %.2e); worst gradient cosine %.6f (%s)\n", model,
              a.loss_f32, a.loss_bf16, a.loss_rel, a.worst_cos, a.worst.c_str());
  EXPECT_LT(a.loss_rel, 1e-2) << model;
  EXPECT_GT(a.worst_cos, 0.99) << model << ": " << a.worst;
}

TEST(MixedPrecision, DecoderLossAndGradientsTrackF32) {
  for (bool tied : {false, true}) {
    DecoderConfig c = testing::tiny_config(tied);
    const Tensor ids = random_ids(2, 16, c.vocab, 1), targets = random_ids(2, 16, c.vocab, 2);
    const Agreement a = compare<DecoderLM>(
        [&](Precision p) {
          DecoderConfig cp = c;
          cp.precision = p;
          return std::make_unique<DecoderLM>(cp, 7);
        },
        [&](DecoderLM& m) { return m.loss(ids, targets); });
    expect_agreement(a, tied ? "decoder (tied)" : "decoder");
  }
}

TEST(MixedPrecision, BertLossAndGradientsTrackF32) {
  BertConfig c = bert_preset("bert-tiny", 128);
  const Tensor ids = random_ids(2, 24, c.vocab, 3);
  std::vector<int64_t> lab;
  const auto v = ids.to_vector<int64_t>();
  for (size_t i = 0; i < v.size(); ++i) lab.push_back(i % 4 == 1 ? (v[i] + 5) % c.vocab : -100);
  const Tensor labels = from_vector<int64_t>(lab, ids.shape());
  const Agreement a = compare<BertMLM>(
      [&](Precision p) {
        BertConfig cp = c;
        cp.precision = p;
        return std::make_unique<BertMLM>(cp, 11);
      },
      [&](BertMLM& m) { return m.mlm_loss(ids, labels); });
  expect_agreement(a, "bert");
}

TEST(MixedPrecision, T5LossAndGradientsTrackF32) {
  T5Config c = t5_preset("t5-tiny");
  c.vocab = 128;
  const Tensor in = random_ids(2, 20, c.vocab, 4), labels = random_ids(2, 8, c.vocab, 5);
  const Agreement a = compare<T5Model>(
      [&](Precision p) {
        T5Config cp = c;
        cp.precision = p;
        return std::make_unique<T5Model>(cp, 13);
      },
      [&](T5Model& m) { return m.loss(in, labels); });
  expect_agreement(a, "t5");
}

TEST(MixedPrecision, BertClassifierLogitsAreF32AndTrack) {
  BertConfig c = bert_preset("bert-tiny", 128);
  c.dropout = 0.1;  // dropout on bf16 and f32 activations draws the same masks
  const Tensor ids = random_ids(3, 12, c.vocab, 6);
  const Tensor labels = from_vector<int64_t>({0, 1, 2}, {3});
  const Agreement a = compare<BertClassifier>(
      [&](Precision p) {
        BertConfig cp = c;
        cp.precision = p;
        return std::make_unique<BertClassifier>(cp, 3, 17);
      },
      [&](BertClassifier& m) { return m.loss(ids, labels); });
  expect_agreement(a, "bert classifier");
}

// bf16 compute with dropout: the masks are keyed by element index, not by dtype, so the bf16
// model drops exactly the f32 model's elements and the losses stay close.
TEST(MixedPrecision, DecoderWithDropoutTracksF32) {
  DecoderConfig c = testing::tiny_config();
  c.dropout = 0.2;
  const Tensor ids = random_ids(2, 16, c.vocab, 8), targets = random_ids(2, 16, c.vocab, 9);
  const Agreement a = compare<DecoderLM>(
      [&](Precision p) {
        DecoderConfig cp = c;
        cp.precision = p;
        auto m = std::make_unique<DecoderLM>(cp, 7);
        m->set_step(3);
        return m;
      },
      [&](DecoderLM& m) { return m.loss(ids, targets); });
  expect_agreement(a, "decoder (dropout 0.2)");
}

// Under f32 precision every mixed-precision helper is the identity: the same numbers as before.
TEST(MixedPrecision, F32PrecisionLeavesEverythingF32) {
  DecoderConfig c = testing::tiny_config();
  DecoderLM m(c, 7);
  EXPECT_EQ(m.precision(), Precision::f32());
  const Tensor ids = random_ids(2, 8, c.vocab, 1);
  EXPECT_EQ(m.forward(ids).dtype(), DType::f32);
  const Tensor x = randn({4, 8}, RandomKey{1});
  EXPECT_TRUE(Precision::f32().operand(x).impl() == x.impl());
  EXPECT_TRUE(Precision::f32().residual_in(x).impl() == x.impl());
  // f64 tensors are never cast, even under bf16 (gradient checks run f64 models).
  const Tensor d = x.to(DType::f64);
  EXPECT_EQ(Precision::bf16().operand(d).dtype(), DType::f64);
  EXPECT_EQ(Precision::bf16().operand(x).dtype(), DType::bf16);
  EXPECT_EQ(Precision::bf16().residual_in(x.to(DType::bf16)).dtype(), DType::f32);
  EXPECT_EQ(loss_input(x.to(DType::bf16)).dtype(), DType::f32);
  EXPECT_EQ(attention_dtype(x.to(DType::bf16)), DType::f32);  // CPU: no bf16 attention kernel
}

// Generation and incremental decoding run under bf16 (the KV cache holds bf16 keys/values), and
// the cached path gives the full-recompute path's tokens, as in f32.
TEST(MixedPrecision, Bf16GenerationMatchesFullRecompute) {
  DecoderConfig c = testing::tiny_config();
  c.precision = Precision::bf16();
  DecoderLM m(c, 7);
  const Tensor prompt = random_ids(2, 5, c.vocab, 10);
  GenerateOptions g;
  g.max_new_tokens = 6;
  g.greedy = true;
  g.use_cache = true;
  const Tensor cached = generate(m, prompt, g);
  g.use_cache = false;
  const Tensor full = generate(m, prompt, g);
  EXPECT_TRUE(testing::bitwise_equal(cached, full));
  EXPECT_EQ(m.forward(prompt).dtype(), DType::f32) << "logits come out in f32";

  T5Config t = t5_preset("t5-tiny");
  t.vocab = 128;
  t.precision = Precision::bf16();
  T5Model t5(t, 3);
  T5GenerateOptions o;
  o.max_new_tokens = 5;
  o.stop_at_eos = false;
  const Tensor in = random_ids(2, 9, t.vocab, 11);
  const Tensor a = t5.generate(in, {}, o);
  o.use_cache = false;
  const Tensor b = t5.generate(in, {}, o);
  EXPECT_TRUE(testing::bitwise_equal(a, b));
}

// Tensor parallelism honours the precision: a TP2 bf16 decoder (column/row-parallel linears,
// vocab-parallel embedding, head and cross-entropy) gives the single-process bf16 loss within
// bf16 rounding of the partial sums, and every gradient shard points along the single-process
// gradient's slice. Parameters and gradients stay f32 on every rank.
TEST(MixedPrecision, TensorParallelDecoderHonoursBf16) {
  for (bool tied : {false, true}) {
    DecoderConfig c = testing::tiny_config(tied);
    c.precision = Precision::bf16();
    const Tensor ids = random_ids(2, 16, c.vocab, 21), targets = random_ids(2, 16, c.vocab, 22);
    DecoderLM single(c, 5);
    const Tensor ref = single.loss(ids, targets);
    ref.backward();
    parallel::testing::ThreadGroup group(2);
    std::vector<double> losses(2);
    std::vector<double> worst(2, 1.0);
    group.run([&](int r) {
      DecoderConfig cr = c;
      cr.tp = &group.comm(r);
      DecoderLM m(cr, 5);
      EXPECT_EQ(m.precision(), Precision::bf16());
      const Tensor l = m.loss(ids, targets);
      losses[size_t(r)] = l.item<double>();
      l.backward();
      for (const auto& [name, p] : m.named_parameters()) {
        EXPECT_EQ(p.dtype(), DType::f32) << name;
        ASSERT_TRUE(p.grad().defined()) << name;
        EXPECT_EQ(p.grad().dtype(), DType::f32) << name;
        const Tensor want = m.sharding(name).local_slice(single.parameter(name).grad());
        worst[size_t(r)] = std::min(worst[size_t(r)], cosine(p.grad(), want));
      }
    });
    const double rel = std::abs(losses[0] - ref.item<double>()) / ref.item<double>();
    std::printf("TP2 bf16 decoder%s: loss %.6f vs single %.6f (rel %.2e); worst cosine %.6f\n",
                tied ? " (tied)" : "", losses[0], ref.item<double>(), rel,
                std::min(worst[0], worst[1]));
    EXPECT_EQ(losses[0], losses[1]) << "every rank computes the same loss";
    EXPECT_LT(rel, 5e-3);
    EXPECT_GT(std::min(worst[0], worst[1]), 0.999);
  }
}

TEST(MixedPrecision, ParseNamesTheChoices) {
  EXPECT_EQ(Precision::parse("f32"), Precision::f32());
  EXPECT_EQ(Precision::parse("bf16"), Precision::bf16());
  EXPECT_EQ(Precision::bf16().name(), "bf16");
  EXPECT_EQ(Precision::f32().name(), "f32");
  EXPECT_EQ((Precision{DType::bf16, DType::bf16}).name(), "bf16 (residual bf16)");
  for (const char* bad : {"fp16", "BF16", "", "f64", "bfloat16"}) {
    try {
      Precision::parse(bad, "model.precision");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("model.precision"), std::string::npos) << m;
      EXPECT_NE(m.find("f32"), std::string::npos) << m;
      EXPECT_NE(m.find("bf16"), std::string::npos) << m;
    }
  }
}

}  // namespace
}  // namespace strata::models
