// Backward fused attention on CUDA (FlashAttention-2 style): probabilities are recomputed tile by
// tile from the saved log-sum-exp, never held for a whole row.
//
//   1. delta_i = rowsum(dO_i * O_i), one warp per row.
//   2. dK / dV: one block per key tile sweeps the query tiles and accumulates its dK and dV rows
//      in registers; the same block adds dS into the dbias slice when the bias gradient is asked.
//   3. dQ: one block per query tile sweeps the key tiles, as the forward does.
// Every output element is written by one thread in a fixed order, so results are deterministic
// (no float atomics).
//
// dbias with a bias broadcast over batch and/or heads: the (b, h) pairs that share a dbias slice
// form a group. A dK/dV block owns one key tile of one group and walks a chunk of the group's
// members in fixed order, adding into its own partial slice; a last pass sums the chunks' partial
// slices in chunk order. The chunk count depends only on the shapes, so the bits do too.
#include <algorithm>

#include "core/cuda/cuda_context.h"
#include "core/kernels/cuda/cuda_attention_common.cuh"
#include "core/kernels/cuda/cuda_backend.h"
#include "core/ops/factory.h"

namespace strata::cuda {
namespace attn {
namespace {

template <class T>
struct BwdArgs {
  using A = acc_t<T>;
  const A* lse;    // [B, H, Lq]
  const A* delta;  // [B, H, Lq]
  const T* dout;   // contiguous [B, H, Lq, D]
  T* dq;
  T* dk;
  T* dv;
  A* dbias_part;  // [chunks][groups][Lq][Lk], null without a bias gradient
  int groups, groups_h, members, members_h, chunks, per_chunk;
};

// delta = rowsum(dout * out), accumulated in A; one warp per row.
template <class T>
__global__ void __launch_bounds__(kThreads)
    delta_kernel(const T* __restrict__ out, const T* __restrict__ dout,
                 acc_t<T>* __restrict__ delta, int64_t rows, int D) {
  using A = acc_t<T>;
  const int64_t row = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x % 32;
  const T* o = out + row * D;
  const T* g = dout + row * D;
  A s = A(0);
  for (int d = lane; d < D; d += 32) s = fma(convert<A>(g[d]), convert<A>(o[d]), s);
  s = warp_sum(s);
  if (lane == 0) delta[row] = s;
}

template <class T, int kMaxD, bool kExact, int kRows, int kCols>
__global__ void __launch_bounds__(kThreads) dkdv_kernel(AttnParams<T> p, BwdArgs<T> g) {
  using A = acc_t<T>;
  constexpr int BK = kWarps * kRows, BQ = 32 * kCols, kDT = kMaxD / 32;
  constexpr int ld = tile_pitch(kMaxD), lp = BQ + 1;
  const int D = kExact ? kMaxD : p.D;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* ks = reinterpret_cast<A*>(smem_raw);  // [BK][ld]
  A* vs = ks + BK * ld;                    // [BK][ld]
  A* qs = vs + BK * ld;                    // [BQ][ld]
  A* dos = qs + BQ * ld;                   // [BQ][ld]
  A* pt = dos + BQ * ld;                   // [BK][lp]: P^T of the tile
  A* dst = pt + BK * lp;                   // [BK][lp]: dS^T of the tile
  A* bt = dst + BK * lp;                   // [BK][lp]: bias^T of the tile (only with a bias)
  A* lse_s = bt + (p.bias ? BK * lp : 0);  // [BQ]
  A* delta_s = lse_s + BQ;                 // [BQ]

  const int nkt = (p.Lk + BK - 1) / BK;
  const int kt = int(blockIdx.x % unsigned(nkt));
  const int rest = int(blockIdx.x / unsigned(nkt));
  const int ch = rest % g.chunks, grp = rest / g.chunks;
  const int j0 = kt * BK;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int m_begin = ch * g.per_chunk, m_end = min(m_begin + g.per_chunk, g.members);
  A* dbias =
      g.dbias_part ? g.dbias_part + (int64_t(ch) * g.groups + grp) * int64_t(p.Lq) * p.Lk : nullptr;
  // Under the causal rule query i sees key j0 iff i >= j0 - (Lk - Lq).
  int i_first = 0;
  if (p.causal) {
    const int64_t f = int64_t(j0) - (int64_t(p.Lk) - p.Lq);
    i_first = f < 0 ? 0 : f > p.Lq ? p.Lq : int(f);
  }

  for (int mem = m_begin; mem < m_end; ++mem) {
    const int b = grp / g.groups_h + mem / g.members_h;
    const int h = grp % g.groups_h + mem % g.members_h;
    const int64_t bh = int64_t(b) * p.H + h;
    __syncthreads();  // the previous member's reads of the K / V tiles are done
    load_tile(ks, ld, p.k + b * p.k_s[0] + h * p.k_s[1], p.k_s[2], j0, BK, p.Lk, D);
    load_tile(vs, ld, p.v + b * p.v_s[0] + h * p.v_s[1], p.v_s[2], j0, BK, p.Lk, D);
    bool kept[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int j = j0 + warp * kRows + r;
      kept[r] = j < p.Lk && p.key_kept(b, j);
    }
    A dk[kRows][kDT], dv[kRows][kDT];
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
      for (int t = 0; t < kDT; ++t) dk[r][t] = dv[r][t] = A(0);

    const T* qbase = p.q + b * p.q_s[0] + h * p.q_s[1];
    const T* dobase = g.dout + bh * p.Lq * D;
    for (int i0 = i_first / BQ * BQ; i0 < p.Lq; i0 += BQ) {
      __syncthreads();  // the previous query tile's reads are done
      load_tile(qs, ld, qbase, p.q_s[2], i0, BQ, p.Lq, D);
      load_tile(dos, ld, dobase, int64_t(D), i0, BQ, p.Lq, D);
      for (int e = threadIdx.x; e < BQ; e += kThreads) {
        const int i = i0 + e;
        lse_s[e] = i < p.Lq ? g.lse[bh * p.Lq + i] : neg_inf<A>();
        delta_s[e] = i < p.Lq ? g.delta[bh * p.Lq + i] : A(0);
      }
      if (p.bias) {
        // Read along keys (coalesced when the bias is key-contiguous), store transposed.
        for (int e = threadIdx.x; e < BQ * BK; e += kThreads) {
          const int jj = e % BK, ii = e / BK;
          const int i = i0 + ii, j = j0 + jj;
          bt[jj * lp + ii] = (i < p.Lq && j < p.Lk) ? p.bias_at(b, h, i, j) : A(0);
        }
      }
      __syncthreads();

      A s[kRows][kCols], dp[kRows][kCols];
#pragma unroll
      for (int r = 0; r < kRows; ++r)
#pragma unroll
        for (int c = 0; c < kCols; ++c) s[r][c] = dp[r][c] = A(0);
#pragma unroll 4
      for (int d = 0; d < D; ++d) {
        A qq[kCols], dd[kCols];
#pragma unroll
        for (int c = 0; c < kCols; ++c) {
          qq[c] = qs[(lane + 32 * c) * ld + d];
          dd[c] = dos[(lane + 32 * c) * ld + d];
        }
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          const A kv = ks[(warp * kRows + r) * ld + d];
          const A vv = vs[(warp * kRows + r) * ld + d];
#pragma unroll
          for (int c = 0; c < kCols; ++c) {
            s[r][c] = fma(kv, qq[c], s[r][c]);
            dp[r][c] = fma(vv, dd[c], dp[r][c]);
          }
        }
      }
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const int row = warp * kRows + r, j = j0 + row;
#pragma unroll
        for (int c = 0; c < kCols; ++c) {
          const int ii = lane + 32 * c, i = i0 + ii;
          const A lse_i = lse_s[ii];
          A pr = A(0);
          if (kept[r] && i < p.Lq && lse_i != neg_inf<A>() && !p.causal_hidden(i, j)) {
            A x = s[r][c] * p.scale;
            if (p.bias) x += bt[row * lp + ii];
            pr = dev_exp(x - lse_i);
          }
          pt[row * lp + ii] = pr;
          dst[row * lp + ii] = pr * (dp[r][c] - delta_s[ii]);
        }
      }
      __syncthreads();  // the dbias pass below reads every warp's rows

      const int nq = min(BQ, p.Lq - i0);
      for (int ii = 0; ii < nq; ++ii) {
        A qv[kDT], gv[kDT];
#pragma unroll
        for (int t = 0; t < kDT; ++t) {
          const int d = lane + 32 * t;
          const bool in = kExact || d < D;
          qv[t] = in ? qs[ii * ld + d] : A(0);
          gv[t] = in ? dos[ii * ld + d] : A(0);
        }
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          const A pr = pt[(warp * kRows + r) * lp + ii];
          const A ds = dst[(warp * kRows + r) * lp + ii];
#pragma unroll
          for (int t = 0; t < kDT; ++t) {
            dv[r][t] = fma(pr, gv[t], dv[r][t]);
            dk[r][t] = fma(ds, qv[t], dk[r][t]);
          }
        }
      }
      if (dbias) {
        // A thread always updates the same entries (the mapping depends only on the tile), so
        // the members' additions happen in member order.
        for (int e = threadIdx.x; e < nq * BK; e += kThreads) {
          const int ii = e / BK, jj = e % BK, j = j0 + jj;
          if (j < p.Lk) dbias[int64_t(i0 + ii) * p.Lk + j] += dst[jj * lp + ii];
        }
      }
    }

#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int j = j0 + warp * kRows + r;
      if (j >= p.Lk) continue;
      T* dkrow = g.dk + (bh * p.Lk + j) * D;
      T* dvrow = g.dv + (bh * p.Lk + j) * D;
#pragma unroll
      for (int t = 0; t < kDT; ++t) {
        const int d = lane + 32 * t;
        if (kExact || d < D) {
          dkrow[d] = convert<T>(dk[r][t] * p.scale);
          dvrow[d] = convert<T>(dv[r][t]);
        }
      }
    }
  }
}

