// Backward fused attention (flash-attention style): probabilities are recomputed block by block
// from the saved log-sum-exp, so no thread ever holds more than one 64 x 64 block of scores.
//
// Work is organised around key blocks: the task owning (member, key block) accumulates dK and dV
// of that block over all query blocks, so they need no reduction. dQ of a query block receives one
// tile per key block; the tiles are added in ascending key-block order, either directly (when a
// thread owns whole heads) or from per-key-block partial buffers reduced afterwards (when there
// are too few heads to keep the threads busy). Both ways perform the same additions in the same
// order, so the result is bitwise independent of the thread count.
//
// dbias with a bias broadcast over batch and/or heads: all (b, h) pairs that share a dbias slice
// form a "group" whose members are processed by one task in fixed (b, h) order, so the sum over
// the broadcast dimensions is race-free and deterministic.
#include <algorithm>
#include <vector>

#include "core/kernels/cpu/attention_common.h"
#include "core/kernels/cpu/attention_kernels.h"
#include "core/kernels/cpu/attention_tile_ops.h"

namespace strata::cpu {
namespace {

template <class T>
struct Backward {
  const AttentionArgs<T>& a;
  const T* lse;
  const T* dout;
  T* dq;
  T* dk;
  T* dv;
  T* dbias;
  const attn::TileOps<T>& ops;
  int64_t B, H, Lq, Lk;
  int D;
  int64_t nqb, nkb;
  T scale;
  // Groups share a dbias slice; members of a group are the (b, h) pairs summed into it.
  int64_t groups_b, groups_h, members_b, members_h;
  std::vector<T> di;  // rowsum(dout * out), [B, H, Lq]

