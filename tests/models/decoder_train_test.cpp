// The decoder learns: plain SGD on a repeated batch lowers the loss; dropout is keyed and off in
// eval mode.
#include <gtest/gtest.h>

#include "core/autograd/grad_mode.h"
#include "test_util.h"

namespace strata::models {
namespace {

using testing::random_ids;
using testing::rel_err;
using testing::tiny_config;

TEST(DecoderTrainTest, SgdLowersLossOnARepeatedBatch) {
  DecoderLM m(tiny_config(), 1);
  const Tensor ids = random_ids(4, 16, 64, 2);
  const Tensor targets = random_ids(4, 16, 64, 3);
  std::vector<float> losses;
  for (int step = 0; step < 30; ++step) {
    m.zero_grad();
    Tensor loss = m.loss(ids, targets);
    loss.backward();
    losses.push_back(loss.item<float>());
    NoGradGuard ng;
    for (auto& p : m.parameters()) p.add_(p.grad(), -1.0);
  }
  std::printf("loss: %.4f -> %.4f after %zu SGD steps (ln 64 = %.4f)\n", losses.front(),
              losses.back(), losses.size(), std::log(64.0));
  EXPECT_NEAR(losses.front(), std::log(64.0), 0.1);  // small init: near-uniform predictions
  EXPECT_LT(losses.back(), losses.front() - 1.0);
}

TEST(DecoderTrainTest, DropoutIsKeyedByStepAndOffInEval) {
  auto cfg = tiny_config();
  cfg.dropout = 0.2;
  DecoderLM m(cfg, 1);
  NoGradGuard ng;
  const Tensor ids = random_ids(2, 8, 64, 4);
  m.set_step(3);
  const Tensor a = m.forward(ids), b = m.forward(ids);
  EXPECT_TRUE(testing::bitwise_equal(a, b));
  m.set_step(4);
  EXPECT_GT(rel_err(m.forward(ids), a), 1e-3);
  m.eval();
  const Tensor e = m.forward(ids);
  auto plain = tiny_config();
  DecoderLM ref(plain, 1);
  EXPECT_TRUE(testing::bitwise_equal(e, ref.forward(ids)));
}

}  // namespace
}  // namespace strata::models
