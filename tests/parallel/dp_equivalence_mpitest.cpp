// Data parallelism changes nothing but the speed: a tiny DecoderLM trained for 3 AdamW steps on
// DP2 (each rank takes the samples r, r + 2 of the global batch, as the sampler deals them) has
// the gradients and parameters of the one-process run on the whole batch, within 1e-5 in f32
// and 1e-11 in f64, with and without gradient accumulation over 2 micro-batches. Runs on 2 ranks.
#include <gtest/gtest.h>

#include "models/test_util.h"
#include "optim/adamw.h"
#include "parallel/grad_reducer.h"
#include "parallel/mpi_communicator.h"

namespace strata::parallel {
namespace {

using models::DecoderLM;
using models::testing::random_ids;
using models::testing::rel_err;
using models::testing::tiny_config;
using Named = std::vector<std::pair<std::string, Tensor>>;

constexpr int kSteps = 3;
constexpr int64_t kBatch = 4, kLen = 16;

struct Trace {
  std::vector<Named> grads;  // after each step's backward (and reduction)
  Named params;              // after the last step
};

// lr 1e-3 and eps 1e-6 (nanoT5's): Adam divides by sqrt(v) + eps, so an element whose gradient
// is near zero moves by up to lr whatever the gradient's rounding noise; with lr / eps = 1e3, f32's
// summation noise (about 3e-7 of the largest gradient, present in any change of batch split, with
// or without DP) stays below 1e-5 of the parameters after 3 steps. (With lr 1e-2 and eps 1e-8 it
// reaches 4e-4 in f32, while f64 stays below 1e-12.)
std::unique_ptr<optim::AdamW> adamw(const DecoderLM& m) {
  std::vector<optim::NamedParam> named;
  for (const auto& [n, p] : m.named_parameters()) named.push_back({n, p});
  optim::Hyper h;
  h.lr = 1e-3;
  h.eps = 1e-6;
  h.weight_decay = 0.1;
  return std::make_unique<optim::AdamW>(optim::make_param_groups(named, h));
}

Named snapshot(const Named& ps, bool grads) {
  Named out;
  for (const auto& [n, p] : ps) out.push_back({n, (grads ? p.grad() : p).clone()});
  return out;
}

// Rows `rows` of a global batch of step `step`.
std::pair<Tensor, Tensor> batch(int step, const std::vector<int64_t>& rows) {
  const Tensor ids = random_ids(kBatch, kLen, 64, 100 + uint64_t(step));
  const Tensor targets = random_ids(kBatch, kLen, 64, 200 + uint64_t(step));
  std::vector<Tensor> i, t;
  for (int64_t r : rows) i.push_back(ids.narrow(0, r, 1)), t.push_back(targets.narrow(0, r, 1));
  return {cat(i, 0), cat(t, 0)};
}

// One process: the whole batch in one backward, or (shards) the DP ranks' rows {0, 2} and
// {1, 3} as two micro-batches of half weight.
Trace train_single(DType dtype, bool shards = false) {
  DecoderLM m(tiny_config(), 1);
  m.to(dtype);
  auto opt = adamw(m);
  Trace tr;
  for (int s = 0; s < kSteps; ++s) {
    opt->zero_grad();
    if (shards) {
      for (const std::vector<int64_t>& rows : {std::vector<int64_t>{0, 2}, {1, 3}}) {
        const auto [ids, targets] = batch(s, rows);
        affine(m.loss(ids, targets), 0.5, 0.0).backward();
      }
    } else {
      const auto [ids, targets] = batch(s, {0, 1, 2, 3});
      m.loss(ids, targets).backward();
    }
    tr.grads.push_back(snapshot(m.named_parameters(), true));
    opt->step();
  }
  tr.params = snapshot(m.named_parameters(), false);
  return tr;
}

// Data parallel: this rank's samples r, r + dp of each global batch, in `micro` micro-batches.
Trace train_dp(Communicator& dp, DType dtype, int micro) {
  DecoderLM m(tiny_config(), 1);
  m.to(dtype);
  GradReducer reducer(m.named_parameters(), dp, GradReducerOptions{16 << 10});  // several buckets
  auto opt = adamw(m);
  const int64_t r = dp.rank(), n = dp.size();
  std::vector<int64_t> mine;
  for (int64_t row = r; row < kBatch; row += n) mine.push_back(row);
  const int64_t per = int64_t(mine.size()) / micro;
  Trace tr;
  for (int s = 0; s < kSteps; ++s) {
    opt->zero_grad();
    for (int k = 0; k < micro; ++k) {
      auto guard = k + 1 < micro ? reducer.no_sync() : GradReducer::NoSync();
      const std::vector<int64_t> rows(mine.begin() + k * per, mine.begin() + (k + 1) * per);
      const auto [ids, targets] = batch(s, rows);
      affine(m.loss(ids, targets), 1.0 / micro, 0.0).backward();
    }
    reducer.finish();
    tr.grads.push_back(snapshot(m.named_parameters(), true));
    opt->step();
  }
  tr.params = snapshot(m.named_parameters(), false);
  return tr;
}

void expect_close(const Named& got, const Named& want, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  double worst = 0;
  std::string worst_name;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].first, want[i].first);
    const double e = rel_err(got[i].second, want[i].second);
    if (e >= worst) worst = e, worst_name = got[i].first;
  }
  std::printf("%s: worst relative error %.3g (%s)\n", what.c_str(), worst, worst_name.c_str());
  EXPECT_LT(worst, tol) << what << ": " << worst_name;
}

