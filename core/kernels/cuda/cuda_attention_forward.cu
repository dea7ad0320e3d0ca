// Forward fused attention on CUDA: one block per (batch, head, query tile) sweeps the key tiles
// with an online softmax, so only one score tile per block ever exists (flash-attention style).
// The block's queries stay in shared memory; K and then V of each key tile pass through one
// shared buffer.
#include "core/cuda/cuda_context.h"
#include "core/kernels/cuda/cuda_attention_common.cuh"
#include "core/kernels/cuda/cuda_backend.h"

namespace strata::cuda {
namespace attn {
namespace {

template <class T, int kMaxD, bool kExact, int kRows, int kCols>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(AttnParams<T> p, T* __restrict__ out, acc_t<T>* __restrict__ lse) {
  using A = acc_t<T>;
  constexpr int BQ = kWarps * kRows, BK = 32 * kCols, kDT = kMaxD / 32;
  constexpr int ld = tile_pitch(kMaxD);
  const int D = kExact ? kMaxD : p.D;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* qs = reinterpret_cast<A*>(smem_raw);  // [BQ][ld]
  A* kvs = qs + BQ * ld;                   // [BK][ld]: K, then V of the current key tile
  A* ps = kvs + BK * ld;                   // [BQ][BK]: probabilities of the tile

  const int64_t BH = p.bh_count();
  const int nqt = (p.Lq + BQ - 1) / BQ;
  // The last query tiles see the most keys under the causal rule: start them first.
  const int64_t bh = int64_t(blockIdx.x) % BH;
  const int qt = nqt - 1 - int(int64_t(blockIdx.x) / BH);
  const int b = int(bh / p.H), h = int(bh % p.H);
  const int i0 = qt * BQ;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  load_tile(qs, ld, p.q + b * p.q_s[0] + h * p.q_s[1], p.q_s[2], i0, BQ, p.Lq, D);

  A o[kRows][kDT], m[kRows], l[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    m[r] = neg_inf<A>();
    l[r] = A(0);
#pragma unroll
    for (int t = 0; t < kDT; ++t) o[r][t] = A(0);
  }

  const int kend = p.key_end(min(i0 + BQ, p.Lq));
  const T* kbase = p.k + b * p.k_s[0] + h * p.k_s[1];
  const T* vbase = p.v + b * p.v_s[0] + h * p.v_s[1];
  for (int j0 = 0; j0 < kend; j0 += BK) {
    __syncthreads();  // the previous tile's V reads are done (and the Q tile is visible)
    load_tile(kvs, ld, kbase, p.k_s[2], j0, BK, p.Lk, D);
    __syncthreads();

    A s[kRows][kCols];
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
      for (int c = 0; c < kCols; ++c) s[r][c] = A(0);
#pragma unroll 4
    for (int d = 0; d < D; ++d) {
      A kk[kCols];
#pragma unroll
      for (int c = 0; c < kCols; ++c) kk[c] = kvs[(lane + 32 * c) * ld + d];
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const A qv = qs[(warp * kRows + r) * ld + d];
#pragma unroll
        for (int c = 0; c < kCols; ++c) s[r][c] = fma(qv, kk[c], s[r][c]);
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
      const int i = i0 + warp * kRows + r;
      A mx = neg_inf<A>();
#pragma unroll
      for (int c = 0; c < kCols; ++c) {
        const int j = j0 + lane + 32 * c;
        A x = neg_inf<A>();
        if (kept[c] && i < p.Lq && !p.causal_hidden(i, j)) {
          x = s[r][c] * p.scale;
          if (p.bias) x += p.bias_at(b, h, i, j);
        }
        s[r][c] = x;
        mx = x > mx ? x : mx;
      }
      mx = warp_max(mx);
      const A m_new = m[r] > mx ? m[r] : mx;
      if (m_new == neg_inf<A>()) {  // every key so far hidden: nothing to add or rescale
#pragma unroll
        for (int c = 0; c < kCols; ++c) s[r][c] = A(0);
      } else {
        const A alpha = dev_exp(m[r] - m_new);
        A sum = A(0);
#pragma unroll
        for (int c = 0; c < kCols; ++c) {
          s[r][c] = dev_exp(s[r][c] - m_new);
          sum += s[r][c];
        }
        sum = warp_sum(sum);
        l[r] = l[r] * alpha + sum;
        m[r] = m_new;
#pragma unroll
        for (int t = 0; t < kDT; ++t) o[r][t] *= alpha;
      }
#pragma unroll
      for (int c = 0; c < kCols; ++c) ps[(warp * kRows + r) * BK + lane + 32 * c] = s[r][c];
    }

    __syncthreads();  // every warp is done with K
    load_tile(kvs, ld, vbase, p.v_s[2], j0, BK, p.Lk, D);
    __syncthreads();

    const int nk = min(BK, p.Lk - j0);
    for (int jj = 0; jj < nk; ++jj) {
      A vv[kDT];
#pragma unroll
      for (int t = 0; t < kDT; ++t) {
        const int d = lane + 32 * t;
        vv[t] = (kExact || d < D) ? kvs[jj * ld + d] : A(0);
      }
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const A pr = ps[(warp * kRows + r) * BK + jj];
#pragma unroll
        for (int t = 0; t < kDT; ++t) o[r][t] = fma(pr, vv[t], o[r][t]);
      }
    }
  }

#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int i = i0 + warp * kRows + r;
    if (i >= p.Lq) continue;
    // l == 0 only when every key of the row is hidden: out = 0, lse = -inf by definition.
    const bool empty = l[r] == A(0);
    const A inv = empty ? A(0) : A(1) / l[r];
    T* orow = out + (bh * p.Lq + i) * D;
#pragma unroll
    for (int t = 0; t < kDT; ++t) {
      const int d = lane + 32 * t;
      if (kExact || d < D) orow[d] = convert<T>(o[r][t] * inv);
    }
    if (lane == 0) lse[bh * p.Lq + i] = empty ? neg_inf<A>() : m[r] + dev_log(l[r]);
  }
}

template <class T>
void launch_forward(const AttnParams<T>& a, T* out, acc_t<T>* lse, int device, cudaStream_t st,
                    DType dtype) {
  using A = acc_t<T>;
  dispatch_head_dim<T>(a.D, "attention", [&]<int kMaxD, bool kExact>() {
    using Tile = FwdTile<A, kMaxD>;
    constexpr int BQ = kWarps * Tile::kRows;
    const int64_t blocks = int64_t((a.Lq + BQ - 1) / BQ) * a.B * a.H;
    STRATA_CHECK(blocks <= std::numeric_limits<int>::max(), "attention: ", blocks,
                 " query tiles exceed the CUDA grid limit");
    auto kernel = forward_kernel<T, kMaxD, kExact, Tile::kRows, Tile::kCols>;
    const size_t smem = fwd_smem_bytes<A>(kMaxD, Tile::kRows, Tile::kCols);
    prepare_launch(kernel, smem, device, "attention", a.D, dtype);
    kernel<<<unsigned(blocks), kThreads, smem, st>>>(a, out, lse);
    STRATA_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace
}  // namespace attn

void CudaBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                            const Tensor& key_mask, AttentionParams p, const Tensor& out,
                            const Tensor& lse) {
  const Device dev = q.device();
  STRATA_CHECK(dev.type == DeviceType::CUDA, "attention: q is on ", dev.str(),
               ", expected a CUDA device");
  auto run = [&]<class T>() {
    using A = acc_t<T>;
    const auto a = attn::make_params<T>(q, k, v, bias, key_mask, p, "attention");
    const DType acc = std::is_same_v<A, double> ? DType::f64 : DType::f32;
    attn::check_output(out, attn::dims(a.B, a.H, a.Lq, a.D), q.dtype(), dev, "attention", "out");
    attn::check_output(lse, attn::dims(a.B, a.H, a.Lq), acc, dev, "attention", "lse");
    if (int64_t(a.B) * a.H * a.Lq == 0) return;
    DeviceGuard guard(dev.index);
    attn::launch_forward<T>(a, static_cast<T*>(out.raw_data()), static_cast<A*>(lse.raw_data()),
                            dev.index, stream(dev.index), q.dtype());
  };
  STRATA_CUDA_DISPATCH_FLOAT(q.dtype(), "attention", run);
}

}  // namespace strata::cuda
