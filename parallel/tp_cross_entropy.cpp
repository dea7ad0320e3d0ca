#include "parallel/tp_cross_entropy.h"

#include <cmath>
#include <vector>

#include "core/autograd/node.h"
#include "core/error.h"
#include "core/ops.h"

namespace strata::parallel {

namespace {

struct Slice {
  int64_t start = 0;  // first global vocab id held here
  int64_t size = 0;   // ids held here
  int64_t vocab = 0;  // global vocab
};

template <class F>
void dispatch_acc(DType acc, F&& f) {
  if (acc == DType::f64)
    f.template operator()<double>();
  else
    f.template operator()<float>();
}

// The logit of each row's target when this rank holds it, else 0 (the all-reduce sums the one
// holder's value).
template <class T>
Tensor target_logits(const Tensor& z, const std::vector<int64_t>& t, const Slice& s,
                     int64_t ignore_index) {
  const int64_t rows = z.size(0);
  Tensor out = zeros({rows}, z.dtype());
  const T* zp = z.data<T>();
  T* op = out.data<T>();
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t local = t[size_t(i)] - s.start;
    if (t[size_t(i)] != ignore_index && local >= 0 && local < s.size)
      op[i] = zp[i * s.size + local];
  }
  return out;
}

// d loss_i / d z_ij = softmax_ij - (1 - eps) [j == target_i] - eps / V, times the row's incoming
// gradient (0 at ignored rows). `p` holds softmax on entry and the gradient on exit.
template <class T>
void softmax_to_grad(Tensor& p, const std::vector<int64_t>& t, const Tensor& g, const Slice& s,
                     int64_t ignore_index, double eps) {
  const int64_t rows = p.size(0), n = s.size;
  T* pp = p.data<T>();
  const T* gp = g.data<T>();
  const T uniform = T(eps / double(s.vocab)), hit = T(1.0 - eps);
#pragma omp parallel for schedule(static) if (rows * n > (1 << 15))
  for (int64_t i = 0; i < rows; ++i) {
    T* row = pp + i * n;
    const int64_t target = t[size_t(i)];
    const T scale = target == ignore_index ? T(0) : gp[i];
    const int64_t local = target - s.start;
    for (int64_t j = 0; j < n; ++j) row[j] = (row[j] - uniform) * scale;
    if (target != ignore_index && local >= 0 && local < n) row[local] -= hit * scale;
  }
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
  const std::vector<int64_t> tv = t.to_vector<int64_t>();
  for (size_t i = 0; i < tv.size(); ++i)
    STRATA_CHECK(tv[i] == ignore_index || (tv[i] >= 0 && tv[i] < s.vocab), who, ": target ", tv[i],
                 " at row ", i, " is outside the vocab [0, ", s.vocab,
                 ") and not the ignore index ", ignore_index);
  const DType acc = logits.dtype() == DType::f64 ? DType::f64 : DType::f32;
  const double eps = label_smoothing;

  Tensor loss, lse;
  {
    NoGradGuard no_grad;
    const Tensor z = l2.dtype() == acc ? l2.detach() : l2.detach().to(acc);
    Tensor m = amax(z, {1}).contiguous();
    tp.all_reduce(m, ReduceOp::Max, "tp.cross_entropy.max");
    // Shifted by the global maximum, every rank's exponentials share one scale and simply add.
    const Tensor sum_exp = sum(exp(z - m.unsqueeze(1)), {1});
    Tensor zt;
    dispatch_acc(acc, [&]<class T>() { zt = target_logits<T>(z, tv, s, ignore_index); });
    std::vector<Tensor> parts{sum_exp, zt};
    if (eps > 0) parts.push_back(sum(z, {1}));
    Tensor sums = stack(parts, 0).contiguous();
    tp.all_reduce(sums, ReduceOp::Sum, "tp.cross_entropy.sums");
    lse = m + log(sums.select(0, 0));
    // PyTorch's smoothing: (1 - eps) * (lse - z_t) + eps * mean_j (lse - z_j).
    loss = lse - sums.select(0, 1) * (1.0 - eps);
    if (eps > 0) loss = loss - sums.select(0, 2) * (eps / double(s.vocab));
    const Tensor valid = ne(t, scalar_tensor(double(ignore_index), DType::i64));
    loss = where(valid, loss, zeros_like(loss)).contiguous();
    lse = lse.contiguous();
  }
  autograd::record(
      "vocab_parallel_cross_entropy", {l2}, {&loss}, {l2, lse},
      [s, tv, ignore_index, eps, acc](const std::vector<Tensor>& g, const std::vector<Tensor>& sv,
                                      const std::vector<bool>&) -> std::vector<Tensor> {
        const Tensor z = sv[0].dtype() == acc ? sv[0] : sv[0].to(acc);
        Tensor p = exp(z - sv[1].unsqueeze(1)).contiguous();
        const Tensor gr = g[0].dtype() == acc ? g[0].contiguous() : g[0].to(acc).contiguous();
        dispatch_acc(acc, [&]<class T>() { softmax_to_grad<T>(p, tv, gr, s, ignore_index, eps); });
        return {p.dtype() == sv[0].dtype() ? p : p.to(sv[0].dtype())};
      });
  const Tensor per_row = loss.dtype() == logits.dtype() ? loss : loss.to(logits.dtype());
  if (reduction == "none") return reshape(per_row, row_shape);
  const Tensor total = sum(per_row);
  if (reduction == "sum") return total;
  int64_t counted = 0;
  for (int64_t v : tv) counted += v != ignore_index;
  // An all-ignored batch gives 0/0 = NaN, as PyTorch and strata::cross_entropy do.
  return total * (1.0 / double(counted));
}

}  // namespace strata::parallel
