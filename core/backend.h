#pragma once
// The kernel interface every device implements. Ops (core/ops/) validate arguments, allocate
// outputs and record autograd history; they reach memory only through a Backend, so no op
// assumes CPU memory. The CPU backend is core/kernels/cpu/; CUDA adds core/kernels/cuda/.
#include <array>
#include <cstdint>
#include <optional>
#include <span>

#include "core/tensor.h"

namespace strata {

enum class UnaryOp : uint8_t {
  Neg,
  Exp,
  Log,
  Sqrt,
  Rsqrt,
  Tanh,
  Sigmoid,
  Relu,
  GeluExact,
  GeluTanh,
  Silu,
  Abs,
  LogSigmoid,
  Pow,     // x^a
  Clamp,   // min(max(x, a), b)
  Affine,  // a*x + b
  Reciprocal,
  Sin,
  Cos,
  Square,
};

enum class BinaryOp : uint8_t {
  Add,
  Sub,
  Mul,
  Div,
  Maximum,
  Minimum,
  Eq,
  Ne,
  Lt,
  Le,
  Gt,
  Ge,  // produce bool
  LogicalAnd,
  LogicalOr,  // bool inputs
};

enum class ReduceOp : uint8_t { Sum, Mean, Max, Min };

enum class GatedAct : uint8_t { GeluExact, GeluTanh, Silu };

struct UnaryParams {
  double a = 0, b = 0;
};

struct RandomKey {
  uint64_t seed = 0;
  uint32_t stream = 0;
  uint64_t step = 0;
  uint64_t index_offset = 0;  // global index of element 0 (a shard of a larger tensor)
  // Dropout only: x's leading dimension holds rows row_first, row_first + row_stride, ... of a
  // larger batch (a data-parallel rank's rows), so local element i of row j draws the number of
  // its place in that batch, ((j * row_stride + row_first) * row_elems + i % row_elems) with
  // row_elems = numel / size(0), and every layout draws the one-process masks. 0 / 1: as is.
  int64_t row_first = 0;
  int64_t row_stride = 1;
};

struct AttentionParams {
  double scale = 1.0;
  bool causal = false;
};

class Backend {
 public:
  virtual ~Backend() = default;

  // Memory. `copy` converts dtypes and handles any strides (including broadcast sources).
  virtual void copy(const Tensor& src, const Tensor& dst) = 0;
  virtual void fill(const Tensor& dst, double value) = 0;
  virtual void uniform(const Tensor& dst, RandomKey key, double lo, double hi) = 0;
  virtual void normal(const Tensor& dst, RandomKey key, double mean, double std) = 0;

  // Element-wise. Inputs are already broadcast (expanded) to out's shape; out is contiguous.
  virtual void unary(UnaryOp op, const Tensor& x, const Tensor& out, UnaryParams p) = 0;
  // dx = dy * f'(x); y is the forward output (used where cheaper, e.g. exp, tanh, sigmoid).
  virtual void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& dy,
                              const Tensor& dx, UnaryParams p) = 0;
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  virtual void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  virtual void gated(GatedAct act, const Tensor& gate, const Tensor& up, const Tensor& out) = 0;
  virtual void gated_backward(GatedAct act, const Tensor& gate, const Tensor& up, const Tensor& dy,
                              const Tensor& dgate, const Tensor& dup) = 0;

  // Reductions over `dims` (sorted); out has x's rank with reduced dims of size 1.
  virtual void reduce(ReduceOp op, const Tensor& x, std::span<const int64_t> dims,
                      const Tensor& out) = 0;
  virtual void argmax(const Tensor& x, int64_t dim, const Tensor& out) = 0;
  virtual void cumsum(const Tensor& x, int64_t dim, bool reverse, const Tensor& out) = 0;

  // out[b] = alpha * op(a[b]) op(b[b]) + beta * out[b] over leading batch dims (3-D views:
  // [batch, rows, cols], batch stride 0 allowed for a and b).
  virtual void matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
                      const Tensor& out, double alpha, double beta) = 0;

  // Indexing. `index` is i64, contiguous.
  virtual void index_select(const Tensor& x, int64_t dim, const Tensor& index,
                            const Tensor& out) = 0;
  // out.index_select(dim, index) += src (out is accumulated into).
  virtual void index_add(const Tensor& out, int64_t dim, const Tensor& index,
                         const Tensor& src) = 0;
  virtual void gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) = 0;
  virtual void scatter_add(const Tensor& out, int64_t dim, const Tensor& index,
                           const Tensor& src) = 0;

  // Fused row kernels over the last dim of contiguous tensors.
  virtual void softmax(const Tensor& x, const Tensor& y, bool log) = 0;
  virtual void softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx, bool log) = 0;
  virtual void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps,
                          const Tensor& y, const Tensor& mean, const Tensor& rstd) = 0;
  virtual void layer_norm_backward(const Tensor& x, const Tensor& w, const Tensor& mean,
                                   const Tensor& rstd, const Tensor& dy, const Tensor& dx,
                                   const Tensor& dw, const Tensor& db) = 0;
  virtual void rms_norm(const Tensor& x, const Tensor& w, double eps, const Tensor& y,
                        const Tensor& rstd) = 0;
  virtual void rms_norm_backward(const Tensor& x, const Tensor& w, const Tensor& rstd,
                                 const Tensor& dy, const Tensor& dx, const Tensor& dw) = 0;
  virtual void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                             double smoothing, const Tensor& loss, const Tensor& lse) = 0;
  virtual void cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse,
                                      const Tensor& dloss, int64_t ignore_index, double smoothing,
                                      const Tensor& dlogits) = 0;

  // y = x * keep / (1 - p) with keep(i) = uniform(key, i) >= p; also serves backward.
  virtual void dropout(const Tensor& x, double p, RandomKey key, const Tensor& y) = 0;
  // Rotary embedding over the last dim (rotate-half pairs (i, i + D/2)), positions along dim -2
  // starting at `pos_offset`; `inverse` rotates by -theta (the backward).
  virtual void rope(const Tensor& x, double base, int64_t pos_offset, bool inverse,
                    const Tensor& y) = 0;

  // Fused attention over q [B,H,Lq,D], k/v [B,H,Lk,D] (last dim contiguous); bias broadcastable to
  // [B,H,Lq,Lk] (may be undefined); key_mask bool [B,Lk] (may be undefined).
  virtual void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                         const Tensor& key_mask, AttentionParams p, const Tensor& out,
                         const Tensor& lse) = 0;
  virtual void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& bias, const Tensor& key_mask, AttentionParams p,
                                  const Tensor& out, const Tensor& lse, const Tensor& dout,
                                  const Tensor& dq, const Tensor& dk, const Tensor& dv,
                                  const Tensor& dbias) = 0;
};

Backend& backend_for(Device device);

}  // namespace strata
