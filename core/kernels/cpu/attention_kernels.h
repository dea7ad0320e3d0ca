#pragma once
// Fused scaled-dot-product attention on the CPU, forward and backward, at raw-pointer level.
//
// The kernels work block by block (online softmax over key blocks, flash-attention style): a
// thread never holds more than one block of scores (64 queries x 64/128 keys), so memory stays
// O(L * D) however long the sequences are. The Tensor op with autograd is built on top of these.
//
// Semantics: s_ij = scale * q_i.k_j + bias_ij; entries hidden by `causal` or `key_mask` are left
// out of the softmax; out_i = sum_j softmax_j(s_i) v_j. A query row whose keys are ALL hidden
// (padding everywhere, or causal with Lq > Lk) gets out = 0, lse = -inf, and zero gradients: it
// never produces NaN. A bias of -inf hides an entry the same way.
//
// Results are bitwise independent of the number of OpenMP threads (every output element is
// written by one thread, and partial sums are combined in a fixed order).
#include <array>
#include <cstdint>

#include "core/kernels/cpu/kernel_types.h"

namespace strata::cpu {

template <class T>
struct AttentionArgs {
  int64_t batch = 0, heads = 0, q_len = 0, kv_len = 0, head_dim = 0;  // B, H, Lq, Lk, D
  // Element strides of the (b, h, row) dimensions; the last (D) dimension must be contiguous.
  const T* q = nullptr;
  std::array<int64_t, 3> q_stride{};
  const T* k = nullptr;
  std::array<int64_t, 3> k_stride{};
  const T* v = nullptr;
  std::array<int64_t, 3> v_stride{};
  double scale = 1.0;  // 1/sqrt(D) for BERT/Llama, 1.0 for T5
  // Additive bias, broadcastable to [B, H, Lq, Lk]; a stride of 0 broadcasts that dimension.
  const T* bias = nullptr;
  std::array<int64_t, 4> bias_stride{};
  // [B, Lk] padding mask: 1 = attend, 0 = padded key. key_mask_stride is the stride per batch.
  const uint8_t* key_mask = nullptr;
  int64_t key_mask_stride = 0;
  // Key j is visible to query i iff j <= i + (Lk - Lq) (the queries are the LAST Lq positions).
  bool causal = false;
};

// out: contiguous [B, H, Lq, D]. lse: contiguous [B, H, Lq], the log-sum-exp of the masked,
// scaled and biased scores (-inf for a row with every key hidden). Throws strata::Error on
// malformed arguments.
template <class T>
void attention_forward(const AttentionArgs<T>& a, T* out, acc_t<T>* lse);

// out and dout: contiguous [B, H, Lq, D]; lse from attention_forward. Writes (overwrites) dq
// [B, H, Lq, D], dk and dv [B, H, Lk, D], all contiguous. dbias may be null; otherwise it is
// written contiguous in the bias's logical shape {bias_stride[0] == 0 ? 1 : B,
// bias_stride[1] == 0 ? 1 : H, Lq, Lk}, summed over the broadcast batch/head dimensions.
template <class T>
void attention_backward(const AttentionArgs<T>& a, const T* out, const acc_t<T>* lse, const T* dout,
                        T* dq, T* dk, T* dv, T* dbias);

}  // namespace strata::cpu
