// Whole models under tensor parallelism (TP2; under 4 ranks each of the two TP2 groups of
// DP2 x TP2) against the single-process model every rank also builds from the same seed: the
// initial parameters bitwise (once gathered), then loss, logits and every parameter's gradient
// (gathered to its global shape) within 1e-5 in f32 and 1e-11 in f64, with dropout on, padding
// masks and ignored targets; incremental decoding and generation; and three AdamW steps.
#include <gtest/gtest.h>

#include <cstdio>

#include "core/ops.h"
#include "models/bert.h"
#include "models/decoder_lm.h"
#include "models/t5.h"
#include "optim/adamw.h"
#include "parallel/tp_mappings.h"
#include "tests/models/test_util.h"
#include "tests/parallel/tp_test_util.h"

namespace strata::models {
namespace {

using parallel::Communicator;
using parallel::testing::gather_global;
using parallel::testing::tp2;
using testing::bitwise_equal;
using testing::random_ids;
using testing::rel_err;

double tolerance(DType dt) {
  return dt == DType::f64 ? 1e-11 : 1e-5;
}

void expect_same_init(const Module& tp_model, const Module& single) {
  const auto params = single.named_parameters();
  ASSERT_EQ(tp_model.named_parameters().size(), params.size());
  for (const auto& [name, t] : params)
    EXPECT_TRUE(
        bitwise_equal(gather_global(tp_model.parameter(name), tp_model.sharding(name), tp2()), t))
        << name;
}

// The worst relative error over every parameter (or, with grads, every gradient), gathered.
double worst_parameter_error(const Module& tp_model, const Module& single, bool grads,
                             std::string& worst_name) {
  double worst = 0;
  for (const auto& [name, t] : single.named_parameters()) {
    const Tensor local = tp_model.parameter(name);
    const Tensor want = grads ? t.grad() : t;
    const Tensor got = grads ? local.grad() : local;
    EXPECT_TRUE(want.defined() && got.defined()) << name;
    if (!want.defined() || !got.defined()) continue;
    const double e = rel_err(gather_global(got, tp_model.sharding(name), tp2()), want);
    if (e >= worst) worst = e, worst_name = name;
  }
  return worst;
}

void expect_equivalent(const char* what, DType dt, const Tensor& tp_loss, const Tensor& loss,
                       const Tensor& tp_logits, const Tensor& logits, const Module& tp_model,
                       const Module& single) {
  std::string worst_name;
  const double grad_err = worst_parameter_error(tp_model, single, true, worst_name);
  const double loss_err = rel_err(tp_loss, loss), logits_err = rel_err(tp_logits, logits);
  if (tp2().rank() == 0)
    std::printf("%s %s: loss %.3g, logits %.3g, worst grad %.3g (%s)\n", what,
                dtype_name(dt).data(), loss_err, logits_err, grad_err, worst_name.c_str());
  EXPECT_LT(loss_err, tolerance(dt));
  EXPECT_LT(logits_err, tolerance(dt));
  EXPECT_LT(grad_err, tolerance(dt)) << worst_name;
}

Tensor with_ignored(const Tensor& ids, std::vector<size_t> at) {
  auto v = ids.to_vector<int64_t>();
  for (size_t i : at) v[i] = -100;
  return from_vector(v, ids.shape());
}

DecoderConfig decoder_config(bool tied, double dropout) {
  DecoderConfig c = testing::tiny_config(tied);  // 4 heads, 2 kv heads: one kv head per rank
  c.dropout = dropout;
  return c;
}

TEST(TpModels, DecoderLMEqualsSingleProcess) {
  for (bool tied : {false, true})
    for (DType dt : {DType::f32, DType::f64}) {
      SCOPED_TRACE(std::string(tied ? "tied " : "untied ") + std::string(dtype_name(dt)));
      DecoderConfig cfg = decoder_config(tied, 0.1);
      DecoderLM single(cfg, 11);
      cfg.tp = &tp2();
      DecoderLM m(cfg, 11);
      expect_same_init(m, single);
      single.to(dt);
      m.to(dt);
      single.set_step(3);
      m.set_step(3);
      const Tensor ids = random_ids(2, 12, cfg.vocab, 21);
      const Tensor targets = with_ignored(random_ids(2, 12, cfg.vocab, 22), {3, 17});
      const Tensor loss = single.loss(ids, targets), tp_loss = m.loss(ids, targets);
      loss.backward();
      tp_loss.backward();
      const Tensor logits = single.forward(ids), tp_logits = m.forward(ids);
      EXPECT_EQ(tp_logits.shape(), logits.shape());
      expect_equivalent(tied ? "decoder tied" : "decoder", dt, tp_loss, loss, tp_logits, logits, m,
                        single);
    }
}

TEST(TpModels, DecoderLMIncrementalDecodingEqualsSingleProcess) {
  DecoderConfig cfg = decoder_config(false, 0.0);
  DecoderLM single(cfg, 12);
  cfg.tp = &tp2();
  DecoderLM m(cfg, 12);
  NoGradGuard no_grad;
  ModelCache c1 = single.make_cache(2, 16), c2 = m.make_cache(2, 16);
  const Tensor prompt = random_ids(2, 5, cfg.vocab, 23), next = random_ids(2, 1, cfg.vocab, 24);
  EXPECT_LT(rel_err(m.forward_step(prompt, c2), single.forward_step(prompt, c1)), 1e-5);
  EXPECT_LT(rel_err(m.forward_step(next, c2), single.forward_step(next, c1)), 1e-5);
}

BertConfig bert_config(double dropout) {
  BertConfig c = bert_preset("bert-tiny", 96);  // d 64, 2 heads, GLU width 128
  c.dropout = dropout;
  c.pad_id = 50;  // held by rank 1
  return c;
}

TEST(TpModels, BertMLMEqualsSingleProcess) {
  for (DType dt : {DType::f32, DType::f64}) {
    SCOPED_TRACE(dtype_name(dt));
    BertConfig cfg = bert_config(0.1);
    BertMLM single(cfg, 13);
    cfg.tp = &tp2();
    BertMLM m(cfg, 13);
    expect_same_init(m, single);
    single.to(dt);
    m.to(dt);
    Tensor ids = random_ids(2, 10, cfg.vocab, 31);
    auto iv = ids.to_vector<int64_t>();
    iv[8] = iv[9] = cfg.pad_id;  // padding at the end of the first sequence
    ids = from_vector(iv, {2, 10});
    std::vector<bool> mask(20, true);
    mask[8] = mask[9] = false;
    const Tensor kpm = from_vector(mask, {2, 10});
    std::vector<int64_t> lv(20, -100);
    lv[1] = 5, lv[4] = 95, lv[12] = 50, lv[19] = 0;
    const Tensor labels = from_vector(lv, {2, 10});
    const MLMOutput want = single.mlm(ids, labels, kpm), got = m.mlm(ids, labels, kpm);
    want.loss.backward();
    got.loss.backward();
    EXPECT_EQ(got.logits.size(1), cfg.vocab / 2) << "MLMOutput::logits is this rank's slice";
    expect_equivalent("bert", dt, got.loss, want.loss,
                      parallel::gather_from_tp(got.logits.detach(), tp2()), want.logits, m, single);
  }
}

T5Config t5_config(bool shared_bias, double dropout) {
  T5Config c = t5_preset("t5-tiny");  // d 64, 4 heads of 16, d_ff 128
  c.vocab = 96;
  c.share_position_bias = shared_bias;
  c.dropout = dropout;
  return c;
}

TEST(TpModels, T5ModelEqualsSingleProcess) {
  for (bool shared_bias : {true, false})
    for (DType dt : {DType::f32, DType::f64}) {
      SCOPED_TRACE(std::string(shared_bias ? "shared bias " : "per-block bias ") +
                   std::string(dtype_name(dt)));
      T5Config cfg = t5_config(shared_bias, 0.1);
      T5Model single(cfg, 14);
      cfg.tp = &tp2();
      T5Model m(cfg, 14);
      expect_same_init(m, single);
      single.to(dt);
      m.to(dt);
      single.set_step(2);
      m.set_step(2);
      const Tensor input = random_ids(2, 9, cfg.vocab, 41);
      const Tensor enc_mask =
          from_vector<int64_t>({1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {2, 9});
      const Tensor labels = with_ignored(random_ids(2, 6, cfg.vocab, 42), {5, 11});
      const Tensor loss = single.loss(input, labels, enc_mask);
      const Tensor tp_loss = m.loss(input, labels, enc_mask);
      loss.backward();
      tp_loss.backward();
      const Tensor dec = T5Model::shift_right(labels, cfg.decoder_start_id, cfg.pad_id);
      const Tensor logits = single.forward(input, dec, enc_mask);
      const Tensor tp_logits = m.forward(input, dec, enc_mask);
      expect_equivalent(shared_bias ? "t5" : "t5 per-block bias", dt, tp_loss, loss, tp_logits,
                        logits, m, single);
    }
}

TEST(TpModels, T5GenerationEqualsSingleProcess) {
  T5Config cfg = t5_config(true, 0.0);
  T5Model single(cfg, 15);
  cfg.tp = &tp2();
  T5Model m(cfg, 15);
  const Tensor input = random_ids(2, 7, cfg.vocab, 51);
  for (bool cache : {true, false}) {
    T5GenerateOptions opt;
    opt.max_new_tokens = 6;
    opt.use_cache = cache;
    opt.stop_at_eos = false;
    EXPECT_EQ(m.generate(input, {}, opt).to_vector<int64_t>(),
              single.generate(input, {}, opt).to_vector<int64_t>())
        << "use_cache " << cache;
  }
}

// Three AdamW steps (weight decay on) from the same initial model give the same parameters:
// within 1e-11 in f64. In f32 the first steps are about lr * g / |g| per element, so the last-bit
// differences of near-zero gradients grow to a fraction of lr; 1e-3 (of the largest parameter)
// still catches any real divergence.
template <class Model, class Loss>
void expect_same_after_adamw(const char* what, Model& single, Model& m, DType dt, Loss loss_of) {
  single.to(dt);
  m.to(dt);
  auto groups = [](const Module& model) {
    std::vector<optim::NamedParam> named;
    for (const auto& [n, t] : model.named_parameters()) named.push_back({n, t});
    return optim::make_param_groups(named, optim::Hyper{1e-2, 0.1, 0.9, 0.95, 1e-8});
  };
  optim::AdamW o1(groups(single)), o2(groups(m));
  for (int step = 0; step < 3; ++step) {
    o1.zero_grad();
    o2.zero_grad();
    loss_of(single, step).backward();
    loss_of(m, step).backward();
    o1.step();
    o2.step();
  }
  std::string worst_name;
  const double err = worst_parameter_error(m, single, false, worst_name);
  if (tp2().rank() == 0)
    std::printf("%s %s after 3 AdamW steps: worst parameter %.3g (%s)\n", what,
                dtype_name(dt).data(), err, worst_name.c_str());
  EXPECT_LT(err, dt == DType::f64 ? 1e-11 : 1e-3) << worst_name;
}

TEST(TpModels, ThreeAdamWStepsGiveTheSameParameters) {
  for (DType dt : {DType::f32, DType::f64}) {
    DecoderConfig dc = decoder_config(true, 0.1);
    DecoderLM d1(dc, 16);
    dc.tp = &tp2();
    DecoderLM d2(dc, 16);
    expect_same_after_adamw("decoder", d1, d2, dt, [&](DecoderLM& model, int step) {
      model.set_step(uint64_t(step));
      const Tensor ids = random_ids(2, 12, dc.vocab, 60 + uint64_t(step));
      return model.loss(ids, random_ids(2, 12, dc.vocab, 70 + uint64_t(step)));
    });

    BertConfig bc = bert_config(0.1);
    BertMLM b1(bc, 17);
    bc.tp = &tp2();
    BertMLM b2(bc, 17);
    expect_same_after_adamw("bert", b1, b2, dt, [&](BertMLM& model, int step) {
      model.set_step(uint64_t(step));
      const Tensor ids = random_ids(2, 10, bc.vocab, 80 + uint64_t(step));
      std::vector<int64_t> lv(20, -100);
      lv[2] = 7, lv[11] = 90, lv[15] = 3;
      return model.mlm_loss(ids, from_vector(lv, {2, 10}));
    });

    T5Config tc = t5_config(true, 0.1);
    T5Model t1(tc, 18);
    tc.tp = &tp2();
    T5Model t2(tc, 18);
    expect_same_after_adamw("t5", t1, t2, dt, [&](T5Model& model, int step) {
      model.set_step(uint64_t(step));
      return model.loss(random_ids(2, 8, tc.vocab, 90 + uint64_t(step)),
                        random_ids(2, 5, tc.vocab, 100 + uint64_t(step)));
    });
  }
}

}  // namespace
}  // namespace strata::models
