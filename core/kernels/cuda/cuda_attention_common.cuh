#pragma once
// Internal to the CUDA attention kernels (cuda_attention_forward.cu, cuda_attention_backward.cu):
// the kernel parameters, the tile geometry, device helpers, and the host-side argument checks.
//
// Semantics are those of the CPU kernels (core/kernels/cpu/attention_kernels.h): the logit of
// (query i, key j) is scale * q_i.k_j + bias_ij; key j is hidden from query i when key_mask[b, j]
// is 0, when j >= Lk, or, with `causal`, when j > i + (Lk - Lq). A row with every key hidden gets
// out = 0, lse = -inf and zero gradients.
//
// Tiling (SIMT, no tensor cores): a block is 8 warps. A warp owns kRows rows of the resident
// operand (queries in the forward and dQ kernels, keys in the dK/dV kernel) and each lane owns
// kCols columns of the streamed one, so one score tile is kRows * 8 x kCols * 32. Tiles live in
// shared memory in the accumulation type with an odd row pitch, so a lane walking its own column
// (row lane + 32 c) hits a distinct bank; the output accumulators of a row are spread over the
// lanes (dimension lane + 32 t), so they stay in registers for head dims up to 256.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "core/backend.h"
#include "core/cuda/cuda_check.h"
#include "core/error.h"
#include "core/kernels/cuda/cuda_dtype.h"
#include "core/tensor.h"

namespace strata::cuda::attn {

inline constexpr int kWarps = 8;
inline constexpr int kThreads = kWarps * 32;

// Tile shape per kernel family. Doubles and head dims above 128 take the smaller tiles so that
// shared memory and registers still fit (a double tile is twice the bytes).
template <class A, int kMaxD>
struct FwdTile {
  static constexpr int kRows = (sizeof(A) == 8 || kMaxD > 128) ? 4 : 8;  // queries per warp
  static constexpr int kCols = sizeof(A) == 8 ? 1 : 2;                   // keys per lane
};
template <class A, int kMaxD>
struct BwdTile {
  static constexpr int kRows = (sizeof(A) == 8 || kMaxD > 128) ? 4 : 8;
  static constexpr int kCols = (sizeof(A) == 8 || kMaxD > 64) ? 1 : 2;
};

// Row pitch of a [rows x D] tile in shared memory: odd, so column walks are conflict-free.
__host__ __device__ constexpr int tile_pitch(int max_d) {
  return max_d + 1;
}

template <class T>
struct AttnParams {
  using A = acc_t<T>;
  const T* q;
  const T* k;
  const T* v;
  int64_t q_s[3], k_s[3], v_s[3];  // (b, h, row) strides in elements; D is contiguous
  const T* bias;                   // null when absent
  int64_t bias_s[4];               // broadcast dims have stride 0
  const uint8_t* key_mask;         // null when absent; [B, Lk], 1 = attend
  int64_t mask_s[2];
  int B, H, Lq, Lk, D;
  A scale;
  bool causal;

  __device__ int64_t bh_count() const { return int64_t(B) * H; }
  // Whether key j (< Lk) of batch b survives the padding mask.
  __device__ bool key_kept(int b, int j) const {
    return !key_mask || key_mask[b * mask_s[0] + j * mask_s[1]] != 0;
  }
  __device__ bool causal_hidden(int i, int j) const {
    return causal && int64_t(j) > int64_t(i) + (int64_t(Lk) - Lq);
  }
  __device__ A bias_at(int b, int h, int i, int j) const {
    return convert<A>(bias[b * bias_s[0] + h * bias_s[1] + i * bias_s[2] + j * bias_s[3]]);
  }
  // Number of leading keys some query of [i0, i1) may see under the causal rule.
  __device__ int key_end(int i1) const {
    if (!causal) return Lk;
    const int64_t e = int64_t(i1) - 1 + (int64_t(Lk) - Lq) + 1;
    return e < 0 ? 0 : e > Lk ? Lk : int(e);
  }
};

template <class A>
__device__ __forceinline__ A neg_inf() {
  return -std::numeric_limits<A>::infinity();
}

template <class A>
__device__ __forceinline__ A dev_exp(A x) {
  if constexpr (std::is_same_v<A, double>) {
    return ::exp(x);
  } else {
    return ::expf(x);
  }
}

template <class A>
__device__ __forceinline__ A dev_log(A x) {
  if constexpr (std::is_same_v<A, double>) {
    return ::log(x);
  } else {
    return ::logf(x);
  }
}

// Butterfly reductions: every lane ends with the same bits (each step adds the same two values,
// only in swapped order, and IEEE addition and max are commutative).
template <class A>
__device__ __forceinline__ A warp_sum(A x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}
template <class A>
__device__ __forceinline__ A warp_max(A x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const A y = __shfl_xor_sync(0xffffffffu, x, o);
    x = y > x ? y : x;
  }
  return x;
}

