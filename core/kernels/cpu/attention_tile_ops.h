#pragma once
// Internal to the attention kernels: the per-tile building blocks (small GEMMs and softmax row
// passes). The drivers in attention_forward.cpp / attention_backward.cpp call them through a
// table chosen once at run time, so the AVX2+FMA versions are used where the CPU has them and the
// portable ones elsewhere (and always for double, the gradient-check type).
#include <cstddef>
#include <cstdint>

namespace strata::cpu::attn {

// A rows x cols block of raw scores q.k (row-major, cols apart) and what turns them into the
// logits the softmax sees: x = s * scale + bias[r * bias_ld + j] + kadd[j], hidden where
// j >= lim0 + r (the causal rule; lim0 >= cols when there is none). bias and kadd may be null.
template <class T>
struct ScoreBlock {
  T* s;
  int rows, cols;
  T scale;
  const T* bias;
  ptrdiff_t bias_ld;
  const T* kadd;
  int64_t lim0;

  int limit(int r) const {
    const int64_t lim = lim0 + r;
    return lim < 0 ? 0 : lim > cols ? cols : static_cast<int>(lim);
  }
};

template <class T>
struct TileOps {
  // C[m x n] (+)= A[m x k] * B[k x n]. A(i, p) = a[i * a_rs + p * a_cs] (so a transposed operand
  // is just other strides); B rows are ldb apart with contiguous columns; C rows are ldc apart.
  void (*gemm)(int m, int n, int k, const T* a, ptrdiff_t a_rs, ptrdiff_t a_cs, const T* b,
               ptrdiff_t ldb, T* c, ptrdiff_t ldc, bool accumulate);

  // Forward online-softmax step on a block of raw scores (see ScoreBlock): updates the running
  // row maxima m and sums l, overwrites the scores with exp(s - m_new) (0 where hidden) and
  // rescales the rows of the output accumulator o (ldo apart, d wide) that a new maximum shifted.
  void (*softmax_step)(const ScoreBlock<T>& sb, T* m, T* l, T* o, ptrdiff_t ldo, int d);

  // Backward: scores become probabilities exp(s - lse[r]), 0 where hidden, all 0 on rows whose
  // lse is -inf (every key hidden).
  void (*probs)(const ScoreBlock<T>& sb, const T* lse);

  // Backward: ds = p * (dp - di[r]); dbias[r * dbias_ld + j] += ds (if dbias); dp = ds * scale.
  void (*dscores)(const T* p, T* dp, int rows, int cols, const T* di, T scale, T* dbias,
                  ptrdiff_t dbias_ld);

  // Transposed copy: dst[c * ldd + r] = src[r * src_rs + c] for r < rows, c < cols.
  void (*transpose)(const T* src, ptrdiff_t src_rs, int rows, int cols, T* dst, ptrdiff_t ldd);

  // dst[0..n) += src[0..n).
  void (*add)(T* dst, const T* src, int n);
  // sum_j x[j] * y[j], a fixed reduction order for a given n.
  T (*dot)(const T* x, const T* y, int n);
};

// The table for this CPU: AVX2+FMA for float where available, else the portable one.
template <class T>
const TileOps<T>& tile_ops();

// The portable table (plain loops), and the AVX2+FMA one (attention_tile_ops_avx2.cpp; call it
// only where cpu_has_avx2_fma()). Exposed so the tests can hold the two against each other.
template <class T>
const TileOps<T>& tile_ops_portable();
const TileOps<float>& tile_ops_avx2();

}  // namespace strata::cpu::attn
