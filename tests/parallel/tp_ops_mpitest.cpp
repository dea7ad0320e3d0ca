// The tensor-parallel communication ops under mpirun, TP over every rank: the four mappings'
// exact forward and backward values, the vocab-parallel cross-entropy against strata::cross_entropy
// on the gathered logits, and an f64 finite-difference check of every op parallel/ registers in
// core's op registry as the family kTensorParallelOps (core's suite leaves those to this file).
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "core/autograd/node.h"
#include "core/ops.h"
#include "core/ops/registry.h"
#include "parallel/tp_cross_entropy.h"
#include "parallel/tp_mappings.h"
#include "tests/models/test_util.h"
#include "tests/parallel/tp_test_util.h"

namespace strata::parallel {
namespace {

using models::testing::rel_err;
using testing::Dist;
using testing::TpCase;
using testing::world_tp;

Tensor leaf(const Shape& shape, uint64_t seed, uint64_t salt) {
  return randn(shape, RandomKey{seed, uint32_t(RngStream::Test), salt, 0}, DType::f64)
      .set_requires_grad(true);
}

// Logits [rows, V] with V = 3 per rank, the same on every rank; rank r's slice is columns
// [3r, 3r + 3).
constexpr int64_t kRows = 5, kPerRank = 3;
Tensor global_logits(int P, DType dt = DType::f64) {
  return randn({kRows, kPerRank * P}, RandomKey{5, uint32_t(RngStream::Test), 9, 0}, DType::f64)
      .mul_(2.0)
      .to(dt);
}
// Targets over the whole vocabulary, with an ignored row.
Tensor targets(int P) {
  const int64_t V = kPerRank * P;
  return from_vector<int64_t>({0, V - 1, -100, 4 % V, (V / 2) % V}, {kRows});
}

std::vector<TpCase> cases() {
  std::vector<TpCase> c;
  c.push_back({"copy_to_tp",
               [](Communicator&) -> std::vector<Tensor> {
                 return {leaf({2, 3}, 1, 0)};
               },
               {Dist::Replicated},
               [](const std::vector<Tensor>& in, Communicator& tp) {
                 // Per-rank use after the copy, so each rank's gradient differs.
                 return copy_to_tp(in[0], tp) * double(tp.rank() + 1);
               },
               Dist::PerRank});
  c.push_back({"reduce_from_tp",
               [](Communicator& tp) -> std::vector<Tensor> {
                 return {leaf({2, 3}, 2, uint64_t(tp.rank()))};
               },
               {Dist::PerRank},
               [](const std::vector<Tensor>& in, Communicator& tp) {
                 return square(reduce_from_tp(in[0], tp));
               },
               Dist::Replicated});
  c.push_back({"scatter_to_tp",
               [](Communicator& tp) -> std::vector<Tensor> {
                 return {leaf({2, 2 * tp.size()}, 3, 0)};
               },
               {Dist::Replicated},
               [](const std::vector<Tensor>& in, Communicator& tp) {
                 return square(scatter_to_tp(in[0], tp));
               },
               Dist::PerRank});
  c.push_back({"gather_from_tp",
               [](Communicator& tp) -> std::vector<Tensor> {
                 return {leaf({2, 2}, 4, uint64_t(tp.rank()))};
               },
               {Dist::PerRank},
               [](const std::vector<Tensor>& in, Communicator& tp) {
                 return square(gather_from_tp(in[0], tp));
               },
               Dist::Replicated});
  for (const auto& [label, smoothing, reduction] :
       {std::tuple{"vocab_parallel_cross_entropy/mean", 0.0, "mean"},
        std::tuple{"vocab_parallel_cross_entropy/smoothed_sum", 0.2, "sum"},
        std::tuple{"vocab_parallel_cross_entropy/none", 0.1, "none"}}) {
    c.push_back(
        {label,
         [](Communicator& tp) -> std::vector<Tensor> {
           Tensor g = global_logits(tp.size());
           return {g.narrow(1, tp.rank() * kPerRank, kPerRank).contiguous().set_requires_grad(true),
                   targets(tp.size())};
         },
         {Dist::PerRank, Dist::Replicated},
         [smoothing, reduction](const std::vector<Tensor>& in, Communicator& tp) {
           return vocab_parallel_cross_entropy(in[0], in[1], tp, -100, smoothing, reduction);
         },
         Dist::Replicated});
  }
  return c;
}

TEST(TpOps, GradientsMatchCentralDifferences) {
  ASSERT_GE(world_tp().size(), 2) << "run under mpirun with at least 2 ranks";
  for (const TpCase& c : cases()) {
    SCOPED_TRACE(c.label);
    EXPECT_GT(testing::tp_gradcheck(c, world_tp()), 0) << c.label << " checked nothing";
  }
}

TEST(TpOps, EveryCommunicationOpHasAGradientCheck) {
  ASSERT_GE(world_tp().size(), 2);
  std::set<std::string> seen;
  for (const TpCase& c : cases()) {
    const Tensor y = c.fn(c.make_inputs(world_tp()), world_tp());
    std::vector<std::shared_ptr<autograd::Node>> stack{y.grad_fn()};
    std::set<autograd::Node*> visited;
    while (!stack.empty()) {
      auto n = stack.back();
      stack.pop_back();
      if (!n || !visited.insert(n.get()).second) continue;
      seen.insert(n->name());
      for (const auto& e : n->next) stack.push_back(e.node);
    }
  }
  const std::vector<std::string> family = op_family(kTensorParallelOps);
  // parallel/ registers these five beside their code; none may be lost.
  EXPECT_EQ(family.size(), 5u);
  for (const std::string& name : family)
    EXPECT_TRUE(seen.count(name)) << "communication op '" << name
                                  << "' has no gradient check in tests/parallel";
}

TEST(TpMappings, CopyToTpIsIdentityForwardAndSumsGradients) {
  Communicator& tp = world_tp();
  const int P = tp.size();
  Tensor x = from_vector<double>({1, 2, 3}, {3}).set_requires_grad(true);
  Tensor y = copy_to_tp(x, tp);
  EXPECT_EQ(y.to_vector<double>(), x.to_vector<double>());
  sum(y * double(tp.rank() + 1)).backward();
  const double want = P * (P + 1) / 2.0;
  EXPECT_EQ(x.grad().to_vector<double>(), std::vector<double>(3, want));
}

TEST(TpMappings, ReduceFromTpSumsForwardAndPassesGradients) {
  Communicator& tp = world_tp();
  const int P = tp.size();
  Tensor x = full({2}, double(tp.rank() + 1), DType::f64).set_requires_grad(true);
  Tensor y = reduce_from_tp(x, tp);
  EXPECT_EQ(y.to_vector<double>(), std::vector<double>(2, P * (P + 1) / 2.0));
  EXPECT_EQ(x.to_vector<double>(), std::vector<double>(2, double(tp.rank() + 1)))
      << "the input must not be reduced in place";
  sum(y * from_vector<double>({3, 5}, {2})).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{3, 5}));
}

