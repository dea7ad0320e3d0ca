// Crammed BERT: parity with a plain torch.nn model written from the spec
// (tests/fixtures/make_bert.py) in f32 and f64, the sparse MLM loss, the classifier head,
// parameter counts and presets.
#include <gtest/gtest.h>

#include <cmath>

#include "core/io/hdf5_file.h"
#include "models/bert.h"
#include "test_util.h"

namespace strata::models {
namespace {

using testing::rel_err;

io::H5File open_fixture() {
  return io::H5File::open(std::string(STRATA_FIXTURE_DIR) + "/bert.h5", io::H5File::Mode::Read);
}

BertConfig fixture_config(const io::H5File& f) {
  BertConfig c;
  c.vocab = f.attr_int("/", "vocab");
  c.d_model = f.attr_int("/", "d_model");
  c.n_layers = f.attr_int("/", "n_layers");
  c.n_heads = f.attr_int("/", "n_heads");
  c.d_ff = f.attr_int("/", "d_ff");
  c.max_seq = f.attr_int("/", "max_seq");
  c.pad_id = f.attr_int("/", "pad_id");
  c.norm_eps = f.attr_double("/", "norm_eps");
  return c;
}

testing::ParityResult run_parity(DType dtype) {
  auto f = open_fixture();
  BertMLM model(fixture_config(f), 0);
  model.to(dtype);
  const auto params = model.named_parameters();
  EXPECT_EQ(f.list("/model").size(), params.size());
  for (auto& [name, t] : params) model.load_parameter(name, f.read("/model/" + name));

  const std::string tag = dtype == DType::f64 ? "/f64" : "/f32";
  const Tensor ids = f.read("/batch/ids"), labels = f.read("/batch/labels");
  const Tensor mask = f.read("/batch/mask");
  const MLMOutput out = model.mlm(ids, labels, mask);
  out.loss.backward();
  EXPECT_EQ(out.loss.dtype(), dtype);
  const testing::ParityResult r =
      testing::compare_with_fixture(f, tag, out.loss, out.logits, params);
  return r;
}

TEST(BertParityTest, MatchesTorchInF32) {
  testing::expect_parity(run_parity(DType::f32), DType::f32);
}

TEST(BertParityTest, MatchesTorchInF64) {
  testing::expect_parity(run_parity(DType::f64), DType::f64);
}

BertConfig tiny() {
  BertConfig c;
  c.vocab = 40;
  c.d_model = 16;
  c.n_layers = 2;
  c.n_heads = 2;
  c.d_ff = 32;
  c.max_seq = 12;
  return c;
}

TEST(BertTest, InitFollowsCramming) {
  const BertConfig c = tiny();
  BertMLM m(c, 7);
  const Tensor word = m.parameter("encoder.embed.word.weight");
  for (double v : word.narrow(0, c.pad_id, 1).to(DType::f64).to_vector<double>()) EXPECT_EQ(v, 0);
  EXPECT_NEAR(m.parameter("encoder.embed.pos_scale").item<float>(), 1.0 / std::sqrt(16.0), 1e-7);
  for (double v : m.parameter("encoder.final_norm.bias").to(DType::f64).to_vector<double>())
    EXPECT_EQ(v, 0);
  // No biases on dense layers; the decoder is the word embedding (listed once).
  for (const auto& [name, t] : m.named_parameters()) {
    EXPECT_TRUE(name.find("proj.bias") == std::string::npos) << name;
    EXPECT_TRUE(name.find("decoder") == std::string::npos) << name;
  }
  const auto w = m.parameter("encoder.layers.0.attn.q_proj.weight").to(DType::f64);
  const double std = std::sqrt(mean(square(w)).item<double>());
  EXPECT_NEAR(std, 0.02, 0.006);
}

TEST(BertTest, SinusoidInterleavesSinAndCos) {
  const BertConfig c = tiny();
  BertEmbeddings e(c);
  const auto t = e.sinusoid().to_vector<double>();
  const int64_t d = c.d_model, p = 5, i = 3;
  const double angle = p * std::pow(10000.0, -2.0 * i / double(d));
  EXPECT_NEAR(t[size_t(p * d + 2 * i)], std::sin(angle), 1e-15);
  EXPECT_NEAR(t[size_t(p * d + 2 * i + 1)], std::cos(angle), 1e-15);
}

TEST(BertTest, SparseLossIsDenseLossAtMaskedPositions) {
  const BertConfig c = tiny();
  BertMLM m(c, 3);
  m.to(DType::f64);
  const Tensor ids = testing::random_ids(2, 8, c.vocab, 11);
  std::vector<int64_t> lab(16, -100);
  lab[1] = 5, lab[6] = 0, lab[9] = 39, lab[15] = 12;
  const Tensor labels = from_vector<int64_t>(lab, {2, 8});
  const MLMOutput out = m.mlm(ids, labels);
  EXPECT_EQ(out.logits.shape(), (Shape{4, c.vocab}));
  EXPECT_EQ(out.positions.to_vector<int64_t>(), (std::vector<int64_t>{1, 6, 9, 15}));
  const Tensor dense = cross_entropy(m.mlm_logits(m.forward(ids)), labels);
  EXPECT_LT(rel_err(out.loss, dense), 1e-14);
  EXPECT_LT(rel_err(m.mlm_loss(ids, labels), dense), 1e-14);

  // No masked position: a zero loss whose backward leaves zero gradients.
  const Tensor none = full({2, 8}, -100, DType::i64);
  Tensor z = m.mlm_loss(ids, none);
  EXPECT_EQ(z.item<double>(), 0.0);
  z.backward();
  for (const auto& [name, t] : m.named_parameters()) {
    ASSERT_TRUE(t.grad().defined()) << name;
    EXPECT_EQ(sum(abs(t.grad())).item<double>(), 0.0) << name;
  }

  EXPECT_THROW(m.mlm_loss(ids, full({2, 8}, 40, DType::i64)), Error);
  EXPECT_THROW(m.mlm_loss(ids, full({2, 7}, -100, DType::i64)), Error);
}

TEST(BertTest, PaddingMaskHidesPaddedKeys) {
  const BertConfig c = tiny();
  BertMLM m(c, 5);
  m.to(DType::f64);
  const Tensor ids = testing::random_ids(1, 10, c.vocab, 2);
  std::vector<int64_t> keep(10, 1);
  for (int i = 6; i < 10; ++i) keep[size_t(i)] = 0;
  const Tensor mask = ne(from_vector<int64_t>(keep, {1, 10}), scalar_tensor(0, DType::i64));
  // The first 6 positions with the tail masked equal the 6-token sequence alone.
  const Tensor a = m.forward(ids, mask).narrow(1, 0, 6);
  const Tensor b = m.forward(ids.narrow(1, 0, 6).contiguous());
  EXPECT_LT(rel_err(a, b), 1e-13);
  EXPECT_THROW(m.forward(ids, mask.narrow(1, 0, 5)), Error);
  EXPECT_THROW(m.forward(testing::random_ids(1, 13, c.vocab, 1)), Error);  // > max_seq
}

TEST(BertTest, PadLookupSendsNoGradient) {
  BertConfig c = tiny();
  BertMLM m(c, 9);
  std::vector<int64_t> ids_v = {0, 3, 4, 0, 7, 8};
  const Tensor ids = from_vector<int64_t>(ids_v, {1, 6});
  // Only the encoder path (no decoder, which reads every row): the pad row's gradient is zero.
  Tensor h = m.forward(ids);
  sum(square(h)).backward();
  const Tensor g = m.parameter("encoder.embed.word.weight").grad();
  EXPECT_EQ(sum(abs(g.narrow(0, 0, 1))).item<float>(), 0.0f);
  EXPECT_GT(sum(abs(g.narrow(0, 3, 1))).item<float>(), 0.0f);
}

TEST(BertTest, ClassifierShapesAndGradients) {
  BertConfig c = tiny();
  c.dropout = 0.1;
  BertClassifier clf(c, 3, 1);
  const Tensor ids = testing::random_ids(4, 9, c.vocab, 4);
  const Tensor logits = clf.classify(ids);
  EXPECT_EQ(logits.shape(), (Shape{4, 3}));
  const Tensor labels = from_vector<int64_t>({0, 2, 1, 2}, {4});
  Tensor loss = clf.loss(ids, labels);
  loss.backward();
  for (const auto& [name, t] : clf.named_parameters()) {
    ASSERT_TRUE(t.grad().defined()) << name;
    if (name == "encoder.embed.word.weight") continue;  // rows of unused ids stay 0
    EXPECT_GT(sum(abs(t.grad())).item<float>(), 0.0f) << name;
  }
  // Eval mode switches dropout off: two calls agree bitwise.
  clf.eval();
  EXPECT_TRUE(testing::bitwise_equal(clf.classify(ids), clf.classify(ids)));
  EXPECT_THROW(clf.loss(ids, from_vector<int64_t>({0, 1}, {2})), Error);
}

TEST(BertTest, ClassifierGradientMatchesFiniteDifferences) {
  BertConfig c = tiny();
  BertClassifier clf(c, 2, 4);
  clf.to(DType::f64);
  const Tensor ids = testing::random_ids(2, 5, c.vocab, 8);
  const Tensor labels = from_vector<int64_t>({1, 0}, {2});
  clf.loss(ids, labels).backward();
  for (const std::string name :
       {"pooler.weight", "classifier.bias", "encoder.layers.1.ffn.gate_proj.weight"}) {
    Tensor p = clf.parameter(name);
    const double g = p.grad().contiguous().to_vector<double>()[1];
    const double eps = 1e-6;
    auto at = [&](double delta) {
      NoGradGuard ng;
      p.data<double>()[1] += delta;
      const double v = clf.loss(ids, labels).item<double>();
      p.data<double>()[1] -= delta;
      return v;
    };
    const double fd = (at(eps) - at(-eps)) / (2 * eps);
    EXPECT_NEAR(g, fd, 1e-7 * std::max(1.0, std::abs(fd))) << name;
  }
}

TEST(BertTest, ClassifierLoadsThePretrainedEncoder) {
  const BertConfig c = tiny();
  BertMLM mlm(c, 21);
  BertClassifier clf(c, 2, 22);
  EXPECT_FALSE(testing::bitwise_equal(clf.parameter("encoder.layers.0.attn.q_proj.weight"),
                                      mlm.parameter("encoder.layers.0.attn.q_proj.weight")));
  clf.load_encoder(mlm);
  for (const auto& [name, t] : mlm.named_parameters()) {
    if (name.rfind("encoder.", 0) == 0) {
      EXPECT_TRUE(testing::bitwise_equal(clf.parameter(name), t)) << name;
    }
  }
  mlm.eval(), clf.eval();
  const Tensor ids = testing::random_ids(2, 6, c.vocab, 3);
  EXPECT_TRUE(
      testing::bitwise_equal(clf.encoder().forward(ids, {}, RandomKey{}), mlm.forward(ids)));
}

TEST(BertTest, ParameterCounts) {
  for (const auto& name : bert_preset_names()) {
    const BertConfig c = bert_preset(name);
    if (c.d_model <= 256) {
      BertMLM m(c, 0);
      EXPECT_EQ(m.num_parameters(), BertMLM::count_parameters(c)) << name;
      BertClassifier clf(c, 3, 0);
      EXPECT_EQ(clf.num_parameters(), BertClassifier::count_parameters(c, 3)) << name;
    }
    std::printf("%-10s %lld parameters (MLM)\n", name.c_str(),
                (long long)BertMLM::count_parameters(c));
  }
  // bert-c5 with vocab 32768, by hand: embedding 32768*768 + 1 (pos scale) + 2*768 (norm);
  // per layer 4*768^2 (attention) + 768*3072 + 1536*768 (GLU FFN) + 4*768 (two norms);
  // final norm 2*768; MLM head transform 768^2; decoder tied.
  const int64_t by_hand = 32768LL * 768 + 1 + 2 * 768 +
                          16 * (4LL * 768 * 768 + 768LL * 3072 + 1536LL * 768 + 4 * 768) + 2 * 768 +
                          768LL * 768;
  EXPECT_EQ(BertMLM::count_parameters(bert_preset("bert-c5")), by_hand);
  EXPECT_EQ(by_hand, 120179713);
}

TEST(BertTest, C5BuildsWithTheCountedParameters) {
  const BertConfig c = bert_preset("bert-c5");
  BertMLM m(c, 0);
  EXPECT_EQ(m.num_parameters(), BertMLM::count_parameters(c));
  EXPECT_EQ(c.glu_dim(), 1536);
  EXPECT_EQ(c.head_dim(), 64);
}

TEST(BertTest, PresetsAndValidation) {
  EXPECT_EQ(bert_preset("bert-small", 1000).vocab, 1000);
  EXPECT_THROW(bert_preset("bert-huge"), Error);
  BertConfig c = tiny();
  c.d_ff = 33;
  EXPECT_THROW(BertMLM(c, 0), Error);
  c = tiny();
  c.n_heads = 3;
  EXPECT_THROW(BertMLM(c, 0), Error);
}

TEST(BertTest, DropoutOnlyInTrainingAndKeyedByStep) {
  BertConfig c = tiny();
  c.dropout = 0.1;
  BertMLM m(c, 2);
  const Tensor ids = testing::random_ids(2, 6, c.vocab, 5);
  const Tensor a = m.forward(ids), b = m.forward(ids);
  EXPECT_TRUE(testing::bitwise_equal(a, b));  // same step, same masks
  m.set_step(1);
  EXPECT_FALSE(testing::bitwise_equal(a, m.forward(ids)));
  m.eval();
  const Tensor e = m.forward(ids);
  m.set_step(5);
  EXPECT_TRUE(testing::bitwise_equal(e, m.forward(ids)));
}

}  // namespace
}  // namespace strata::models
