// GradReducer under mpirun (2 and 3 ranks): averages, bucketing, launches during backward,
// unused parameters, no_sync accumulation, misuse errors and bitwise agreement across ranks.
#include <gtest/gtest.h>

#include <cstring>

#include "core/ops.h"
#include "core/random/philox.h"
#include "parallel/grad_reducer.h"
#include "parallel/mpi_communicator.h"

namespace strata::parallel {
namespace {

class WorldEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    comm_ = MpiCommunicator::world("dp");
    comm_->set_timeout(std::chrono::seconds(120));
  }
  void TearDown() override { comm_.reset(); }
  static MpiCommunicator& comm() { return *comm_; }

 private:
  static inline std::unique_ptr<MpiCommunicator> comm_;
};
// gtest owns registered environments.
const auto* const kWorld = ::testing::AddGlobalTestEnvironment(new WorldEnvironment);
MpiCommunicator& dp() {
  return WorldEnvironment::comm();
}

using Params = std::vector<std::pair<std::string, Tensor>>;

Tensor param(const Shape& shape, DType d = DType::f32) {
  Tensor p = zeros(shape, d);
  p.set_requires_grad(true);
  return p;
}

// Rank r's coefficients for a parameter: small integers, so sums over ranks are exact.
Tensor coeff(int r, int salt, const Shape& shape, DType d) {
  std::vector<double> v(size_t(numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = double((r + 1) * (int(i % 5) - 2) + salt);
  return from_vector(v, shape).to(d);
}

// The gradient of sum(p * coeff) averaged over the group, computed locally.
Tensor mean_coeff(int salt, const Shape& shape, DType d) {
  Tensor s = zeros(shape, DType::f64);
  for (int r = 0; r < dp().size(); ++r) s.add_(coeff(r, salt, shape, DType::f64));
  return s.mul_(1.0 / dp().size()).to(d);
}

Tensor weighted(const Tensor& p, int salt) {
  return sum(mul(p, coeff(dp().rank(), salt, p.shape(), p.dtype())));
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const auto x = a.to(DType::f64).to_vector<double>(), y = b.to(DType::f64).to_vector<double>();
  double d = 0;
  for (size_t i = 0; i < x.size(); ++i) d = std::max(d, std::abs(x[i] - y[i]));
  return d;
}

TEST(GradReducer, AveragesEveryParameterOverTheGroup) {
  const Params ps{{"a", param({5})}, {"b", param({3, 4})}, {"c", param({7}, DType::f64)}};
  GradReducer r(ps, dp());
  Tensor loss = add(add(weighted(ps[0].second, 1), weighted(ps[1].second, 2)),
                    weighted(ps[2].second, 3).to(DType::f32));
  loss.backward();
  r.finish();
  for (int k = 0; k < 3; ++k) {
    const Tensor& p = ps[size_t(k)].second;
    ASSERT_TRUE(p.grad().defined()) << ps[size_t(k)].first;
    EXPECT_LT(max_abs_diff(p.grad(), mean_coeff(k + 1, p.shape(), p.dtype())),
              p.dtype() == DType::f64 ? 1e-15 : 1e-6)
        << ps[size_t(k)].first;
  }
}

TEST(GradReducer, BucketsFollowReverseRegistrationOrderTheCapAndTheDtype) {
  Params ps;
  for (int i = 0; i < 6; ++i) ps.push_back({"p" + std::to_string(i), param({100})});
  ps.push_back({"wide", param({10}, DType::f64)});
  ps.push_back({"big", param({1000})});
  GradReducer r(ps, dp(), GradReducerOptions{1000});
  const std::vector<std::vector<std::string>> want{
      {"big"}, {"wide"}, {"p5", "p4"}, {"p3", "p2"}, {"p1", "p0"}};
  EXPECT_EQ(r.bucket_names(), want);
}

TEST(GradReducer, LaunchesBucketsDuringBackwardInBucketOrder) {
  Params ps;
  for (int i = 0; i < 6; ++i) ps.push_back({"p" + std::to_string(i), param({100})});
  GradReducer r(ps, dp(), GradReducerOptions{1000});
  Tensor loss = weighted(ps[0].second, 0);
  for (int i = 1; i < 6; ++i) loss = add(loss, weighted(ps[size_t(i)].second, i));
  loss.backward();
  r.finish();
  EXPECT_EQ(r.launched_during_backward(), 3);
  for (int i = 0; i < 6; ++i)
    EXPECT_LT(max_abs_diff(ps[size_t(i)].second.grad(), mean_coeff(i, {100}, DType::f32)), 1e-6);

  // p5 (first bucket) unused: nothing may launch before it, so every bucket waits for finish().
  ps[5].second.set_grad(Tensor());
  for (auto& [n, p] : ps) p.set_grad(Tensor());
  Tensor partial = weighted(ps[0].second, 0);
  for (int i = 1; i < 5; ++i) partial = add(partial, weighted(ps[size_t(i)].second, i));
  partial.backward();
  r.finish();
  EXPECT_EQ(r.launched_during_backward(), 0);
  EXPECT_EQ(max_abs_diff(ps[5].second.grad(), zeros({100})), 0.0);
  EXPECT_LT(max_abs_diff(ps[0].second.grad(), mean_coeff(0, {100}, DType::f32)), 1e-6);
}

TEST(GradReducer, UnusedParametersGetZerosOrTheOtherRanksAverage) {
  const Params ps{{"used", param({4})}, {"rank0_only", param({4})}, {"never", param({4})}};
  GradReducer r(ps, dp());
  Tensor loss = weighted(ps[0].second, 1);
  if (dp().rank() == 0) loss = add(loss, weighted(ps[1].second, 2));
  loss.backward();
  r.finish();
  EXPECT_LT(max_abs_diff(ps[0].second.grad(), mean_coeff(1, {4}, DType::f32)), 1e-6);
  const Tensor only0 = coeff(0, 2, {4}, DType::f64).mul_(1.0 / dp().size());
  EXPECT_LT(max_abs_diff(ps[1].second.grad(), only0), 1e-6);
  ASSERT_TRUE(ps[2].second.grad().defined());
  EXPECT_EQ(max_abs_diff(ps[2].second.grad(), zeros({4})), 0.0);
}

TEST(GradReducer, NoSyncAccumulatesLocallyAndTheLastPassReducesTheSum) {
  const Params ps{{"w", param({6})}, {"v", param({3})}};
  GradReducer r(ps, dp());
  {
    auto guard = r.no_sync();
    EXPECT_FALSE(r.sync());
    add(weighted(ps[0].second, 1), weighted(ps[1].second, 1)).backward();
  }
  EXPECT_TRUE(r.sync());
  // Local accumulation only: this rank's own coefficients.
  EXPECT_EQ(max_abs_diff(ps[0].second.grad(), coeff(dp().rank(), 1, {6}, DType::f32)), 0.0);
  // The last micro-batch uses only w; v's accumulated grad still goes into the reduction.
  weighted(ps[0].second, 2).backward();
  r.finish();
  const Tensor want_w = add(mean_coeff(1, {6}, DType::f64), mean_coeff(2, {6}, DType::f64));
  EXPECT_LT(max_abs_diff(ps[0].second.grad(), want_w), 1e-6);
  EXPECT_LT(max_abs_diff(ps[1].second.grad(), mean_coeff(1, {3}, DType::f32)), 1e-6);
}

TEST(GradReducer, MisuseIsAnErrorOnEveryRank) {
  const Params ps{{"w", param({6})}};
  GradReducer r(ps, dp());
  weighted(ps[0].second, 1).backward();
  std::string msg;
  try {
    weighted(ps[0].second, 1).backward();
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("'w' became final twice before finish()"), std::string::npos) << msg;
  r.finish();  // the first pass's reduction is still in flight; collect it

  {
    auto guard = r.no_sync();
    EXPECT_THROW(r.finish(), Error);
  }

  Params mine{{"w", param({6})}};
  if (dp().rank() == 0) mine.push_back({"extra", param({2})});
  std::string mismatch;
  try {
    GradReducer bad(mine, dp());
  } catch (const Error& e) {
    mismatch = e.what();
  }
  EXPECT_NE(mismatch.find("disagree on the parameters"), std::string::npos) << mismatch;
}

TEST(GradReducer, AveragesAreBitwiseEqualOnEveryRank) {
  Params ps;
  for (int i = 0; i < 4; ++i) ps.push_back({"p" + std::to_string(i), param({5000})});
  GradReducer r(ps, dp(), GradReducerOptions{30000});
  Tensor loss;
  for (int i = 0; i < 4; ++i) {
    const Tensor c = randn(
        {5000}, RandomKey{3, uint32_t(RngStream::Test), uint64_t(dp().rank()), uint64_t(i) * 5000});
    const Tensor term = sum(mul(ps[size_t(i)].second, c));
    loss = loss.defined() ? add(loss, term) : term;
  }
  loss.backward();
  r.finish();
  for (auto& [name, p] : ps) {
    const Tensor all = dp().all_gather(p.grad().unsqueeze(0), 0, "test.gather");
    for (int k = 0; k < dp().size(); ++k)
      EXPECT_EQ(std::memcmp(all.select(0, k).contiguous().raw_data(), p.grad().raw_data(),
                            5000 * sizeof(float)),
                0)
          << name << " rank " << k;
  }
}

}  // namespace
}  // namespace strata::parallel