void expect_same_on_every_rank(Communicator& dp, const Named& ps) {
  for (const auto& [n, p] : ps) {
    const Tensor all = dp.all_gather(p.unsqueeze(0), 0, "test.params");
    for (int k = 0; k < dp.size(); ++k)
      EXPECT_TRUE(models::testing::bitwise_equal(all.select(0, k), p)) << n << " rank " << k;
  }
}

class DpEquivalence : public ::testing::TestWithParam<std::tuple<DType, int>> {};

TEST_P(DpEquivalence, MatchesTheOneProcessRunOnTheWholeBatch) {
  const auto [dtype, micro] = GetParam();
  auto dp = MpiCommunicator::world("dp");
  dp->set_timeout(std::chrono::seconds(120));
  ASSERT_EQ(dp->size(), 2) << "run on 2 ranks";
  const Trace single = train_single(dtype);
  const Trace par = train_dp(*dp, dtype, micro);
  const double tol = dtype == DType::f64 ? 1e-11 : 1e-5;
  const std::string tag = std::string(dtype_name(dtype)) + ", " + std::to_string(micro) + " micro";
  for (int s = 0; s < kSteps; ++s)
    expect_close(par.grads[size_t(s)], single.grads[size_t(s)], tol,
                 tag + ": grads of step " + std::to_string(s + 1));
  expect_close(par.params, single.params, tol, tag + ": params after 3 steps");
  expect_same_on_every_rank(*dp, par.params);
}

// Halving is exact and a two-rank sum is a + b on both ranks, so DP2 is bitwise the one-process
// run that accumulates the same two shards: the reducer adds no rounding of its own.
TEST(DpEquivalenceBitwise, EqualsOneProcessAccumulatingTheSameShards) {
  auto dp = MpiCommunicator::world("dp");
  ASSERT_EQ(dp->size(), 2) << "run on 2 ranks";
  const Trace single = train_single(DType::f32, true);
  const Trace par = train_dp(*dp, DType::f32, 1);
  for (int s = 0; s < kSteps; ++s)
    for (size_t i = 0; i < par.grads[size_t(s)].size(); ++i)
      EXPECT_TRUE(models::testing::bitwise_equal(par.grads[size_t(s)][i].second,
                                                 single.grads[size_t(s)][i].second))
          << "step " << s + 1 << " " << par.grads[size_t(s)][i].first;
  for (size_t i = 0; i < par.params.size(); ++i)
    EXPECT_TRUE(models::testing::bitwise_equal(par.params[i].second, single.params[i].second))
        << par.params[i].first;
}

INSTANTIATE_TEST_SUITE_P(Dtypes, DpEquivalence,
                         ::testing::Combine(::testing::Values(DType::f32, DType::f64),
                                            ::testing::Values(1, 2)));

}  // namespace
}  // namespace strata::parallel