// Copies rows [row0, row0 + rows) of one head (row r at src + r * row_stride, D contiguous) into a
// shared tile with pitch `ld`, converting to the accumulation type; rows at or past `valid` read
// as zero. All threads of the block take part.
template <class T, class A>
__device__ __forceinline__ void load_tile(A* dst, int ld, const T* src, int64_t row_stride,
                                          int row0, int rows, int valid, int D) {
  const int n = rows * D;
  for (int e = threadIdx.x; e < n; e += kThreads) {
    const int r = e / D, d = e - r * D;
    const int row = row0 + r;
    dst[r * ld + d] = row < valid ? convert<A>(src[int64_t(row) * row_stride + d]) : A(0);
  }
}

// Shared-memory bytes of each kernel for a tile variant and a head dim.
template <class A>
constexpr size_t fwd_smem_bytes(int max_d, int rows, int cols) {
  const int bq = kWarps * rows, bk = 32 * cols;
  return sizeof(A) * (size_t(bq + bk) * tile_pitch(max_d) + size_t(bq) * bk);
}
template <class A>
constexpr size_t dkdv_smem_bytes(int max_d, int rows, int cols, bool bias) {
  const int bk = kWarps * rows, bq = 32 * cols;
  return sizeof(A) * (size_t(2 * bk + 2 * bq) * tile_pitch(max_d) +
                      size_t(bias ? 3 : 2) * bk * (bq + 1) + 2 * size_t(bq));
}
template <class A>
constexpr size_t dq_smem_bytes(int max_d, int rows, int cols) {
  const int bq = kWarps * rows, bk = 32 * cols;
  return sizeof(A) * (size_t(2 * bq + 2 * bk) * tile_pitch(max_d) + size_t(bq) * bk);
}

// Host side: the opt-in shared memory limit of the current device, and the opt-in itself.
inline size_t max_smem_optin(int device) {
  int v = 0;
  STRATA_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return size_t(v);
}
template <class Kernel>
void prepare_launch(Kernel kernel, size_t smem, int device, const char* op, int D, DType dtype) {
  const size_t limit = max_smem_optin(device);
  STRATA_CHECK(smem <= limit, op, ": head dim ", D, " in ", dtype_name(dtype), " needs ", smem,
               " bytes of shared memory per block but this GPU allows ", limit,
               "; use a smaller head dim or f32/bf16 instead of f64");
  STRATA_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
}

// Calls fn.template operator()<kMaxD, kExact>() with the variant serving head dim D: exact
// instantiations for the common dims (loops of fixed length), a bounded generic one otherwise.
// f64 (the gradient-check type) only gets the generic variants to keep compile time down.
template <class T, class Fn>
void dispatch_head_dim(int D, const char* op, Fn&& fn) {
  if constexpr (!std::is_same_v<T, double>) {
    if (D == 32) return fn.template operator()<32, true>();
    if (D == 64) return fn.template operator()<64, true>();
    if (D == 128) return fn.template operator()<128, true>();
  }
  if (D <= 64) return fn.template operator()<64, false>();
  if (D <= 128) return fn.template operator()<128, false>();
  if constexpr (!std::is_same_v<T, double>) {
    if (D <= 256) return fn.template operator()<256, false>();
  }
  STRATA_FAIL(op, ": head dim ", D, " is not supported on CUDA (at most ",
              std::is_same_v<T, double> ? 128 : 256, " for ",
              std::is_same_v<T, double> ? "f64" : "f32/bf16", ")");
}

