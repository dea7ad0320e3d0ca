// Forward fused attention: a task owns a few query blocks of one head and sweeps the key blocks
// with an online softmax, so only one 64 x 64 score block per thread ever exists.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/kernels/cpu/attention_common.h"
#include "core/kernels/cpu/attention_kernels.h"
#include "core/kernels/cpu/attention_tile_ops.h"

namespace strata::cpu {

template <class T>
void attention_forward(const AttentionArgs<T>& a, T* out, acc_t<T>* lse) {
  static_assert(std::is_same_v<acc_t<T>, T>, "attention_forward: float and double only");
  attn::check_args(a, "attention_forward");
  STRATA_CHECK(out && lse, "attention_forward: got a null out or lse pointer, expected both");
  const auto& ops = attn::tile_ops<T>();
  const int64_t H = a.heads, Lq = a.q_len, Lk = a.kv_len;
  const int D = static_cast<int>(a.head_dim);
  const int64_t nqb = (Lq + attn::kBlockQ - 1) / attn::kBlockQ;
  // (128-key blocks measured no faster: the per-row costs of a softmax step are not the limit.)
  constexpr int64_t kBlockK = attn::kBlockK;
  const int64_t nkb = (Lk + kBlockK - 1) / kBlockK;
  // A task is a run of up to kGroup query blocks of one head: each packed key block then serves
  // several query blocks. Fewer blocks per task when that would leave threads idle. Rows are
  // computed the same way whatever the grouping, so the result does not depend on it.
  constexpr int64_t kGroup = 4;
  const int threads = attn::team_size();
  const int64_t heads_total = a.batch * H;
  const int64_t group = std::clamp<int64_t>(heads_total * nqb / (4 * threads), 1, kGroup);
  const int64_t ngroups = (nqb + group - 1) / group;
  const int64_t tasks = heads_total * ngroups;
  const T scale = static_cast<T>(a.scale);
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  constexpr int64_t kRows = kGroup * attn::kBlockQ;

#pragma omp parallel num_threads(threads)
  {
    std::vector<T> kt(D * kBlockK), s(attn::kBlockQ * kBlockK);
    std::vector<T> o(kRows * D), m(kRows), l(kRows);
    std::vector<T> kmask_buf, bias_buf;
    // Dynamic: under the causal rule later query blocks see more keys.
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t bh = t / ngroups, h = bh % H, b = bh / H;
      const int64_t r0 = t % ngroups * group * attn::kBlockQ;  // first query row of the task
      const int64_t rows = std::min(group * attn::kBlockQ, Lq - r0);
      std::fill(o.begin(), o.begin() + rows * D, T(0));
      std::fill(m.begin(), m.end(), kNegInf);
      std::fill(l.begin(), l.end(), T(0));
      for (int64_t kb = 0; kb < nkb; ++kb) {
        const int64_t j0 = kb * kBlockK;
        if (!attn::causal_block_visible(a, r0 + rows, j0)) break;
        const int nk = static_cast<int>(std::min<int64_t>(kBlockK, Lk - j0));
        const auto mask = attn::key_block_mask(a, b, j0, nk, kmask_buf);
        if (!mask.any_visible) continue;
        const T* kp = a.k + b * a.k_stride[0] + h * a.k_stride[1] + j0 * a.k_stride[2];
        const T* vp = a.v + b * a.v_stride[0] + h * a.v_stride[1] + j0 * a.v_stride[2];
        // K^T packed [D x nk] so the score micro-kernel reads contiguous key vectors.
        ops.transpose(kp, a.k_stride[2], nk, D, kt.data(), nk);
        for (int64_t i0 = r0; i0 < r0 + rows; i0 += attn::kBlockQ) {
          const int nq = static_cast<int>(std::min<int64_t>(attn::kBlockQ, r0 + rows - i0));
          if (!attn::causal_block_visible(a, i0 + nq, j0)) continue;  // later blocks see more
          const T* qp = a.q + b * a.q_stride[0] + h * a.q_stride[1] + i0 * a.q_stride[2];
          const int64_t lr = i0 - r0;  // local row of the task's state
          ops.gemm(nq, nk, D, qp, a.q_stride[2], 1, kt.data(), nk, s.data(), nk, false);
          const auto [bias, bias_ld] = attn::bias_block(a, b, h, i0, nq, j0, nk, bias_buf);
          const attn::ScoreBlock<T> sb{
              s.data(), nq, nk, scale, bias, bias_ld, mask.kadd, attn::causal_lim0(a, i0, j0, nk)};
          ops.softmax_step(sb, m.data() + lr, l.data() + lr, o.data() + lr * D, D, D);
          ops.gemm(nq, D, nk, s.data(), nk, 1, vp, a.v_stride[2], o.data() + lr * D, D, true);
        }
      }
      T* op = out + (bh * Lq + r0) * D;
      acc_t<T>* lp = lse + bh * Lq + r0;
      for (int64_t r = 0; r < rows; ++r) {
        // l == 0 only when every key of the row is hidden: out = 0, lse = -inf by definition.
        const bool empty = l[r] == T(0);
        const T inv = empty ? T(0) : T(1) / l[r];
        for (int d = 0; d < D; ++d) op[r * D + d] = o[r * D + d] * inv;
        lp[r] = empty ? kNegInf : m[r] + std::log(l[r]);
      }
    }
  }
}

template void attention_forward<float>(const AttentionArgs<float>&, float*, float*);
template void attention_forward<double>(const AttentionArgs<double>&, double*, double*);

}  // namespace strata::cpu