template <class T, int kMaxD, bool kExact, int kRows, int kCols>
__global__ void __launch_bounds__(kThreads) dq_kernel(AttnParams<T> p, BwdArgs<T> g) {
  using A = acc_t<T>;
  constexpr int BQ = kWarps * kRows, BK = 32 * kCols, kDT = kMaxD / 32;
  constexpr int ld = tile_pitch(kMaxD);
  const int D = kExact ? kMaxD : p.D;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* qs = reinterpret_cast<A*>(smem_raw);  // [BQ][ld]
  A* dos = qs + BQ * ld;                   // [BQ][ld]
  A* ks = dos + BQ * ld;                   // [BK][ld]
  A* vs = ks + BK * ld;                    // [BK][ld]
  A* dss = vs + BK * ld;                   // [BQ][BK]: dS of the tile, rows private to a warp

  const int64_t BH = p.bh_count();
  const int nqt = (p.Lq + BQ - 1) / BQ;
  const int64_t bh = int64_t(blockIdx.x) % BH;
  const int qt = nqt - 1 - int(int64_t(blockIdx.x) / BH);
  const int b = int(bh / p.H), h = int(bh % p.H);
  const int i0 = qt * BQ;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  load_tile(qs, ld, p.q + b * p.q_s[0] + h * p.q_s[1], p.q_s[2], i0, BQ, p.Lq, D);
  load_tile(dos, ld, g.dout + bh * p.Lq * D, int64_t(D), i0, BQ, p.Lq, D);
  A lse_r[kRows], delta_r[kRows], dq[kRows][kDT];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int i = i0 + warp * kRows + r;
    lse_r[r] = i < p.Lq ? g.lse[bh * p.Lq + i] : neg_inf<A>();
    delta_r[r] = i < p.Lq ? g.delta[bh * p.Lq + i] : A(0);
#pragma unroll
    for (int t = 0; t < kDT; ++t) dq[r][t] = A(0);
  }

  const int kend = p.key_end(min(i0 + BQ, p.Lq));
  const T* kbase = p.k + b * p.k_s[0] + h * p.k_s[1];
  const T* vbase = p.v + b * p.v_s[0] + h * p.v_s[1];
  for (int j0 = 0; j0 < kend; j0 += BK) {
    __syncthreads();  // the previous tile's reads are done (and the Q / dO tiles are visible)
    load_tile(ks, ld, kbase, p.k_s[2], j0, BK, p.Lk, D);
    load_tile(vs, ld, vbase, p.v_s[2], j0, BK, p.Lk, D);
    __syncthreads();

    A s[kRows][kCols], dp[kRows][kCols];
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
      for (int c = 0; c < kCols; ++c) s[r][c] = dp[r][c] = A(0);
#pragma unroll 4
    for (int d = 0; d < D; ++d) {
      A kk[kCols], vv[kCols];
#pragma unroll
      for (int c = 0; c < kCols; ++c) {
        kk[c] = ks[(lane + 32 * c) * ld + d];
        vv[c] = vs[(lane + 32 * c) * ld + d];
      }
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const A qv = qs[(warp * kRows + r) * ld + d];
        const A gv = dos[(warp * kRows + r) * ld + d];
#pragma unroll
        for (int c = 0; c < kCols; ++c) {
          s[r][c] = fma(qv, kk[c], s[r][c]);
          dp[r][c] = fma(gv, vv[c], dp[r][c]);
        }
      }
    }
    bool kept[kCols];
