#pragma once
// The CUDA implementation of Backend. Each family of methods lives in its own file beside this
// one: cuda_memory.cu (copy, fill, random, dropout), cuda_elementwise.cu, cuda_reduce.cu,
// cuda_index.cu, cuda_matmul.cpp (cuBLASLt), cuda_softmax.cu, cuda_norm.cu,
// cuda_cross_entropy.cu, cuda_rope.cu, cuda_attention_{forward,backward}.cu.
// Every method runs on the compute stream of the output's device (core/cuda/cuda_context.h).
#include "core/backend.h"

namespace strata::cuda {

class CudaBackend final : public Backend {
 public:
  void copy(const Tensor& src, const Tensor& dst) override;
  void fill(const Tensor& dst, double value) override;
  void uniform(const Tensor& dst, RandomKey key, double lo, double hi) override;
  void normal(const Tensor& dst, RandomKey key, double mean, double std) override;

  void unary(UnaryOp op, const Tensor& x, const Tensor& out, UnaryParams p) override;
  void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& dy,
                      const Tensor& dx, UnaryParams p) override;
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void gated(GatedAct act, const Tensor& gate, const Tensor& up, const Tensor& out) override;
  void gated_backward(GatedAct act, const Tensor& gate, const Tensor& up, const Tensor& dy,
                      const Tensor& dgate, const Tensor& dup) override;

  void reduce(ReduceOp op, const Tensor& x, std::span<const int64_t> dims,
              const Tensor& out) override;
  void argmax(const Tensor& x, int64_t dim, const Tensor& out) override;
  void cumsum(const Tensor& x, int64_t dim, bool reverse, const Tensor& out) override;

  void matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& out,
              double alpha, double beta) override;

  void index_select(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) override;
  void index_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) override;
  void gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) override;
  void scatter_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) override;

  void softmax(const Tensor& x, const Tensor& y, bool log) override;
  void softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx, bool log) override;
  void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps, const Tensor& y,
                  const Tensor& mean, const Tensor& rstd) override;
  void layer_norm_backward(const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd,
                           const Tensor& dy, const Tensor& dx, const Tensor& dw,
                           const Tensor& db) override;
  void rms_norm(const Tensor& x, const Tensor& w, double eps, const Tensor& y,
                const Tensor& rstd) override;
  void rms_norm_backward(const Tensor& x, const Tensor& w, const Tensor& rstd, const Tensor& dy,
                         const Tensor& dx, const Tensor& dw) override;
  void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                     double smoothing, const Tensor& loss, const Tensor& lse) override;
  void cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse,
                              const Tensor& dloss, int64_t ignore_index, double smoothing,
                              const Tensor& dlogits) override;
  void dropout(const Tensor& x, double p, RandomKey key, const Tensor& y) override;
  void rope(const Tensor& x, double base, int64_t pos_offset, bool inverse,
            const Tensor& y) override;
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                 const Tensor& key_mask, AttentionParams p, const Tensor& out,
                 const Tensor& lse) override;
  void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                          const Tensor& key_mask, AttentionParams p, const Tensor& out,
                          const Tensor& lse, const Tensor& dout, const Tensor& dq, const Tensor& dk,
                          const Tensor& dv, const Tensor& dbias) override;
};

}  // namespace strata::cuda
