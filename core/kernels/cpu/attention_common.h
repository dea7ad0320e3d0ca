#pragma once
// Internal to the attention kernels: argument checks and the per-block masking geometry shared by
// the forward and backward drivers.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/kernels/cpu/attention_kernels.h"

namespace strata::cpu::attn {

// 64 queries x 64 keys: a score block, its probabilities and the K/V panels of one block all sit
// in L1/L2 together for head dims up to ~128.
inline constexpr int64_t kBlockQ = 64;
inline constexpr int64_t kBlockK = 64;

template <class T>
void check_args(const AttentionArgs<T>& a, const char* op) {
  STRATA_CHECK(a.batch >= 0 && a.heads >= 0 && a.q_len >= 0 && a.kv_len >= 0 && a.head_dim > 0, op,
               ": got B=", a.batch, " H=", a.heads, " Lq=", a.q_len, " Lk=", a.kv_len,
               " D=", a.head_dim, ", expected non-negative sizes and D > 0");
  STRATA_CHECK(a.q && a.k && a.v, op, ": got a null q, k or v pointer, expected all three");
  STRATA_CHECK(a.q_len <= std::numeric_limits<int>::max() / 2 &&
                   a.kv_len <= std::numeric_limits<int>::max() / 2 && a.head_dim <= 1 << 20,
               op, ": got Lq=", a.q_len, " Lk=", a.kv_len, " D=", a.head_dim,
               ", expected sizes that fit a 32-bit tile index");
}

// True when the calling code may open an OpenMP team (library code runs single-threaded inside an
// enclosing parallel region).
inline int team_size() {
  return omp_in_parallel() ? 1 : omp_get_max_threads();
}

// Which keys of one (batch, key block) a query may see, as an additive row (0 or -inf) from the
// padding mask, plus whether any key survives; causal visibility is a per-row limit.
template <class T>
struct KeyBlockMask {
  const T* kadd = nullptr;  // null when there is no padding mask
  bool any_visible = true;
};

template <class T>
KeyBlockMask<T> key_block_mask(const AttentionArgs<T>& a, int64_t b, int64_t j0, int nk,
                               std::vector<T>& buf) {
  KeyBlockMask<T> r;
  if (!a.key_mask) return r;
  buf.resize(nk);
  const uint8_t* km = a.key_mask + b * a.key_mask_stride + j0;
  r.any_visible = false;
  for (int j = 0; j < nk; ++j) {
    buf[j] = km[j] ? T(0) : -std::numeric_limits<T>::infinity();
    r.any_visible |= km[j] != 0;
  }
  r.kadd = buf.data();
  return r;
}

// The causal limit of the block's first row: query row i0 + r may see the first lim0 + r keys of
// the block starting at j0 (j <= i + (Lk - Lq)); without the causal rule every key.
template <class T>
int64_t causal_lim0(const AttentionArgs<T>& a, int64_t i0, int64_t j0, int nk) {
  return a.causal ? i0 + (a.kv_len - a.q_len) - j0 + 1 : nk;
}

// Whether the causal rule lets any query of [i0, i1) see a key of [j0, j1).
template <class T>
bool causal_block_visible(const AttentionArgs<T>& a, int64_t i1, int64_t j0) {
  return !a.causal || j0 <= (i1 - 1) + (a.kv_len - a.q_len);
}

// The bias of rows [i0, i0 + nq) and keys [j0, j0 + nk) of head (b, h) as (pointer, row stride):
// straight into the bias when its key dimension is contiguous, else gathered into buf. A null
// pointer when there is no bias.
template <class T>
std::pair<const T*, ptrdiff_t> bias_block(const AttentionArgs<T>& a, int64_t b, int64_t h,
                                          int64_t i0, int nq, int64_t j0, int nk,
                                          std::vector<T>& buf) {
  if (!a.bias) return {nullptr, 0};
  const auto& s = a.bias_stride;
  const T* p = a.bias + b * s[0] + h * s[1] + i0 * s[2] + j0 * s[3];
  if (s[3] == 1) return {p, s[2]};
  buf.resize(static_cast<size_t>(nq) * nk);
  for (int r = 0; r < nq; ++r)
    for (int j = 0; j < nk; ++j) buf[r * nk + j] = p[r * s[2] + j * s[3]];
  return {buf.data(), nk};
}

}  // namespace strata::cpu::attn