#pragma unroll
    for (int c = 0; c < kCols; ++c) {
      const int j = j0 + lane + 32 * c;
      kept[c] = j < p.Lk && p.key_kept(b, j);
    }
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int row = warp * kRows + r, i = i0 + row;
#pragma unroll
      for (int c = 0; c < kCols; ++c) {
        const int j = j0 + lane + 32 * c;
        A pr = A(0);
        if (kept[c] && i < p.Lq && lse_r[r] != neg_inf<A>() && !p.causal_hidden(i, j)) {
          A x = s[r][c] * p.scale;
          if (p.bias) x += p.bias_at(b, h, i, j);
          pr = dev_exp(x - lse_r[r]);
        }
        dss[row * BK + lane + 32 * c] = pr * (dp[r][c] - delta_r[r]);
      }
    }
    __syncwarp();

    const int nk = min(BK, p.Lk - j0);
    for (int jj = 0; jj < nk; ++jj) {
      A kv[kDT];
#pragma unroll
      for (int t = 0; t < kDT; ++t) {
        const int d = lane + 32 * t;
        kv[t] = (kExact || d < D) ? ks[jj * ld + d] : A(0);
      }
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const A ds = dss[(warp * kRows + r) * BK + jj];
#pragma unroll
        for (int t = 0; t < kDT; ++t) dq[r][t] = fma(ds, kv[t], dq[r][t]);
      }
    }
  }

