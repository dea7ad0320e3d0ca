#include "models/tp_linear.h"

#include "core/error.h"
#include "core/ops.h"
#include "parallel/tp_mappings.h"

namespace strata::models {

ColumnParallelLinear::ColumnParallelLinear(int64_t in_features, int64_t out_features, bool bias,
                                           Init weight_init, Init bias_init,
                                           parallel::Communicator& tp, Input input,
                                           const std::string& what)
    : Linear("ColumnParallelLinear", in_features, out_features, bias, weight_init, bias_init,
             Sharding::split({out_features, in_features}, 0, tp.rank(), tp.size(),
                             what + " (output features)"),
             Sharding::split({out_features}, 0, tp.rank(), tp.size(), what + " (bias)")),
      tp_(tp),
      input_(input) {}

Tensor ColumnParallelLinear::forward(const Tensor& x) const {
  STRATA_CHECK(x.dim() >= 1 && x.size(-1) == in_features(), type_name(), ": input ",
               shape_str(x.shape()), " does not end in ", in_features());
  const Tensor in = input_ == Input::Replicated ? parallel::copy_to_tp(x, tp_, "tp.column_in") : x;
  return mixed_linear(precision(), in, weight(), bias());
}

RowParallelLinear::RowParallelLinear(int64_t in_features, int64_t out_features, bool bias,
                                     Init weight_init, Init bias_init, parallel::Communicator& tp,
                                     Input input, const std::string& what)
    : Linear("RowParallelLinear", in_features, out_features, bias, weight_init, bias_init,
             Sharding::split({out_features, in_features}, 1, tp.rank(), tp.size(),
                             what + " (input features)"),
             Sharding::replicated({out_features})),
      tp_(tp),
      input_(input),
      what_("tp." + what) {}

Tensor RowParallelLinear::forward(const Tensor& x) const {
  const Tensor in = input_ == Input::Replicated ? parallel::scatter_to_tp(x, tp_, what_) : x;
  STRATA_CHECK(in.dim() >= 1 && in.size(-1) == local_in_features(), type_name(), ": input ",
               shape_str(in.shape()), " does not end in this rank's ", local_in_features(), " of ",
               in_features(), " input features");
  // The bias joins after the sum so that it is counted once, not tp times. Under bf16 compute
  // the partial products are bf16, which the communicator sums in f32 and rounds once.
  const Precision& p = precision();
  Tensor y = parallel::reduce_from_tp(mixed_linear(p, in, weight()), tp_, what_);
  return bias().defined() ? y + p.operand(bias()) : y;
}

}  // namespace strata::models
