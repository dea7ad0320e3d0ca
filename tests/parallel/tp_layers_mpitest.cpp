// The tensor-parallel layers under mpirun, TP over every rank, against their single-process
// counterparts built from the same seed: the same initial numbers (bitwise, once gathered), the
// same outputs, input gradients and (gathered) parameter gradients, in f32 and f64.
#include <gtest/gtest.h>

#include "core/ops.h"
#include "models/lm_head.h"
#include "models/tp_embedding.h"
#include "models/tp_linear.h"
#include "models/tp_lm_head.h"
#include "parallel/tp_mappings.h"
#include "tests/models/test_util.h"
#include "tests/parallel/tp_test_util.h"

namespace strata::models {
namespace {

using parallel::Communicator;
using parallel::testing::gather_global;
using parallel::testing::world_tp;
using testing::bitwise_equal;
using testing::rel_err;

constexpr uint64_t kSeed = 20261123;

double tolerance(DType dt) {
  return dt == DType::f64 ? 1e-13 : 1e-6;
}

Tensor input(const Shape& shape, DType dt, uint64_t salt) {
  return randn(shape, RandomKey{3, uint32_t(RngStream::Test), salt, 0}, DType::f64)
      .to(dt)
      .set_requires_grad(true);
}

// Every parameter of `tp_module`, gathered, equals the same-named one of `single`; with
// `grads`, their gradients instead (within tol).
void expect_same_parameters(const Module& tp_module, const Module& single, Communicator& tp,
                            bool grads, double tol) {
  for (const auto& [name, t] : single.named_parameters()) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(tp_module.has_parameter(name));
    const Sharding& sh = tp_module.sharding(name);
    EXPECT_EQ(sh.global_shape, t.shape());
    const Tensor local = tp_module.parameter(name);
    if (!grads) {
      EXPECT_TRUE(bitwise_equal(gather_global(local, sh, tp), t));
      continue;
    }
    ASSERT_TRUE(local.grad().defined() && t.grad().defined());
    EXPECT_LT(rel_err(gather_global(local.grad(), sh, tp), t.grad()), tol);
  }
}

TEST(TpLayers, ColumnParallelLinearEqualsLinear) {
  Communicator& tp = world_tp();
  const int64_t in = 6, out = 4 * tp.size();
  for (DType dt : {DType::f32, DType::f64})
    for (auto mode :
         {ColumnParallelLinear::Input::Replicated, ColumnParallelLinear::Input::InRegion}) {
      SCOPED_TRACE(dtype_name(dt));
      Linear single(in, out, true, Init::normal(0.5), Init::uniform(-1, 1));
      ColumnParallelLinear col(in, out, true, Init::normal(0.5), Init::uniform(-1, 1), tp, mode);
      single.init_parameters(kSeed);
      col.init_parameters(kSeed);
      single.to(dt);
      col.to(dt);
      expect_same_parameters(col, single, tp, false, 0);
      const Sharding& sh = col.sharding("weight");
      EXPECT_EQ(sh.dim, 0);
      EXPECT_EQ(sh.part, tp.rank());
      EXPECT_EQ(sh.parts, tp.size());
      EXPECT_EQ(col.weight().shape(), (Shape{out / tp.size(), in}));

      Tensor x1 = input({2, 3, in}, dt, 1), x2 = input({2, 3, in}, dt, 1);
      const Tensor want = single.forward(x1);
      const Tensor x_in =
          mode == ColumnParallelLinear::Input::InRegion ? parallel::copy_to_tp(x2, tp) : x2;
      const Tensor got = parallel::gather_from_tp(col.forward(x_in), tp);
      EXPECT_LT(rel_err(got, want), tolerance(dt));
      const Tensor w = input(want.shape(), dt, 2).detach();
      sum(want * w).backward();
      sum(got * w).backward();
      EXPECT_LT(rel_err(x2.grad(), x1.grad()), tolerance(dt));
      expect_same_parameters(col, single, tp, true, tolerance(dt));
    }
}

TEST(TpLayers, RowParallelLinearEqualsLinear) {
  Communicator& tp = world_tp();
  const int64_t in = 4 * tp.size(), out = 5;
  for (DType dt : {DType::f32, DType::f64})
    for (auto mode : {RowParallelLinear::Input::Split, RowParallelLinear::Input::Replicated}) {
      SCOPED_TRACE(dtype_name(dt));
      Linear single(in, out, true, Init::normal(0.5), Init::uniform(-1, 1));
      RowParallelLinear row(in, out, true, Init::normal(0.5), Init::uniform(-1, 1), tp, mode);
      single.init_parameters(kSeed);
      row.init_parameters(kSeed);
      single.to(dt);
      row.to(dt);
      expect_same_parameters(row, single, tp, false, 0);
      EXPECT_EQ(row.sharding("weight").dim, 1);
      EXPECT_TRUE(row.sharding("bias").is_replicated());

      Tensor x1 = input({2, 3, in}, dt, 3), x2 = input({2, 3, in}, dt, 3);
      const Tensor want = single.forward(x1);
      const Tensor x_in =
          mode == RowParallelLinear::Input::Split ? parallel::scatter_to_tp(x2, tp) : x2;
      const Tensor got = row.forward(x_in);
      EXPECT_LT(rel_err(got, want), tolerance(dt));
      const Tensor w = input(want.shape(), dt, 4).detach();
      sum(want * w).backward();
      sum(got * w).backward();
      EXPECT_LT(rel_err(x2.grad(), x1.grad()), tolerance(dt));
      expect_same_parameters(row, single, tp, true, tolerance(dt));
    }
}

TEST(TpLayers, VocabParallelEmbeddingAndTiedHeadEqualSingleProcess) {
  Communicator& tp = world_tp();
  const int64_t V = 5 * tp.size(), d = 4;
  for (DType dt : {DType::f32, DType::f64}) {
    SCOPED_TRACE(dtype_name(dt));
    auto single = std::make_shared<Embedding>(V, d, Init::normal(1.0));
    auto par = std::make_shared<VocabParallelEmbedding>(V, d, Init::normal(1.0), tp);
    single->init_parameters(kSeed);
    par->init_parameters(kSeed);
    single->to(dt);
    par->to(dt);
    expect_same_parameters(*par, *single, tp, false, 0);
    EXPECT_EQ(par->vocab_start(), tp.rank() * 5);
    const LMHead head(single);
    const ParallelLMHead par_head(par);

    // Ids from every rank's slice, repeated ids included; targets with an ignored position.
    const Tensor ids = testing::random_ids(3, 4, V, 11);
    auto tv = testing::random_ids(3, 4, V, 12).to_vector<int64_t>();
    tv[5] = -100;
    const Tensor targets = from_vector(tv, {3, 4});
    const Tensor e1 = single->forward(ids), e2 = par->forward(ids);
    EXPECT_TRUE(bitwise_equal(e1, e2)) << "an embedding lookup is exact under any split";
    const Tensor h = input({3, 4, d}, dt, 5);
    const Tensor l1 = head.forward(e1 * h), l2 = par_head.forward(e2 * h);
    EXPECT_LT(rel_err(l2, l1), tolerance(dt));
    const Tensor loss1 = head.loss(head.local_logits(e1 * h), targets);
    const Tensor loss2 = par_head.loss(par_head.local_logits(e2 * h), targets);
    EXPECT_LT(rel_err(loss2, loss1), tolerance(dt));
    loss1.backward();
    loss2.backward();
    expect_same_parameters(*par, *single, tp, true, tolerance(dt));
  }
}

TEST(TpLayers, UntiedParallelLMHeadEqualsLMHead) {
  Communicator& tp = world_tp();
  const int64_t V = 3 * tp.size(), d = 5;
  LMHead single(d, V, Init::normal(1.0));
  ParallelLMHead par(d, V, Init::normal(1.0), tp);
  single.init_parameters(kSeed);
  par.init_parameters(kSeed);
  single.to(DType::f64);
  par.to(DType::f64);
  expect_same_parameters(par, single, tp, false, 0);
  Tensor h1 = input({4, d}, DType::f64, 6), h2 = input({4, d}, DType::f64, 6);
  const Tensor t = from_vector<int64_t>({0, V - 1, -100, 2}, {4});
  const Tensor loss1 = single.loss(single.local_logits(h1), t, "sum");
  const Tensor loss2 = par.loss(par.local_logits(h2), t, "sum");
  EXPECT_LT(rel_err(loss2, loss1), 1e-13);
  loss1.backward();
  loss2.backward();
  EXPECT_LT(rel_err(h2.grad(), h1.grad()), 1e-13) << "copy_to_tp sums the hidden gradient";
  expect_same_parameters(par, single, tp, true, 1e-13);
}

}  // namespace
}  // namespace strata::models