#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int i = i0 + warp * kRows + r;
    if (i >= p.Lq) continue;
    T* row = g.dq + (bh * p.Lq + i) * D;
#pragma unroll
    for (int t = 0; t < kDT; ++t) {
      const int d = lane + 32 * t;
      if (kExact || d < D) row[d] = convert<T>(dq[r][t] * p.scale);
    }
  }
}

// dbias[e] = sum over chunks of part[chunk][e], in chunk order.
template <class T>
__global__ void dbias_reduce_kernel(const acc_t<T>* __restrict__ part, T* __restrict__ dbias,
                                    int64_t n, int chunks) {
  using A = acc_t<T>;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += int64_t(gridDim.x) * blockDim.x) {
    A s = part[e];
    for (int c = 1; c < chunks; ++c) s += part[int64_t(c) * n + e];
    dbias[e] = convert<T>(s);
  }
}

unsigned grid_for(int64_t n, int per_block) {
  return unsigned(std::min<int64_t>((n + per_block - 1) / per_block, int64_t{1} << 16));
}

template <class T>
void launch_backward(const AttnParams<T>& a, BwdArgs<T> g, int device, cudaStream_t st,
                     DType dtype) {
  using A = acc_t<T>;
  dispatch_head_dim<T>(a.D, "attention_backward", [&]<int kMaxD, bool kExact>() {
    using Tile = BwdTile<A, kMaxD>;
    if (a.Lk > 0) {
      constexpr int BK = kWarps * Tile::kRows;
      const int64_t blocks = int64_t((a.Lk + BK - 1) / BK) * g.groups * g.chunks;
      STRATA_CHECK(blocks <= std::numeric_limits<int>::max(), "attention_backward: ", blocks,
                   " key tiles exceed the CUDA grid limit");
      auto kernel = dkdv_kernel<T, kMaxD, kExact, Tile::kRows, Tile::kCols>;
      const size_t smem = dkdv_smem_bytes<A>(kMaxD, Tile::kRows, Tile::kCols, a.bias != nullptr);
      prepare_launch(kernel, smem, device, "attention_backward", a.D, dtype);
      kernel<<<unsigned(blocks), kThreads, smem, st>>>(a, g);
      STRATA_CUDA_CHECK_LAUNCH();
    }
    if (a.Lq > 0) {
      // dQ tiles: the kernel's rows are queries.
      constexpr int BQ = kWarps * Tile::kRows;
      const int64_t blocks = int64_t((a.Lq + BQ - 1) / BQ) * a.B * a.H;
      STRATA_CHECK(blocks <= std::numeric_limits<int>::max(), "attention_backward: ", blocks,
                   " query tiles exceed the CUDA grid limit");
      auto kernel = dq_kernel<T, kMaxD, kExact, Tile::kRows, Tile::kCols>;
      const size_t smem = dq_smem_bytes<A>(kMaxD, Tile::kRows, Tile::kCols);
      prepare_launch(kernel, smem, device, "attention_backward", a.D, dtype);
      kernel<<<unsigned(blocks), kThreads, smem, st>>>(a, g);
      STRATA_CUDA_CHECK_LAUNCH();
    }
  });
}