  int64_t groups() const { return groups_b * groups_h; }
  int64_t members() const { return members_b * members_h; }
  // One of the group / member coordinates is always 0 in each dimension.
  int64_t batch_of(int64_t g, int64_t m) const { return g / groups_h + m / members_h; }
  int64_t head_of(int64_t g, int64_t m) const { return g % groups_h + m % members_h; }
  T* dbias_slice(int64_t g) const { return dbias ? dbias + g * Lq * Lk : nullptr; }
};

template <class T>
struct Scratch {
  std::vector<T> kt, vt, s, dp, dk_acc, dv_acc, dq_tile, kmask_buf, bias_buf;
  explicit Scratch(int D)
      : kt(D * attn::kBlockK),
        vt(D * attn::kBlockK),
        s(attn::kBlockQ * attn::kBlockK),
        dp(attn::kBlockQ * attn::kBlockK),
        dk_acc(attn::kBlockK * D),
        dv_acc(attn::kBlockK * D),
        dq_tile(attn::kBlockQ * D) {}
};

// Everything one key block kb of head (b, h) contributes: writes its dK / dV rows, adds to the
// dbias slice (may be null), and hands each query block's dQ tile to sink(qb, tile).
template <class T, class Sink>
void key_block(const Backward<T>& c, Scratch<T>& w, int64_t b, int64_t h, int64_t kb, T* dbias,
               Sink&& sink) {
  const auto& a = c.a;
  const int D = c.D;
  const int64_t bh = b * c.H + h;
  const int64_t j0 = kb * attn::kBlockK;
  const int nk = static_cast<int>(std::min<int64_t>(attn::kBlockK, c.Lk - j0));
  const auto mask = attn::key_block_mask(a, b, j0, nk, w.kmask_buf);
  std::fill(w.dk_acc.begin(), w.dk_acc.begin() + nk * D, T(0));
  std::fill(w.dv_acc.begin(), w.dv_acc.begin() + nk * D, T(0));
  if (mask.any_visible) {
    const T* kp = a.k + b * a.k_stride[0] + h * a.k_stride[1] + j0 * a.k_stride[2];
    const T* vp = a.v + b * a.v_stride[0] + h * a.v_stride[1] + j0 * a.v_stride[2];
    c.ops.transpose(kp, a.k_stride[2], nk, D, w.kt.data(), nk);
    c.ops.transpose(vp, a.v_stride[2], nk, D, w.vt.data(), nk);
    for (int64_t qb = 0; qb < c.nqb; ++qb) {
      const int64_t i0 = qb * attn::kBlockQ;
      const int nq = static_cast<int>(std::min<int64_t>(attn::kBlockQ, c.Lq - i0));
      if (!attn::causal_block_visible(a, i0 + nq, j0)) continue;
      const T* qp = a.q + b * a.q_stride[0] + h * a.q_stride[1] + i0 * a.q_stride[2];
      const T* dop = c.dout + (bh * c.Lq + i0) * D;
      T* s = w.s.data();
      T* dp = w.dp.data();
      // P = exp(S - lse), recomputed.
      c.ops.gemm(nq, nk, D, qp, a.q_stride[2], 1, w.kt.data(), nk, s, nk, false);
      const auto [bias, bias_ld] = attn::bias_block(a, b, h, i0, nq, j0, nk, w.bias_buf);
      const attn::ScoreBlock<T> sb{s,    nq,      nk,        c.scale,
                                   bias, bias_ld, mask.kadd, attn::causal_lim0(a, i0, j0, nk)};
      c.ops.probs(sb, c.lse + bh * c.Lq + i0);
      // dP = dO V^T, then dS = P (dP - D_i), kept scaled by `scale` for dQ and dK.
      c.ops.gemm(nq, nk, D, dop, D, 1, w.vt.data(), nk, dp, nk, false);
      c.ops.dscores(s, dp, nq, nk, c.di.data() + bh * c.Lq + i0, c.scale,
                    dbias ? dbias + i0 * c.Lk + j0 : nullptr, c.Lk);
      c.ops.gemm(nk, D, nq, s, 1, nk, dop, D, w.dv_acc.data(), D, true);  // dV += P^T dO
      c.ops.gemm(nk, D, nq, dp, 1, nk, qp, a.q_stride[2], w.dk_acc.data(), D,
                 true);  // dK += dS^T Q
      c.ops.gemm(nq, D, nk, dp, nk, 1, kp, a.k_stride[2], w.dq_tile.data(), D, false);  // dS K
      sink(qb, static_cast<const T*>(w.dq_tile.data()), nq);
    }
  }
  std::copy(w.dk_acc.begin(), w.dk_acc.begin() + nk * D, c.dk + (bh * c.Lk + j0) * D);
  std::copy(w.dv_acc.begin(), w.dv_acc.begin() + nk * D, c.dv + (bh * c.Lk + j0) * D);
}

// A thread owns whole groups: dQ tiles are added straight into dq in ascending key-block order.
template <class T>
void run_by_group(const Backward<T>& c, int threads) {
#pragma omp parallel num_threads(threads)
  {
    Scratch<T> w(c.D);
#pragma omp for schedule(dynamic)
    for (int64_t g = 0; g < c.groups(); ++g) {
      for (int64_t m = 0; m < c.members(); ++m) {
        const int64_t b = c.batch_of(g, m), h = c.head_of(g, m);
        T* dqh = c.dq + (b * c.H + h) * c.Lq * c.D;
        std::fill(dqh, dqh + c.Lq * c.D, T(0));
        for (int64_t kb = 0; kb < c.nkb; ++kb) {
          key_block(c, w, b, h, kb, c.dbias_slice(g), [&](int64_t qb, const T* tile, int nq) {
            T* dst = dqh + qb * attn::kBlockQ * c.D;
            for (int r = 0; r < nq; ++r) c.ops.add(dst + r * c.D, tile + r * c.D, c.D);
          });
        }
      }
    }
  }
}

// Tasks are (group, key block); dQ tiles go to per-key-block partial buffers, reduced afterwards
// in ascending key-block order. Members are processed in chunks to bound the buffer size.
template <class T>
void run_by_key_block(const Backward<T>& c, int threads) {
  const int64_t per_member = c.nkb * c.Lq * c.D;
  constexpr int64_t kBudget = int64_t{64} << 20;  // bytes of partial dQ tiles held at once
  const int64_t chunk =
      std::clamp<int64_t>(kBudget / (per_member * int64_t{sizeof(T)} * c.groups()), 1, c.members());
  std::vector<T> part(c.groups() * chunk * per_member);
  std::vector<uint8_t> written(c.groups() * chunk * c.nkb * c.nqb);
  for (int64_t m0 = 0; m0 < c.members(); m0 += chunk) {
    const int64_t mc = std::min(chunk, c.members() - m0);
    std::fill(written.begin(), written.end(), uint8_t{0});
#pragma omp parallel num_threads(threads)
    {
      Scratch<T> w(c.D);
#pragma omp for schedule(dynamic)
      for (int64_t t = 0; t < c.groups() * c.nkb; ++t) {
        const int64_t g = t / c.nkb, kb = t % c.nkb;
        for (int64_t ml = 0; ml < mc; ++ml) {
          const int64_t m = m0 + ml, slot = (g * chunk + ml) * c.nkb + kb;
          key_block(c, w, c.batch_of(g, m), c.head_of(g, m), kb, c.dbias_slice(g),
                    [&](int64_t qb, const T* tile, int nq) {
                      std::copy(tile, tile + nq * c.D,
                                part.data() + slot * c.Lq * c.D + qb * attn::kBlockQ * c.D);
                      written[slot * c.nqb + qb] = 1;
                    });
        }
      }
#pragma omp for schedule(static)
      for (int64_t t = 0; t < c.groups() * mc * c.nqb; ++t) {
        const int64_t qb = t % c.nqb, ml = t / c.nqb % mc, g = t / c.nqb / mc;
        const int64_t b = c.batch_of(g, m0 + ml), h = c.head_of(g, m0 + ml);
        const int64_t i0 = qb * attn::kBlockQ;
        const int nq = static_cast<int>(std::min<int64_t>(attn::kBlockQ, c.Lq - i0));
        T* dst = c.dq + ((b * c.H + h) * c.Lq + i0) * c.D;
        std::fill(dst, dst + nq * c.D, T(0));
        for (int64_t kb = 0; kb < c.nkb; ++kb) {
          const int64_t slot = (g * chunk + ml) * c.nkb + kb;
          if (!written[slot * c.nqb + qb]) continue;
          const T* src = part.data() + slot * c.Lq * c.D + i0 * c.D;
          for (int r = 0; r < nq; ++r) c.ops.add(dst + r * c.D, src + r * c.D, c.D);
        }
      }
    }
  }
}

}  // namespace

template <class T>
void attention_backward(const AttentionArgs<T>& a, const T* out, const acc_t<T>* lse, const T* dout,
                        T* dq, T* dk, T* dv, T* dbias) {
  static_assert(std::is_same_v<acc_t<T>, T>, "attention_backward: float and double only");
  attn::check_args(a, "attention_backward");
  STRATA_CHECK(
      out && lse && dout && dq && dk && dv,
      "attention_backward: got a null out, lse, dout, dq, dk or dv pointer, expected none");
  STRATA_CHECK(!dbias || a.bias, "attention_backward: got a dbias output without a bias input");
  const int D = static_cast<int>(a.head_dim);
  const bool sum_b = dbias && a.bias_stride[0] == 0;
  const bool sum_h = dbias && a.bias_stride[1] == 0;
  Backward<T> c{a,
                lse,
                dout,
                dq,
                dk,
                dv,
                dbias,
                attn::tile_ops<T>(),
                a.batch,
                a.heads,
                a.q_len,
                a.kv_len,
                D,
                (a.q_len + attn::kBlockQ - 1) / attn::kBlockQ,
                (a.kv_len + attn::kBlockK - 1) / attn::kBlockK,
                static_cast<T>(a.scale),
                sum_b ? 1 : a.batch,
                sum_h ? 1 : a.heads,
                sum_b ? a.batch : 1,
                sum_h ? a.heads : 1,
                {}};
  const int threads = attn::team_size();
  if (a.batch * a.heads == 0) return;
  const int64_t rows = a.batch * a.heads * a.q_len;
  c.di.resize(rows);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t r = 0; r < rows; ++r) c.di[r] = c.ops.dot(dout + r * D, out + r * D, D);
  if (dbias) {
    const int64_t n = c.groups() * a.q_len * a.kv_len;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t i = 0; i < n; ++i) dbias[i] = T(0);
  }
  // Whole groups per thread when there are enough of them to balance; otherwise split the key
  // blocks too. Both orders give identical bits (see the file comment).
  const int64_t g = c.groups();
  if (g >= 4 * threads || g % threads == 0 || a.q_len == 0 || a.kv_len == 0)
    run_by_group(c, threads);
  else
    run_by_key_block(c, threads);
}

template void attention_backward<float>(const AttentionArgs<float>&, const float*, const float*,
                                        const float*, float*, float*, float*, float*);
template void attention_backward<double>(const AttentionArgs<double>&, const double*, const double*,
                                         const double*, double*, double*, double*, double*);

}  // namespace strata::cpu
