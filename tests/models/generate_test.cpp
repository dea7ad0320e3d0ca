// KV-cache decoding against full recomputation, and the sampling rules.
#include <gtest/gtest.h>

#include "core/autograd/grad_mode.h"
#include "core/error.h"
#include "models/generate.h"
#include "test_util.h"

namespace strata::models {
namespace {

using testing::random_ids;
using testing::rel_err;
using testing::tiny_config;

DecoderConfig sharp_config() {
  auto c = tiny_config();
  c.init_std = 0.3;  // peaked logits, so greedy and sampling have something to choose
  return c;
}

// Logits fed token by token through the cache equal the full-sequence logits.
void check_cached_logits(DType dtype, double tol) {
  DecoderLM m(sharp_config(), 21);
  m.to(dtype);
  m.eval();
  NoGradGuard ng;
  const Tensor ids = random_ids(2, 12, 64, 5);
  const Tensor full = m.forward(ids);
  ModelCache cache = m.make_cache(2, 12);
  std::vector<Tensor> parts{m.forward_step(ids.narrow(1, 0, 5), cache)};  // prefill 5
  for (int64_t t = 5; t < 9; ++t) parts.push_back(m.forward_step(ids.narrow(1, t, 1), cache));
  parts.push_back(m.forward_step(ids.narrow(1, 9, 3), cache));  // a multi-token chunk
  EXPECT_EQ(cache.positions(), 12);
  const Tensor stepped = cat(parts, 1);
  ASSERT_EQ(stepped.shape(), full.shape());
  EXPECT_LT(rel_err(stepped, full), tol) << dtype_name(dtype);
  EXPECT_THROW(m.forward_step(ids.narrow(1, 0, 1), cache), Error);  // capacity 12 is full
}

TEST(GenerateTest, CachedLogitsEqualFullRecomputationF32) {
  check_cached_logits(DType::f32, 1e-5);
}
TEST(GenerateTest, CachedLogitsEqualFullRecomputationF64) {
  check_cached_logits(DType::f64, 1e-12);
}

TEST(GenerateTest, GreedyWithCacheEqualsWithout) {
  DecoderLM m(sharp_config(), 4);
  const Tensor prompt = random_ids(3, 4, 64, 9);
  GenerateOptions o;
  o.max_new_tokens = 24;
  const Tensor cached = generate(m, prompt, o);
  o.use_cache = false;
  const Tensor plain = generate(m, prompt, o);
  EXPECT_EQ(cached.shape(), Shape({3, 28}));
  EXPECT_EQ(cached.to_vector<int64_t>(), plain.to_vector<int64_t>());
  EXPECT_EQ(cached.narrow(1, 0, 4).to_vector<int64_t>(), prompt.to_vector<int64_t>());
  EXPECT_TRUE(m.is_training());  // mode restored
}

TEST(GenerateTest, SamplingIsReproducibleAndCacheIndependent) {
  DecoderLM m(sharp_config(), 4);
  const Tensor prompt = random_ids(2, 3, 64, 10);
  GenerateOptions o;
  o.greedy = false;
  o.temperature = 0.8;
  o.top_k = 20;
  o.top_p = 0.9;
  o.max_new_tokens = 16;
  o.seed = 99;
  const auto a = generate(m, prompt, o).to_vector<int64_t>();
  EXPECT_EQ(a, generate(m, prompt, o).to_vector<int64_t>());
  o.use_cache = false;
  EXPECT_EQ(a, generate(m, prompt, o).to_vector<int64_t>());
  o.seed = 100;
  EXPECT_NE(a, generate(m, prompt, o).to_vector<int64_t>());
}

TEST(GenerateTest, PickTokenRules) {
  const std::vector<double> logits = {1.0, 3.0, 2.0, 3.0, -1.0};
  GenerateOptions o;
  EXPECT_EQ(pick_token(logits, o, 0.7), 1);  // greedy: first maximum
  o.greedy = false;
  o.top_k = 1;
  EXPECT_EQ(pick_token(logits, o, 0.99), 1);
  o.top_k = 0;
  o.top_p = 1e-9;  // nucleus of one
  EXPECT_EQ(pick_token(logits, o, 0.99), 1);
  o.top_p = 1.0;
  o.top_k = 2;  // the two 3.0s, equally likely
  EXPECT_EQ(pick_token(logits, o, 0.49), 1);
  EXPECT_EQ(pick_token(logits, o, 0.51), 3);
  // Full distribution at temperature 1: the draw's position in the cumulative mass decides.
  o.top_k = 0;
  const double z = std::exp(1.0) + 2 * std::exp(3.0) + std::exp(2.0) + std::exp(-1.0);
  const double p1 = std::exp(3.0) / z;
  EXPECT_EQ(pick_token(logits, o, p1 * 0.999), 1);
  EXPECT_EQ(pick_token(logits, o, p1 * 1.001), 3);
  EXPECT_EQ(pick_token(logits, o, 0.9999), 4);
  o.temperature = 0;
  EXPECT_THROW(pick_token(logits, o, 0.5), Error);
}

// Empirical frequencies follow softmax(logits / T).
TEST(GenerateTest, SampledFrequenciesFollowTemperature) {
  const std::vector<double> logits = {0.0, 1.0, 2.0};
  GenerateOptions o;
  o.greedy = false;
  o.temperature = 2.0;
  const Philox rng(5, RngStream::Test, 0);
  std::vector<int> count(3, 0);
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++count[size_t(pick_token(logits, o, rng.uniform_f64(uint64_t(i))))];
  const double z = 1 + std::exp(0.5) + std::exp(1.0);
  EXPECT_NEAR(count[0] / double(n), 1 / z, 0.01);
  EXPECT_NEAR(count[2] / double(n), std::exp(1.0) / z, 0.01);
}

TEST(GenerateTest, EosPadsFinishedSequences) {
  DecoderLM m(sharp_config(), 4);
  const Tensor prompt = random_ids(1, 3, 64, 11);
  GenerateOptions o;
  o.max_new_tokens = 10;
  const auto free_run = generate(m, prompt, o).to_vector<int64_t>();
  o.eos_id = free_run[4];  // the second generated token
  const auto stopped = generate(m, prompt, o).to_vector<int64_t>();
  for (size_t i = 0; i < stopped.size(); ++i)
    EXPECT_EQ(stopped[i], i <= 4 ? free_run[i] : o.eos_id) << i;
}

}  // namespace
}  // namespace strata::models