// Member chunks per dbias group: enough blocks to fill a large GPU, a bounded scratch, and a
// function of the shapes only (so the summation order, hence the bits, never depends on the GPU).
int dbias_chunks(int64_t groups, int64_t members, int64_t key_tiles, int64_t slice_bytes) {
  constexpr int64_t kTargetBlocks = 512;
  constexpr int64_t kScratchBytes = int64_t{256} << 20;
  const int64_t have = std::max<int64_t>(groups * key_tiles, 1);
  int64_t chunks = std::clamp<int64_t>((kTargetBlocks + have - 1) / have, 1, members);
  while (chunks > 1 && chunks * groups * slice_bytes > kScratchBytes) --chunks;
  return int(chunks);
}

}  // namespace
}  // namespace attn

void CudaBackend::attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                     const Tensor& bias, const Tensor& key_mask, AttentionParams p,
                                     const Tensor& out, const Tensor& lse, const Tensor& dout,
                                     const Tensor& dq, const Tensor& dk, const Tensor& dv,
                                     const Tensor& dbias) {
  const Device dev = q.device();
  const char* op = "attention_backward";
  STRATA_CHECK(dev.type == DeviceType::CUDA, op, ": q is on ", dev.str(),
               ", expected a CUDA device");
  STRATA_CHECK(!dbias.defined() || bias.defined(), op, ": got a dbias output without a bias input");
  auto run = [&]<class T>() {
    using A = acc_t<T>;
    const auto a = attn::make_params<T>(q, k, v, bias, key_mask, p, op);
    const DType acc = std::is_same_v<A, double> ? DType::f64 : DType::f32;
    const DType dt = q.dtype();
    const Shape qshape = attn::dims(a.B, a.H, a.Lq, a.D), kshape = attn::dims(a.B, a.H, a.Lk, a.D);
    attn::check_output(out, qshape, dt, dev, op, "out");
    attn::check_output(lse, attn::dims(a.B, a.H, a.Lq), acc, dev, op, "lse");
    attn::check_output(dout, qshape, dt, dev, op, "dout");
    attn::check_output(dq, qshape, dt, dev, op, "dq");
    attn::check_output(dk, kshape, dt, dev, op, "dk");
    attn::check_output(dv, kshape, dt, dev, op, "dv");

    // Groups share a dbias slice; their members are the (b, h) pairs summed into it.
    const bool sum_b = dbias.defined() && a.bias_s[0] == 0;
    const bool sum_h = dbias.defined() && a.bias_s[1] == 0;
    const int groups_b = sum_b ? 1 : a.B, groups_h = sum_h ? 1 : a.H;
    const int members_b = sum_b ? a.B : 1, members_h = sum_h ? a.H : 1;
    if (dbias.defined())
      attn::check_output(dbias, attn::dims(groups_b, groups_h, a.Lq, a.Lk), dt, dev, op, "dbias");
    DeviceGuard guard(dev.index);
    cudaStream_t st = stream(dev.index);
    if (int64_t(a.B) * a.H == 0) {
      // Nothing to sum: a bias broadcast over an empty batch still gets its (zero) gradient.
      if (dbias.defined() && dbias.numel() > 0)
        STRATA_CUDA_CHECK(cudaMemsetAsync(dbias.raw_data(), 0, dbias.numel() * sizeof(T), st));
      return;
    }
    attn::BwdArgs<T> g{};
    g.lse = static_cast<const A*>(lse.raw_data());
    g.dout = static_cast<const T*>(dout.raw_data());
    g.dq = static_cast<T*>(dq.raw_data());
    g.dk = static_cast<T*>(dk.raw_data());
    g.dv = static_cast<T*>(dv.raw_data());
    g.groups = groups_b * groups_h;
    g.groups_h = groups_h;
    g.members = members_b * members_h;
    g.members_h = members_h;
    g.chunks = 1;
    g.per_chunk = g.members;

    // Scratch lives until the end of this call; the caching allocator is stream-ordered, so
    // memory handed back here is reused only by work queued after these kernels.
    const int64_t rows = int64_t(a.B) * a.H * a.Lq;
    Tensor delta = empty(attn::dims(std::max<int64_t>(rows, 1)), acc, dev);
    g.delta = static_cast<const A*>(delta.raw_data());
    if (rows > 0) {
      const int64_t blocks = (rows + attn::kWarps - 1) / attn::kWarps;  // a warp per row
      STRATA_CHECK(blocks <= std::numeric_limits<int>::max(), op, ": ", rows,
                   " query rows exceed the CUDA grid limit");
      attn::delta_kernel<T><<<unsigned(blocks), attn::kThreads, 0, st>>>(
          static_cast<const T*>(out.raw_data()), g.dout, static_cast<A*>(delta.raw_data()), rows,
          a.D);
      STRATA_CUDA_CHECK_LAUNCH();
    }

    Tensor part;
    const int64_t slice = int64_t(a.Lq) * a.Lk;
    if (dbias.defined() && slice > 0) {
      attn::dispatch_head_dim<T>(a.D, op, [&]<int kMaxD, bool kExact>() {
        constexpr int BK = attn::kWarps * attn::BwdTile<A, kMaxD>::kRows;
        g.chunks = attn::dbias_chunks(g.groups, g.members, (a.Lk + BK - 1) / BK,
                                      slice * int64_t(sizeof(A)));
      });
      g.per_chunk = (g.members + g.chunks - 1) / g.chunks;
      g.chunks = (g.members + g.per_chunk - 1) / g.per_chunk;
      const int64_t n = int64_t(g.groups) * slice;
      part = empty(attn::dims(int64_t(g.chunks) * n), acc, dev);
      g.dbias_part = static_cast<A*>(part.raw_data());
      STRATA_CUDA_CHECK(cudaMemsetAsync(g.dbias_part, 0, size_t(g.chunks) * n * sizeof(A), st));
    }

    attn::launch_backward<T>(a, g, dev.index, st, dt);

    if (g.dbias_part) {
      const int64_t n = int64_t(g.groups) * slice;
      attn::dbias_reduce_kernel<T><<<attn::grid_for(n, 256), 256, 0, st>>>(
          g.dbias_part, static_cast<T*>(dbias.raw_data()), n, g.chunks);
      STRATA_CUDA_CHECK_LAUNCH();
    }
  };
  STRATA_CUDA_DISPATCH_FLOAT(q.dtype(), op, run);
}

}  // namespace strata::cuda
