// T5 v1.1 (models/t5.h): the relative bucket function against the formula, parity with Hugging
// Face's T5ForConditionalGeneration (tests/fixtures/make_t5.py), incremental decoding, parameter
// counts and the per-block position-bias option.
#include <gtest/gtest.h>

#include <cstdio>

#include "core/autograd/grad_mode.h"
#include "core/io/hdf5_file.h"
#include "models/t5.h"
#include "test_util.h"

namespace strata::models {
namespace {

using testing::rel_err;

std::string fixture() {
  return std::string(STRATA_FIXTURE_DIR) + "/t5.h5";
}

// The bucket formula of ALGORITHMS.md 1.1, decided independently of the library: for max_exact
// e, magnitude a in [e, max_distance) and ratio r = max_distance / e (an integer here),
// floor((n - e) ln(a / e) / ln r) >= k  <=>  a^(n-e) >= r^k e^(n-e), in 128-bit integers (the
// largest side, 128^16 for the causal buckets, is 2^112).
int64_t reference_bucket(int64_t rel, bool bidirectional, int64_t num_buckets,
                         int64_t max_distance) {
  int64_t n = num_buckets, offset = 0, a;
  if (bidirectional) {
    n /= 2;
    offset = rel > 0 ? n : 0;
    a = rel < 0 ? -rel : rel;
  } else {
    a = rel < 0 ? -rel : 0;
  }
  const int64_t e = n / 2;
  if (a < e) return offset + a;
  if (a >= max_distance) return offset + n - 1;
  EXPECT_EQ(max_distance % e, 0);
  const auto pow128 = [](unsigned __int128 b, int64_t p) {
    unsigned __int128 r = 1;
    for (int64_t i = 0; i < p; ++i) r *= b;
    return r;
  };
  const unsigned __int128 lhs = pow128(uint64_t(a), n - e);
  int64_t k = 0;
  while (k + 1 < n - e &&
         lhs >= pow128(uint64_t(max_distance / e), k + 1) * pow128(uint64_t(e), n - e))
    ++k;
  return offset + e + k;
}

TEST(T5RelativeBucketTest, MatchesFormulaAndHuggingFaceOnAllOffsets) {
  auto f = io::H5File::open(fixture(), io::H5File::Mode::Read);
  const auto rel = f.read("/buckets/rel").to(DType::i64).to_vector<int64_t>();
  const auto hf_bi = f.read("/buckets/bidirectional").to(DType::i64).to_vector<int64_t>();
  const auto hf_causal = f.read("/buckets/causal").to(DType::i64).to_vector<int64_t>();
  ASSERT_EQ(rel.size(), 601u);
  ASSERT_EQ(rel.front(), -300);
  int64_t checked = 0;
  for (size_t i = 0; i < rel.size(); ++i) {
    const int64_t r = rel[i];
    const int64_t bi = t5_relative_bucket(r, true, 32, 128);
    const int64_t causal = t5_relative_bucket(r, false, 32, 128);
    EXPECT_EQ(bi, reference_bucket(r, true, 32, 128)) << "rel " << r;
    EXPECT_EQ(causal, reference_bucket(r, false, 32, 128)) << "rel " << r;
    EXPECT_EQ(bi, hf_bi[i]) << "rel " << r;
    EXPECT_EQ(causal, hf_causal[i]) << "rel " << r;
    checked += 2;
  }
  EXPECT_EQ(checked, 1202);
  // Spot values worked by hand: the exact range, the boundaries a = 16, 32, 64 (where a
  // floating-point log could round down) and the saturation.
  EXPECT_EQ(t5_relative_bucket(0, true, 32, 128), 0);
  EXPECT_EQ(t5_relative_bucket(7, true, 32, 128), 16 + 7);
  EXPECT_EQ(t5_relative_bucket(-16, true, 32, 128), 10);
  EXPECT_EQ(t5_relative_bucket(-32, true, 32, 128), 12);
  EXPECT_EQ(t5_relative_bucket(64, true, 32, 128), 16 + 14);
  EXPECT_EQ(t5_relative_bucket(-127, true, 32, 128), 15);
  EXPECT_EQ(t5_relative_bucket(5, false, 32, 128), 0);
  EXPECT_EQ(t5_relative_bucket(-15, false, 32, 128), 15);
  EXPECT_EQ(t5_relative_bucket(-127, false, 32, 128), 31);
  EXPECT_EQ(t5_relative_bucket(-1000, false, 32, 128), 31);
  // Other sizes agree with the reference too.
  for (int64_t r = -300; r <= 300; ++r) {
    EXPECT_EQ(t5_relative_bucket(r, true, 16, 64), reference_bucket(r, true, 16, 64)) << r;
    EXPECT_EQ(t5_relative_bucket(r, false, 16, 64), reference_bucket(r, false, 16, 64)) << r;
  }
  EXPECT_THROW(t5_relative_bucket(0, true, 32, 8), Error);
}

TEST(T5RelativeBucketTest, BiasModuleLooksUpTheTable) {
  for (bool bidirectional : {true, false}) {
    T5RelativeBias bias(32, 128, 3, bidirectional, Init::normal(1.0));
    bias.init_parameters(5);
    const int64_t Lq = 4, Lk = 150, off = 146;
    const Tensor b = bias.forward(Lq, Lk, off);
    ASSERT_EQ(b.shape(), Shape({1, 3, Lq, Lk}));
    const auto w = bias.weight().to_vector<float>();
    const auto got = b.contiguous().to_vector<float>();
    for (int64_t h = 0; h < 3; ++h)
      for (int64_t i = 0; i < Lq; ++i)
        for (int64_t j = 0; j < Lk; ++j) {
          const int64_t bucket = t5_relative_bucket(j - (off + i), bidirectional, 32, 128);
          ASSERT_EQ(got[size_t((h * Lq + i) * Lk + j)], w[size_t(bucket * 3 + h)]);
        }
  }
}

T5Config fixture_config(const io::H5File& f) {
  T5Config c;
  c.vocab = f.attr_int("/", "vocab");
  c.d_model = f.attr_int("/", "d_model");
  c.d_kv = f.attr_int("/", "d_kv");
  c.n_heads = f.attr_int("/", "n_heads");
  c.d_ff = f.attr_int("/", "d_ff");
  c.n_layers = f.attr_int("/", "n_layers");
  c.relative_buckets = f.attr_int("/", "relative_buckets");
  c.relative_max_distance = f.attr_int("/", "relative_max_distance");
  c.norm_eps = f.attr_double("/", "norm_eps");
  return c;
}

std::unique_ptr<T5Model> load_fixture_model(const io::H5File& f, DType dtype) {
  auto model = std::make_unique<T5Model>(fixture_config(f), 0);
  model->to(dtype);
  const auto params = model->named_parameters();
  EXPECT_EQ(f.list("/model").size(), params.size());
  for (auto& [name, t] : params) model->load_parameter(name, f.read("/model/" + name));
  return model;
}

testing::ParityResult run_parity(DType dtype) {
  auto f = io::H5File::open(fixture(), io::H5File::Mode::Read);
  auto model = load_fixture_model(f, dtype);
  const std::string d = dtype == DType::f64 ? "/f64" : "/f32";
  const Tensor ids = f.read("/batch/input_ids"), mask = f.read("/batch/attention_mask");
  const Tensor labels = f.read("/batch/labels");
  const Tensor dec = T5Model::shift_right(labels, 0, 0);
  EXPECT_TRUE(testing::bitwise_equal(dec, f.read("/batch/decoder_input_ids").to(DType::i64)));

  Tensor logits = model->forward(ids, dec, mask);
  Tensor loss = model->loss(ids, labels, mask);
  loss.backward();
  EXPECT_EQ(logits.dtype(), dtype);
  const testing::ParityResult r =
      testing::compare_with_fixture(f, d, loss, logits, model->named_parameters());
  return r;
}

TEST(T5ParityTest, MatchesHuggingFaceInF32) {
  testing::expect_parity(run_parity(DType::f32), DType::f32);
}

TEST(T5ParityTest, MatchesHuggingFaceInF64) {
  testing::expect_parity(run_parity(DType::f64), DType::f64);
}

TEST(T5DecodeTest, GreedyWithCacheEqualsRecomputeAndHuggingFace) {
  auto f = io::H5File::open(fixture(), io::H5File::Mode::Read);
  const Tensor ids = f.read("/batch/input_ids"), mask = f.read("/batch/attention_mask");
  const Tensor hf = f.read("/generate/f64").to(DType::i64);
  for (DType dtype : {DType::f32, DType::f64}) {
    auto model = load_fixture_model(f, dtype);
    T5GenerateOptions opt;
    opt.max_new_tokens = hf.size(1) - 1;
    const Tensor cached = model->generate(ids, mask, opt);
    opt.use_cache = false;
    const Tensor full = model->generate(ids, mask, opt);
    EXPECT_TRUE(testing::bitwise_equal(cached, full)) << dtype_name(dtype);
    EXPECT_TRUE(testing::bitwise_equal(cached, hf))
        << dtype_name(dtype) << ": " << shape_str(cached.shape()) << " vs "
        << shape_str(hf.shape());
    EXPECT_TRUE(model->is_training());  // generate restores the mode
  }
}

TEST(T5DecodeTest, StepLogitsEqualFullDecoderLogits) {
  auto f = io::H5File::open(fixture(), io::H5File::Mode::Read);
  const Tensor ids = f.read("/batch/input_ids"), mask = f.read("/batch/attention_mask");
  const Tensor dec = f.read("/batch/decoder_input_ids").to(DType::i64);
  for (DType dtype : {DType::f32, DType::f64}) {
    auto model = load_fixture_model(f, dtype);
    NoGradGuard no_grad;
    const Tensor memory = model->encode(ids, mask);
    const Tensor full = model->decode(dec, memory, mask);
    T5DecodeState state = model->start_decoding(memory, mask, dec.size(1));
    // A prefill of 5 tokens, then one at a time.
    std::vector<Tensor> parts{model->decode_step(dec.narrow(1, 0, 5), state)};
    for (int64_t t = 5; t < dec.size(1); ++t)
      parts.push_back(model->decode_step(dec.narrow(1, t, 1), state));
    EXPECT_EQ(state.positions(), dec.size(1));
    const double err = rel_err(cat(parts, 1), full);
    EXPECT_LT(err, dtype == DType::f64 ? 1e-12 : 1e-5) << dtype_name(dtype);
  }
}

TEST(T5ModelTest, ParameterCounts) {
  const T5Config base = t5_preset("t5-base");
  const int64_t n = T5Model::count_parameters(base);
  std::printf("t5-base (nanoT5 t5-v1_1-base): %lld parameters\n", static_cast<long long>(n));
  EXPECT_EQ(n, 247577856);  // the 248M of nanoT5's README
  for (const std::string& name : t5_preset_names()) {
    for (bool shared : {true, false}) {
      T5Config c = t5_preset(name);
      c.share_position_bias = shared;
      // t5-base without the random init (which takes ~20 s on a busy 2-core machine): the
      // count is structural.
      const bool big = name == "t5-base";
      T5Model m(c, big ? std::nullopt : std::optional<uint64_t>(1));
      EXPECT_EQ(m.num_parameters(), T5Model::count_parameters(c)) << name << " " << shared;
      if (big && shared) {
        EXPECT_EQ(m.num_parameters(), 247577856);
      }
      std::printf("%s (share_position_bias %d): %lld parameters\n", name.c_str(), int(shared),
                  static_cast<long long>(m.num_parameters()));
    }
  }
  EXPECT_THROW(t5_preset("t5-huge"), Error);
}

TEST(T5ModelTest, NamesAndInits) {
  const T5Config c = t5_preset("t5-small");
  T5Model m(c, 3);
  for (const char* name :
       {"shared.weight", "encoder.layers.0.rel_bias.weight", "decoder.layers.0.rel_bias.weight",
        "encoder.layers.3.ffn.gate_proj.weight", "decoder.layers.3.cross_attn.k_proj.weight",
        "decoder.norm.weight", "lm_head.weight"})
    EXPECT_TRUE(m.has_parameter(name)) << name;
  EXPECT_FALSE(m.has_parameter("encoder.layers.1.rel_bias.weight"));
  for (const auto& [name, t] : m.named_parameters())
    EXPECT_EQ(name.find("bias") == std::string::npos || name.find("rel_bias") != std::string::npos,
              true)
        << "no biases: " << name;
  const double d = double(c.d_model);
  const std::vector<std::pair<std::string, double>> stds = {
      {"shared.weight", 1.0},
      {"lm_head.weight", 1.0},
      {"encoder.layers.0.attn.q_proj.weight", 1.0 / std::sqrt(d * double(c.d_kv))},
      {"encoder.layers.0.attn.k_proj.weight", 1.0 / std::sqrt(d)},
      {"decoder.layers.1.cross_attn.v_proj.weight", 1.0 / std::sqrt(d)},
      {"decoder.layers.1.self_attn.o_proj.weight", 1.0 / std::sqrt(double(c.inner_dim()))},
      {"encoder.layers.2.ffn.up_proj.weight", 1.0 / std::sqrt(d)},
      {"encoder.layers.2.ffn.down_proj.weight", 1.0 / std::sqrt(double(c.d_ff))},
  };
  for (const auto& [name, want] : stds) {
    const Tensor w = m.parameter(name).to(DType::f64);
    const double got = std::sqrt(mean(square(w)).item<double>());
    EXPECT_NEAR(got / want, 1.0, 0.03) << name;
  }
  EXPECT_EQ(sum(m.parameter("encoder.norm.weight")).item<float>(), float(c.d_model));
}

// Per-block tables (NTNG) holding block 0's values compute exactly what the shared table does.
TEST(T5ModelTest, PerBlockBiasWithEqualTablesEqualsSharedBias) {
  T5Config c = t5_preset("t5-tiny");
  c.vocab = 50;
  T5Model shared(c, 7);
  c.share_position_bias = false;
  T5Model own(c, 7);
  EXPECT_EQ(own.num_parameters(), shared.num_parameters() + 2 * (c.n_layers - 1) * 32 * c.n_heads);
  for (const auto& [name, t] : own.named_parameters()) {
    std::string src = name;
    if (name.find("rel_bias") != std::string::npos)
      src = name.substr(0, name.find('.')) + ".layers.0.rel_bias.weight";
    own.load_parameter(name, shared.parameter(src));
  }
  const Tensor ids = testing::random_ids(2, 9, c.vocab, 1);
  const Tensor labels = testing::random_ids(2, 6, c.vocab, 2);
  EXPECT_TRUE(testing::bitwise_equal(own.loss(ids, labels), shared.loss(ids, labels)));
}

TEST(T5ModelTest, DropoutOnlyWhenTrainingAndReproducible) {
  T5Config c = t5_preset("t5-tiny");
  c.vocab = 50;
  c.dropout = 0.1;
  T5Model m(c, 7);
  const Tensor ids = testing::random_ids(2, 9, c.vocab, 1);
  const Tensor labels = testing::random_ids(2, 6, c.vocab, 2);
  const Tensor a = m.loss(ids, labels), b = m.loss(ids, labels);
  EXPECT_TRUE(testing::bitwise_equal(a, b));
  m.set_step(1);
  EXPECT_FALSE(testing::bitwise_equal(m.loss(ids, labels), a));
  m.eval();
  const Tensor e = m.loss(ids, labels);
  c.dropout = 0;
  T5Model plain(c, 7);
  plain.eval();
  EXPECT_TRUE(testing::bitwise_equal(e, plain.loss(ids, labels)));
}

TEST(T5ModelTest, RejectsBadInputs) {
  T5Config c = t5_preset("t5-tiny");
  c.vocab = 50;
  T5Model m(c, 7);
  const Tensor ids = testing::random_ids(2, 9, c.vocab, 1);
  EXPECT_THROW(m.encode(ids, zeros({2, 8}, DType::b8)), Error);
  EXPECT_THROW(m.encode(ids.to(DType::f32)), Error);
  c.relative_max_distance = 10;
  EXPECT_THROW(T5Model(c, 0), Error);
  EXPECT_GT(T5Model::flops_per_example(t5_preset("t5-base"), 512, 114), 0);
}

}  // namespace
}  // namespace strata::models