TEST(TpMappings, ScatterAndGatherAreInverseSlicings) {
  Communicator& tp = world_tp();
  const int P = tp.size(), r = tp.rank();
  // [2, 2P]: row i, column j holds 100 i + j.
  std::vector<double> v;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2 * P; ++j) v.push_back(100.0 * i + j);
  Tensor x = from_vector(v, {2, 2 * P}).set_requires_grad(true);
  Tensor s = scatter_to_tp(x, tp);
  EXPECT_EQ(s.shape(), (Shape{2, 2}));
  EXPECT_EQ(s.to_vector<double>(),
            (std::vector<double>{2.0 * r, 2.0 * r + 1, 100.0 + 2 * r, 100.0 + 2 * r + 1}));
  Tensor g = gather_from_tp(s, tp);
  EXPECT_EQ(g.to_vector<double>(), v);
  // d/dx of sum(gather(scatter(x)) * x.detach()) is x: the gather's backward keeps the slice,
  // the scatter's backward gathers it back.
  sum(g * x.detach()).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), v);
}

TEST(TpMappings, ScatterRejectsAnIndivisibleLastDim) {
  Communicator& tp = world_tp();
  const Tensor x = zeros({2, 2 * tp.size() + 1}, DType::f64);
  try {
    scatter_to_tp(x, tp);
    FAIL() << "scatter_to_tp accepted an indivisible last dim";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not divisible by the tensor-parallel size"),
              std::string::npos)
        << e.what();
  }
}

// Vocab-parallel cross-entropy equals strata::cross_entropy on the gathered logits: values and
// each rank's slice of the gradient, in f32 and f64, for every reduction and with smoothing.
TEST(TpCrossEntropy, EqualsSingleProcessCrossEntropy) {
  Communicator& tp = world_tp();
  const int P = tp.size(), r = tp.rank();
  for (DType dt : {DType::f32, DType::f64})
    for (double smoothing : {0.0, 0.1})
      for (const char* reduction : {"mean", "sum", "none"}) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + " smoothing " + std::to_string(smoothing) + " " +
                     reduction);
        const double tol = dt == DType::f64 ? 1e-13 : 2e-6;
        Tensor full_logits = global_logits(P, dt).set_requires_grad(true);
        const Tensor want = cross_entropy(full_logits, targets(P), -100, smoothing, reduction);
        const Tensor w = full(want.shape(), 1.5, dt);
        sum(want * w).backward();

        Tensor mine = full_logits.detach()
                          .narrow(1, r * kPerRank, kPerRank)
                          .contiguous()
                          .set_requires_grad(true);
        const Tensor got =
            vocab_parallel_cross_entropy(mine, targets(P), tp, -100, smoothing, reduction);
        EXPECT_LT(rel_err(got, want), tol);
        sum(got * w).backward();
        EXPECT_LT(rel_err(mine.grad(), full_logits.grad().narrow(1, r * kPerRank, kPerRank)), tol);
      }
}

TEST(TpCrossEntropy, BatchedLogitsAndI32Targets) {
  Communicator& tp = world_tp();
  const int P = tp.size(), r = tp.rank();
  // [2, 3, V] logits with [2, 3] i32 targets.
  const int64_t V = 4 * P;
  const Tensor full_logits =
      randn({2, 3, V}, RandomKey{8, uint32_t(RngStream::Test), 0, 0}, DType::f64);
  const Tensor t = from_vector<int32_t>({0, 1, int32_t(V - 1), -100, 5, 2}, {2, 3});
  const Tensor want = cross_entropy(full_logits, t);
  const Tensor got = vocab_parallel_cross_entropy(full_logits.narrow(2, r * 4, 4), t, tp);
  EXPECT_LT(rel_err(got, want), 1e-13);
}

TEST(TpCrossEntropy, RejectsTargetsOutsideTheVocab) {
  Communicator& tp = world_tp();
  const Tensor logits = zeros({2, 3}, DType::f32);
  const int64_t V = 3 * tp.size();
  try {
    vocab_parallel_cross_entropy(logits, from_vector<int64_t>({0, V}, {2}), tp);
    FAIL() << "accepted a target outside the vocab";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("outside the vocab"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace strata::parallel
