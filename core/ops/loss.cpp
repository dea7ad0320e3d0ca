// cross_entropy: fused log-softmax + NLL with ignore index and label smoothing.
#include "core/autograd/node.h"
#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/ops/nn.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "core/ops/transfer.h"

namespace strata {

Tensor cross_entropy(const Tensor& logits, const Tensor& target_in, int64_t ignore_index,
                     double label_smoothing, const std::string& reduction) {
  const Tensor target = follow_device(target_in, logits);
  STRATA_CHECK(is_floating(logits.dtype()), "cross_entropy: logits must be floating, got ",
               dtype_name(logits.dtype()));
  STRATA_CHECK(target.dtype() == DType::i64 || target.dtype() == DType::i32,
               "cross_entropy: target must be integer class ids, got ", dtype_name(target.dtype()));
  STRATA_CHECK(logits.dim() >= 1, "cross_entropy: logits must have a class dim");
  check_same_device("cross_entropy", "logits", logits, "target", target);
  Shape row_shape(logits.shape().begin(), logits.shape().end() - 1);
  STRATA_CHECK(target.shape() == row_shape, "cross_entropy: logits ", shape_str(logits.shape()),
               " need target of shape ", shape_str(row_shape), ", got ", shape_str(target.shape()));
  STRATA_CHECK(label_smoothing >= 0 && label_smoothing <= 1,
               "cross_entropy: label_smoothing must be in [0, 1], got ", label_smoothing);
  STRATA_CHECK(reduction == "mean" || reduction == "sum" || reduction == "none",
               "cross_entropy: reduction must be mean, sum or none, got '", reduction, "'");
  const int64_t V = logits.size(-1);
  Tensor l2 = reshape(logits, {-1, V}).contiguous();
  Tensor t = target.to(DType::i64).contiguous().view({-1});
  const int64_t rows = l2.size(0);
  const DType acc = logits.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Tensor loss = empty({rows}, acc, logits.device());
  Tensor lse = empty({rows}, acc, logits.device());
  backend_for(logits.device())
      .cross_entropy(l2.detach(), t, ignore_index, label_smoothing, loss, lse);
  autograd::record(
      "cross_entropy", {l2}, {&loss}, {l2, t, lse},
      [ignore_index, label_smoothing](const std::vector<Tensor>& g, const std::vector<Tensor>& s,
                                      const std::vector<bool>&) -> std::vector<Tensor> {
        const Tensor &logits_s = s[0], &targets = s[1], &lse_s = s[2];
        Tensor dl = empty(logits_s.shape(), logits_s.dtype(), logits_s.device());
        backend_for(dl.device())
            .cross_entropy_backward(logits_s, targets, lse_s, g[0].contiguous(), ignore_index,
                                    label_smoothing, dl);
        return {dl};
      });
  Tensor per_row = loss.dtype() == logits.dtype() ? loss : loss.to(logits.dtype());
  if (reduction == "none") return reshape(per_row, row_shape);
  Tensor total = sum(per_row);
  if (reduction == "sum") return total;
  // Mean over the rows that count; an all-ignored batch gives 0/0 = NaN, as PyTorch does.
  const int64_t counted =
      sum(ne(t, scalar_tensor(double(ignore_index), DType::i64, t.device()))).item<int64_t>();
  return total * (1.0 / double(counted));
}

}  // namespace strata