// Fills the parameters shared by forward and backward from the tensors, checking what the
// kernels rely on (the CPU kernels assume the same layout).
template <class T>
AttnParams<T> make_params(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                          const Tensor& key_mask, AttentionParams p, const char* op) {
  STRATA_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, op,
               ": expected q [B,H,Lq,D], k and v [B,H,Lk,D]; got ranks ", q.dim(), ", ", k.dim(),
               ", ", v.dim());
  const int64_t B = q.size(0), H = q.size(1), Lq = q.size(2), D = q.size(3), Lk = k.size(2);
  STRATA_CHECK(k.size(0) == B && k.size(1) == H && k.size(3) == D && v.shape() == k.shape(), op,
               ": k and v must be [", B, ", ", H, ", Lk, ", D, "] to match q");
  STRATA_CHECK(k.dtype() == q.dtype() && v.dtype() == q.dtype(), op,
               ": q, k and v must share one dtype");
  STRATA_CHECK(k.device() == q.device() && v.device() == q.device(), op,
               ": q, k and v must be on one device");
  for (const Tensor* t : {&q, &k, &v})
    STRATA_CHECK(t->stride(3) == 1 || t->size(3) == 1, op,
                 ": the head dim of q, k and v must be contiguous (stride 1); call contiguous()");
  STRATA_CHECK(Lq <= std::numeric_limits<int>::max() / 2 &&
                   Lk <= std::numeric_limits<int>::max() / 2 && D > 0 &&
                   B * H <= std::numeric_limits<int>::max(),
               op, ": got B=", B, " H=", H, " Lq=", Lq, " Lk=", Lk, " D=", D,
               ", expected D > 0 and sizes that fit a 32-bit index");
  AttnParams<T> a{};
  a.q = static_cast<const T*>(q.raw_data());
  a.k = static_cast<const T*>(k.raw_data());
  a.v = static_cast<const T*>(v.raw_data());
  for (int i = 0; i < 3; ++i) {
    a.q_s[i] = q.stride(i);
    a.k_s[i] = k.stride(i);
    a.v_s[i] = v.stride(i);
  }
  a.bias = nullptr;
  if (bias.defined()) {
    STRATA_CHECK(bias.dim() == 4 && bias.dtype() == q.dtype() && bias.device() == q.device(), op,
                 ": bias must be a 4-D ", dtype_name(q.dtype()), " tensor on ", q.device().str(),
                 " broadcastable to [B,H,Lq,Lk]");
    const int64_t full[4] = {B, H, Lq, Lk};
    for (int i = 0; i < 4; ++i) {
      STRATA_CHECK(bias.size(i) == full[i] || bias.size(i) == 1, op, ": bias dim ", i, " has size ",
                   bias.size(i), ", expected ", full[i], " or 1");
      a.bias_s[i] = bias.size(i) == full[i] ? bias.stride(i) : 0;
    }
    a.bias = static_cast<const T*>(bias.raw_data());
  }
  a.key_mask = nullptr;
  if (key_mask.defined()) {
    STRATA_CHECK(key_mask.dtype() == DType::b8 && key_mask.dim() == 2 && key_mask.size(0) == B &&
                     key_mask.size(1) == Lk && key_mask.device() == q.device(),
                 op, ": key_mask must be bool [", B, ", ", Lk, "] on ", q.device().str());
    a.key_mask = static_cast<const uint8_t*>(key_mask.raw_data());
    a.mask_s[0] = key_mask.stride(0);
    a.mask_s[1] = key_mask.stride(1);
  }
  a.B = int(B);
  a.H = int(H);
  a.Lq = int(Lq);
  a.Lk = int(Lk);
  a.D = int(D);
  a.scale = static_cast<acc_t<T>>(p.scale);
  a.causal = p.causal;
  return a;
}

template <class... I>
Shape dims(I... n) {
  return Shape{static_cast<int64_t>(n)...};
}

inline void check_output(const Tensor& t, const Shape& shape, DType dtype, Device device,
                         const char* op, const char* what) {
  STRATA_CHECK(t.defined() && t.shape() == shape && t.dtype() == dtype && t.device() == device &&
                   (t.numel() == 0 || t.is_contiguous()),
               op, ": ", what, " must be a contiguous ", dtype_name(dtype), " tensor of shape ",
               shape_str(shape), " on ", device.str());
}

}  // namespace strata::cuda::attn
