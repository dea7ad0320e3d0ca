// The AVX2+FMA attention tile operations against the portable ones, on ragged shapes (row and
// column tails, transposed operands, hidden entries), so the fallback the library takes on CPUs
// without AVX2 is tested on this machine too.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/kernels/cpu/attention_tile_ops.h"
#include "core/kernels/cpu/kernel_types.h"

namespace strata::cpu::attn {
namespace {

std::vector<float> random_vec(size_t n, unsigned seed, float amp = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-amp, amp);
  std::vector<float> x(n);
  for (auto& e : x) e = u(gen);
  return x;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, float tol) {
  ASSERT_EQ(got.size(), want.size());
  float scale = 1e-3f;
  for (float w : want) scale = std::max(scale, std::abs(w));
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isinf(want[i])) {
      EXPECT_EQ(got[i], want[i]) << i;
    } else {
      EXPECT_NEAR(got[i], want[i], tol * scale) << i;
    }
  }
}

class AttentionTileOps : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cpu_has_avx2_fma()) GTEST_SKIP() << "no AVX2+FMA on this CPU";
  }
  const TileOps<float>& fast = tile_ops_avx2();
  const TileOps<float>& portable = tile_ops_portable<float>();
};

TEST_F(AttentionTileOps, GemmMatchesPortable) {
  for (int m : {1, 5, 6, 13, 64})
    for (int n : {3, 8, 16, 37, 64, 80})
      for (int k : {1, 19, 64})
        for (bool trans_a : {false, true})
          for (bool acc : {false, true}) {
            SCOPED_TRACE(testing::Message()
                         << m << "x" << n << "x" << k << " t" << trans_a << " acc" << acc);
            const int lda = trans_a ? m + 3 : k + 2, ldb = n + 5, ldc = n + 1;
            const auto a = random_vec(size_t(trans_a ? k : m) * lda, 1);
            const auto b = random_vec(size_t(k) * ldb, 2);
            auto c1 = random_vec(size_t(m) * ldc, 3), c2 = c1;
            const ptrdiff_t rs = trans_a ? 1 : lda, cs = trans_a ? lda : 1;
            fast.gemm(m, n, k, a.data(), rs, cs, b.data(), ldb, c1.data(), ldc, acc);
            portable.gemm(m, n, k, a.data(), rs, cs, b.data(), ldb, c2.data(), ldc, acc);
            expect_close(c1, c2, 1e-5f);  // includes the padding columns, which must be untouched
          }
}

TEST_F(AttentionTileOps, SoftmaxStepAndProbsMatchPortable) {
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int cols : {1, 7, 8, 29, 64})
    for (int64_t lim0 : {int64_t{-3}, int64_t{2}, int64_t{1000}})
      for (bool with_bias : {false, true}) {
        SCOPED_TRACE(testing::Message() << cols << " lim0 " << lim0 << " bias " << with_bias);
        const int rows = 11, d = 20;
        const auto s0 = random_vec(size_t(rows) * cols, 4, 6.0f);
        const auto bias = random_vec(size_t(rows) * (cols + 2), 5, 2.0f);
        auto kadd = std::vector<float>(cols, 0.0f);
        for (int j = 0; j < cols; j += 3) kadd[j] = ninf;
        std::vector<float> m1(rows), l1(rows, 0.5f);
        for (int r = 0; r < rows; ++r) m1[r] = r % 4 == 0 ? ninf : 0.3f * r;
        for (int r = 0; r < rows; r += 4) l1[r] = 0;
        auto m2 = m1, l2 = l1, s1 = s0, s2 = s0;
        auto o1 = random_vec(size_t(rows) * d, 6), o2 = o1;
        const ScoreBlock<float> b1{
            s1.data(), rows,        cols, 0.7f, with_bias ? bias.data() : nullptr,
            cols + 2,  kadd.data(), lim0};
        ScoreBlock<float> b2 = b1;
        b2.s = s2.data();
        fast.softmax_step(b1, m1.data(), l1.data(), o1.data(), d, d);
        portable.softmax_step(b2, m2.data(), l2.data(), o2.data(), d, d);
        expect_close(s1, s2, 2e-6f);
        expect_close(m1, m2, 1e-6f);
        expect_close(l1, l2, 2e-6f);
        expect_close(o1, o2, 2e-6f);

        std::vector<float> lse(rows);
        for (int r = 0; r < rows; ++r) lse[r] = r == 2 ? ninf : 1.0f + 0.5f * r;
        s1 = s0;
        s2 = s0;
        fast.probs(b1, lse.data());
        portable.probs(b2, lse.data());
        expect_close(s1, s2, 2e-6f);
      }
}

TEST_F(AttentionTileOps, RowHelpersMatchPortable) {
  for (int n : {1, 9, 64, 77}) {
    const int rows = 5;
    const auto p = random_vec(size_t(rows) * n, 7);
    const auto di = random_vec(rows, 8);
    auto dp1 = random_vec(size_t(rows) * n, 9), dp2 = dp1;
    auto db1 = random_vec(size_t(rows) * (n + 4), 10), db2 = db1;
    fast.dscores(p.data(), dp1.data(), rows, n, di.data(), 0.3f, db1.data(), n + 4);
    portable.dscores(p.data(), dp2.data(), rows, n, di.data(), 0.3f, db2.data(), n + 4);
    expect_close(dp1, dp2, 1e-6f);
    expect_close(db1, db2, 1e-6f);

    const auto src = random_vec(size_t(n) * 19, 11);
    std::vector<float> t1(size_t(19) * (n + 2), 0.0f), t2 = t1;
    fast.transpose(src.data(), 19, n, 17, t1.data(), n + 2);
    portable.transpose(src.data(), 19, n, 17, t2.data(), n + 2);
    EXPECT_EQ(t1, t2);

    auto x1 = random_vec(n, 12), x2 = x1;
    const auto y = random_vec(n, 13);
    fast.add(x1.data(), y.data(), n);
    portable.add(x2.data(), y.data(), n);
    EXPECT_EQ(x1, x2);
    EXPECT_NEAR(fast.dot(x1.data(), y.data(), n), portable.dot(x1.data(), y.data(), n), 1e-5f * n);
  }
}

}  // namespace
}  // namespace strata::cpu::attn
