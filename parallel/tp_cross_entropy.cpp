#include "parallel/tp_cross_entropy.h"

#include <cmath>
#include <vector>

#include "core/autograd/node.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/ops/registry.h"

namespace strata::parallel {

namespace {

// Registered in the op registry beside its code (tests/parallel/tp_ops_mpitest.cpp checks it).
const OpFamilyRegistration registration(kTensorParallelOps, {"vocab_parallel_cross_entropy"});

struct Slice {
  int64_t start = 0;  // first global vocab id held here
  int64_t size = 0;   // ids held here
  int64_t vocab = 0;  // global vocab
};

// A host constant; element-wise ops move it to the other operand's device.
Tensor i64_constant(int64_t v) {
  return scalar_tensor(double(v), DType::i64);
}

// Where each row's target sits in this rank's slice, built from tensor ops so that it runs on the
// logits' device (the targets never go to the host). `column` is the target's local column where
// this rank holds it and 0 elsewhere, so gathers and scatters through it stay in bounds.
struct LocalTargets {
  Tensor valid;   // [rows] bool: target != ignore_index
  Tensor held;    // [rows] bool: valid, and the target is in this rank's slice
  Tensor column;  // [rows, 1] i64
};

LocalTargets local_targets(const Tensor& t, const Slice& s, int64_t ignore_index) {
  LocalTargets l;
  l.valid = ne(t, i64_constant(ignore_index));
  const Tensor local = t - i64_constant(s.start);
  l.held = logical_and(l.valid,
                       logical_and(ge(local, i64_constant(0)), lt(local, i64_constant(s.size))));
  l.column = where(l.held, local, zeros_like(local)).unsqueeze(1).contiguous();
  return l;
}

// The logit of each row's target where this rank holds it, else 0 (the all-reduce sums the one
// holder's value).
Tensor target_logits(const Tensor& z, const LocalTargets& l) {
  const Tensor picked = gather(z, 1, l.column).view({-1});
  return where(l.held, picked, zeros_like(picked));
}

// d loss_i / d z_ij = softmax_ij - (1 - eps) [j == target_i] - eps / V, times the row's incoming
// gradient (0 at ignored rows), from p = softmax.
Tensor softmax_to_grad(const Tensor& p, const LocalTargets& l, const Tensor& g, const Slice& s,
                       double eps) {
  const Tensor scale = where(l.valid, g, zeros_like(g));
  const Tensor grad = (p - eps / double(s.vocab)) * scale.unsqueeze(1);
  const Tensor hit = where(l.held, scale, zeros_like(scale)) * -(1.0 - eps);
  return scatter_add(grad, 1, l.column, hit.unsqueeze(1));
}

}  // namespace

Tensor vocab_parallel_cross_entropy(const Tensor& logits, const Tensor& target, Communicator& tp,
                                    int64_t ignore_index, double label_smoothing,
                                    const std::string& reduction) {
  if (tp.size() == 1)
    return cross_entropy(logits, target, ignore_index, label_smoothing, reduction);
  const char* who = "vocab_parallel_cross_entropy";
  STRATA_CHECK(is_floating(logits.dtype()), who, ": logits must be floating, got ",
               dtype_name(logits.dtype()));
  STRATA_CHECK(target.dtype() == DType::i64 || target.dtype() == DType::i32, who,
               ": target must be integer class ids, got ", dtype_name(target.dtype()));
  STRATA_CHECK(logits.dim() >= 1, who, ": logits must have a class dim");
  const Shape row_shape(logits.shape().begin(), logits.shape().end() - 1);
  STRATA_CHECK(target.shape() == row_shape, who, ": logits ", shape_str(logits.shape()),
               " need target of shape ", shape_str(row_shape), ", got ", shape_str(target.shape()));
  STRATA_CHECK(label_smoothing >= 0 && label_smoothing <= 1, who,
               ": label_smoothing must be in [0, 1], got ", label_smoothing);
  STRATA_CHECK(reduction == "mean" || reduction == "sum" || reduction == "none", who,
               ": reduction must be mean, sum or none, got '", reduction, "'");

  const Slice s{tp.rank() * logits.size(-1), logits.size(-1), logits.size(-1) * tp.size()};
  const Tensor l2 = reshape(logits, {-1, s.size}).contiguous();
  const Tensor t = target.to(DType::i64).contiguous().view({-1});
  {
    NoGradGuard no_grad;
    // One count read back; the targets come to the host only to name a bad one.
    const Tensor bad =
        logical_and(ne(t, i64_constant(ignore_index)),
                    logical_or(lt(t, i64_constant(0)), ge(t, i64_constant(s.vocab))));
    if (sum(bad.to(DType::i64)).item<int64_t>() > 0) {
      const std::vector<int64_t> tv = t.to_vector<int64_t>();
      for (size_t i = 0; i < tv.size(); ++i)
        STRATA_CHECK(tv[i] == ignore_index || (tv[i] >= 0 && tv[i] < s.vocab), who, ": target ",
                     tv[i], " at row ", i, " is outside the vocab [0, ", s.vocab,
                     ") and not the ignore index ", ignore_index);
    }
  }
  const DType acc = logits.dtype() == DType::f64 ? DType::f64 : DType::f32;
  const double eps = label_smoothing;

  Tensor loss, lse;
  LocalTargets where_t;
  {
    NoGradGuard no_grad;
    where_t = local_targets(t, s, ignore_index);
    const Tensor z = l2.dtype() == acc ? l2.detach() : l2.detach().to(acc);
    Tensor m = amax(z, {1}).contiguous();
    tp.all_reduce(m, ReduceOp::Max, "tp.cross_entropy.max");
    // Shifted by the global maximum, every rank's exponentials share one scale and simply add.
    const Tensor sum_exp = sum(exp(z - m.unsqueeze(1)), {1});
    const Tensor zt = target_logits(z, where_t);
    std::vector<Tensor> parts{sum_exp, zt};
    if (eps > 0) parts.push_back(sum(z, {1}));
    Tensor sums = stack(parts, 0).contiguous();
    tp.all_reduce(sums, ReduceOp::Sum, "tp.cross_entropy.sums");
    lse = m + log(sums.select(0, 0));
    // PyTorch's smoothing: (1 - eps) * (lse - z_t) + eps * mean_j (lse - z_j).
    loss = lse - sums.select(0, 1) * (1.0 - eps);
    if (eps > 0) loss = loss - sums.select(0, 2) * (eps / double(s.vocab));
    loss = where(where_t.valid, loss, zeros_like(loss)).contiguous();
    lse = lse.contiguous();
  }
  autograd::record(
      "vocab_parallel_cross_entropy", {l2}, {&loss}, {l2, lse},
      [s, where_t, eps, acc](const std::vector<Tensor>& g, const std::vector<Tensor>& sv,
                             const std::vector<bool>&) -> std::vector<Tensor> {
        const Tensor z = sv[0].dtype() == acc ? sv[0] : sv[0].to(acc);
        const Tensor p = exp(z - sv[1].unsqueeze(1));
        const Tensor gr = g[0].dtype() == acc ? g[0] : g[0].to(acc);
        const Tensor dz = softmax_to_grad(p, where_t, gr, s, eps);
        return {dz.dtype() == sv[0].dtype() ? dz : dz.to(sv[0].dtype())};
      });
  const Tensor per_row = loss.dtype() == logits.dtype() ? loss : loss.to(logits.dtype());
  if (reduction == "none") return reshape(per_row, row_shape);
  const Tensor total = sum(per_row);
  if (reduction == "sum") return total;
  // The count stays on the device. An all-ignored batch gives 0 * (1/0) = NaN, as PyTorch and
  // strata::cross_entropy do.
  return total * reciprocal(sum(where_t.valid.to(total.dtype())));
}

}  // namespace strata::parallel
