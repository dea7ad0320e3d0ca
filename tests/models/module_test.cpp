// Module: names, counts, modes, dtype conversion and deterministic initialisation.
#include <gtest/gtest.h>

#include <map>

#include "core/error.h"
#include "core/runtime.h"
#include "models/module.h"
#include "test_util.h"

namespace strata::models {
namespace {

using testing::bitwise_equal;
using testing::tiny_config;

std::vector<std::string> names_of(const Module& m) {
  std::vector<std::string> out;
  for (auto& [n, t] : m.named_parameters()) out.push_back(n);
  return out;
}

TEST(ModuleTest, DecoderParameterNamesAreCheckpointKeys) {
  auto cfg = tiny_config();
  cfg.n_layers = 1;
  DecoderLM m(cfg, 0);
  const std::vector<std::string> want = {
      "embed.weight",
      "layers.0.attn_norm.weight",
      "layers.0.attn.q_proj.weight",
      "layers.0.attn.k_proj.weight",
      "layers.0.attn.v_proj.weight",
      "layers.0.attn.o_proj.weight",
      "layers.0.ffn_norm.weight",
      "layers.0.ffn.gate_proj.weight",
      "layers.0.ffn.up_proj.weight",
      "layers.0.ffn.down_proj.weight",
      "norm.weight",
      "lm_head.weight",
  };
  EXPECT_EQ(names_of(m), want);
  EXPECT_EQ(m.parameter("layers.0.attn.k_proj.weight").shape(), Shape({16, 32}));  // 2 kv heads x 8
  EXPECT_EQ(m.parameter("layers.0.ffn.down_proj.weight").shape(), Shape({32, 64}));
}

TEST(ModuleTest, ParameterCountsMatchTheFormula) {
  for (bool tied : {false, true}) {
    const auto cfg = tiny_config(tied);
    DecoderLM m(cfg, 0);
    // Per layer: q 32x32, k,v 16x32, o 32x32, ffn 3 x 32x64, two norms 32.
    const int64_t per_layer = 1024 + 512 + 512 + 1024 + 3 * 2048 + 64;
    const int64_t embed = 64 * 32;
    const int64_t want = 2 * per_layer + 32 + embed + (tied ? 0 : embed);
    EXPECT_EQ(m.num_parameters(), want) << "tied " << tied;
    EXPECT_EQ(DecoderLM::count_parameters(cfg), want);
    EXPECT_EQ(m.num_non_embedding_parameters(), want - embed);
    EXPECT_EQ(DecoderLM::count_parameters(cfg, false), want - embed);
    EXPECT_EQ(m.has_parameter("lm_head.weight"), !tied);
    EXPECT_EQ(int64_t(m.parameters().size()), tied ? 20 : 21);
  }
}

TEST(ModuleTest, FlopsPerTokenFormula) {
  const auto cfg = tiny_config();
  DecoderLM m(cfg, 0);
  // N_matmul: linear weights of both layers + the head's vocab x d_model.
  const double n_matmul = 2.0 * (1024 + 512 + 512 + 1024 + 3 * 2048) + 64 * 32;
  EXPECT_DOUBLE_EQ(m.flops_per_token(16), 6 * n_matmul + 12.0 * 2 * 4 * 8 * 16);
  EXPECT_DOUBLE_EQ(m.flops_per_token(), m.flops_per_token(cfg.max_seq));
  // Tying changes the parameter count, not the compute.
  EXPECT_DOUBLE_EQ(DecoderLM::flops_per_token(tiny_config(true), 16), m.flops_per_token(16));
}

TEST(ModuleTest, SameSeedGivesBitwiseSameWeights) {
  DecoderLM a(tiny_config(), 7), b(tiny_config(), 7), c(tiny_config(), 8);
  auto pa = a.named_parameters(), pb = b.named_parameters(), pc = c.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  int differ = 0;
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(bitwise_equal(pa[i].second, pb[i].second)) << pa[i].first;
    if (!pa[i].first.ends_with("norm.weight")) differ += !bitwise_equal(pa[i].second, pc[i].second);
  }
  EXPECT_EQ(differ, int(pa.size()) - 5);  // every random tensor changes with the seed
}

TEST(ModuleTest, WeightsDoNotDependOnThreadCount) {
  auto& rt = Runtime::get();
  const int saved = rt.num_threads();
  rt.set_num_threads(1);
  DecoderLM a(tiny_config(), 3);
  rt.set_num_threads(2);
  DecoderLM b(tiny_config(), 3);
  rt.set_num_threads(saved);
  for (auto& [n, t] : a.named_parameters()) EXPECT_TRUE(bitwise_equal(t, b.parameter(n))) << n;
}

// Two modules registering the same names in opposite orders.
class Pair : public Module {
 public:
  explicit Pair(bool reversed) : Module("Pair") {
    if (reversed) {
      b_ = register_module("b", std::make_shared<Linear>(4, 3, true, Init::normal(1.0)));
      a_ = register_module("a", std::make_shared<Linear>(5, 6, false, Init::uniform(-1, 1)));
      w_ = &register_parameter("w", {7}, Init::normal(0.5, 2.0));
    } else {
      w_ = &register_parameter("w", {7}, Init::normal(0.5, 2.0));
      a_ = register_module("a", std::make_shared<Linear>(5, 6, false, Init::uniform(-1, 1)));
      b_ = register_module("b", std::make_shared<Linear>(4, 3, true, Init::normal(1.0)));
    }
  }
  std::shared_ptr<Linear> a_, b_;
  Tensor* w_ = nullptr;
};

TEST(ModuleTest, ConstructionOrderDoesNotChangeWeights) {
  Pair x(false), y(true);
  x.init_parameters(11);
  y.init_parameters(11);
  EXPECT_NE(names_of(x), names_of(y));
  for (auto& [n, t] : x.named_parameters()) EXPECT_TRUE(bitwise_equal(t, y.parameter(n))) << n;
  // Init specs are honoured: uniform in range, normal near its mean, bias zero.
  for (float v : x.parameter("a.weight").to_vector<float>()) EXPECT_TRUE(v >= -1 && v < 1);
  for (float v : x.parameter("b.bias").to_vector<float>()) EXPECT_EQ(v, 0.0f);
}

TEST(ModuleTest, InitStatisticsFollowTheSpec) {
  auto cfg = tiny_config();
  cfg.init_std = 0.05;
  DecoderLM m(cfg, 1);
  const auto w = m.parameter("layers.1.ffn.up_proj.weight").to_vector<float>();
  double s = 0, s2 = 0;
  for (float v : w) s += v, s2 += double(v) * v;
  const double mean = s / double(w.size()), sd = std::sqrt(s2 / double(w.size()) - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.005);
  EXPECT_NEAR(sd, 0.05, 0.005);
  for (float v : m.parameter("norm.weight").to_vector<float>()) EXPECT_EQ(v, 1.0f);
}

TEST(ModuleTest, TrainEvalPropagates) {
  DecoderLM m(tiny_config(), 0);
  m.eval();
  for (auto& [n, sub] : m.named_modules()) EXPECT_FALSE(sub->is_training()) << n;
  m.train();
  for (auto& [n, sub] : m.named_modules()) EXPECT_TRUE(sub->is_training()) << n;
}

TEST(ModuleTest, ToDtypeConvertsEverythingAndKeepsTies) {
  DecoderLM m(tiny_config(true), 5);
  const Tensor before = m.parameter("embed.weight").clone();
  m.to(DType::f64);
  EXPECT_EQ(m.dtype(), DType::f64);
  for (auto& [n, t] : m.named_parameters()) {
    EXPECT_EQ(t.dtype(), DType::f64) << n;
    EXPECT_TRUE(t.requires_grad()) << n;
  }
  EXPECT_EQ(testing::rel_err(m.parameter("embed.weight"), before), 0.0);
  Tensor logits = m.forward(testing::random_ids(1, 5, 64, 0));
  EXPECT_EQ(logits.dtype(), DType::f64);
  // The tied head still reads the (converted) embedding: gradient flows into embed.weight only.
  m.loss(testing::random_ids(1, 5, 64, 0), testing::random_ids(1, 5, 64, 1)).backward();
  EXPECT_TRUE(m.parameter("embed.weight").grad().defined());
  m.zero_grad();
  for (auto& t : m.parameters()) EXPECT_FALSE(t.grad().defined());
}

TEST(ModuleTest, ErrorsNameTheParameter) {
  DecoderLM m(tiny_config(), 0);
  try {
    m.parameter("layers.0.atn.q_proj.weight");
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layers.0.attn.q_proj.weight"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(m.load_parameter("norm.weight", zeros({31})), Error);
  m.load_parameter("norm.weight", full({32}, 2.0, DType::f64));
  EXPECT_EQ(m.parameter("norm.weight").to_vector<float>()[3], 2.0f);
  auto bad = tiny_config();
  bad.n_kv_heads = 3;
  EXPECT_THROW(DecoderLM(bad, 0), Error);
}

TEST(ModuleTest, StableNameHashIsFnv1a) {
  EXPECT_EQ(stable_name_hash(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(stable_name_hash("a"), 0xaf63dc4c8601ec8cull);
}

}  // namespace
}  // namespace strata::models
