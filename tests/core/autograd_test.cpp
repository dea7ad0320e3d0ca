// The autograd engine: graph shapes, accumulation, hooks, deep graphs, recompute, misuse.
#include <gtest/gtest.h>

#include "core/ops.h"
#include "core/random/philox.h"

namespace strata {
namespace {

Tensor param(const Shape& s, uint64_t salt) {
  return randn(s, RandomKey{5, uint32_t(RngStream::Test), salt}, DType::f64)
      .set_requires_grad(true);
}

void expect_equal(const Tensor& a, const Tensor& b, double tol = 0) {
  ASSERT_EQ(a.shape(), b.shape());
  auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  for (size_t i = 0; i < va.size(); ++i) EXPECT_NEAR(va[i], vb[i], tol) << "element " << i;
}

TEST(Autograd, SharedSubgraphSumsBothPaths) {
  Tensor x = param({3}, 1);
  Tensor h = tanh(x);
  Tensor y = sum(h * h + h);  // h feeds two consumers
  y.backward();
  // d/dx (tanh^2 + tanh) = (2 tanh + 1) (1 - tanh^2)
  NoGradGuard g;
  Tensor t = tanh(x);
  expect_equal(x.grad(), (t * 2.0 + 1.0) * (1.0 - t * t), 1e-14);
}

TEST(Autograd, GradientsAccumulateAcrossBackwardCalls) {
  Tensor x = param({4}, 2);
  sum(x * 3.0).backward();
  sum(x * 2.0).backward();
  expect_equal(x.grad(), full({4}, 5.0, DType::f64));
}

TEST(Autograd, DeepChainOfHundredThousandNodes) {
  Tensor x = param({2}, 3);
  Tensor y = x;
  for (int i = 0; i < 100000; ++i) y = y * 1.0;
  sum(y).backward();
  expect_equal(x.grad(), ones({2}, DType::f64));
  // Destroying the graph must not recurse either: drop it here.
  y = Tensor();
}

TEST(Autograd, DeepGraphIsDestroyedWithoutBackward) {
  Tensor x = param({1}, 4);
  Tensor y = x;
  for (int i = 0; i < 200000; ++i) y = y + 1.0;
  y = Tensor();  // would overflow the stack with recursive teardown
  SUCCEED();
}

TEST(Autograd, GradReadyHookFiresOnceWithTheFinalGradient) {
  Tensor w = param({3}, 5);
  int calls = 0;
  std::vector<double> seen;
  w.register_grad_ready_hook([&](const Tensor& g) {
    ++calls;
    seen = g.to_vector<double>();
  });
  Tensor y = sum(w * 2.0) + sum(w * w) + sum(exp(w));  // three contributions
  y.backward();
  EXPECT_EQ(calls, 1);
  expect_equal(from_vector(seen, {3}), w.grad());
  NoGradGuard g;
  expect_equal(w.grad(), w * 2.0 + 2.0 + exp(w), 1e-14);
}

TEST(Autograd, HooksFireLastLayerFirst) {
  // Reverse creation order: the parameter used last in forward is final first, which is what
  // lets data-parallel reduction of late layers overlap the rest of backward.
  Tensor a = param({2, 2}, 6), b = param({2, 2}, 7), x = param({1, 2}, 8);
  std::vector<char> order;
  a.register_grad_ready_hook([&](const Tensor&) { order.push_back('a'); });
  b.register_grad_ready_hook([&](const Tensor&) { order.push_back('b'); });
  sum(matmul(matmul(x, a), b)).backward();
  EXPECT_EQ(order, (std::vector<char>{'b', 'a'}));
}

TEST(Autograd, NoGradGuardRecordsNothing) {
  Tensor x = param({2}, 9);
  NoGradGuard g;
  Tensor y = x * 2.0;
  EXPECT_FALSE(y.requires_grad());
  EXPECT_EQ(y.grad_fn(), nullptr);
}

TEST(Autograd, DetachCutsHistoryAndSharesStorage) {
  Tensor x = param({2}, 10);
  Tensor y = x * 2.0;
  Tensor d = y.detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_EQ(d.raw_data(), y.raw_data());
  sum(y * d).backward();  // d is a constant
  NoGradGuard g;
  expect_equal(x.grad(), d * 2.0);
}

TEST(Autograd, BackwardOfNonScalarNeedsAGradient) {
  Tensor x = param({3}, 11);
  Tensor y = x * 2.0;
  try {
    y.backward();
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("non-scalar"), std::string::npos) << e.what();
  }
  y.backward(ones({3}, DType::f64));
  expect_equal(x.grad(), full({3}, 2.0, DType::f64));
}

TEST(Autograd, SecondBackwardNeedsRetainGraph) {
  Tensor x = param({2}, 12);
  Tensor y = sum(exp(x));
  y.backward({}, /*retain_graph=*/true);
  y.backward();
  NoGradGuard g;
  expect_equal(x.grad(), exp(x) * 2.0, 1e-14);
  EXPECT_THROW(y.backward(), Error);
}

TEST(Autograd, InPlaceWriteToSavedTensorIsCaught) {
  Tensor x = param({3}, 13);
  Tensor w = param({3}, 14);
  Tensor y = sum(x * w);  // mul saves x and w
  {
    NoGradGuard g;
    w.add_(ones({3}, DType::f64));
  }
  try {
    y.backward();
    FAIL() << "backward used a tensor that was modified in place";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("'mul'"), std::string::npos) << m;
    EXPECT_NE(m.find("modified in place"), std::string::npos) << m;
  }
}

TEST(Autograd, InPlaceOnTensorRequiringGradNeedsNoGrad) {
  Tensor x = param({3}, 15);
  EXPECT_THROW(x.add_(x), Error);
  NoGradGuard g;
  x.add_(x);  // optimizer-style update
}

TEST(Autograd, RecomputeGivesIdenticalGradients) {
  Tensor x = param({4, 6}, 16), w1 = param({8, 6}, 17), w2 = param({6, 8}, 18);
  auto block = [&](const std::vector<Tensor>& in) {
    Tensor h = gelu(linear(in[0], w1));
    h = dropout(h, 0.25, RandomKey{3, uint32_t(RngStream::Dropout), 1});
    return layer_norm(linear(h, w2) + in[0], Tensor(), Tensor());
  };
  sum(square(block({x}))).backward();
  const Tensor gx = x.grad().clone(), g1 = w1.grad().clone(), g2 = w2.grad().clone();
  x.set_grad({});
  w1.set_grad({});
  w2.set_grad({});
  sum(square(recompute(block, {x}))).backward();
  expect_equal(x.grad(), gx);
  expect_equal(w1.grad(), g1);
  expect_equal(w2.grad(), g2);
}

TEST(Autograd, GradientOfUnusedOutputBranchIsZero) {
  Tensor x = param({6}, 19);
  auto parts = split(x, {2, 4}, 0);
  sum(parts[0]).backward();
  auto g = x.grad().to_vector<double>();
  EXPECT_EQ(g, (std::vector<double>{1, 1, 0, 0, 0, 0}));
}

}  // namespace
}  // namespace strata
