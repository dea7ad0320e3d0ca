#pragma once
// Megatron's tensor-parallel linear layers over a group of tp ranks (Shoeybi et al. 2019). They
// keep Linear's parameter names (weight [out, in], bias [out]); each parameter carries its global
// shape and split (Module::sharding) and initialises to exactly its slice of the single-process
// Linear's numbers, so a TPn model equals the single-process one.
//
// ColumnParallelLinear splits the outputs: rank r holds weight rows and bias entries
// [r * out/tp, (r+1) * out/tp), reads a replicated x and returns its slice of y.
// RowParallelLinear splits the inputs: rank r holds weight columns [r * in/tp, (r+1) * in/tp),
// reads its slice of x, all-reduces the partial products and adds the (replicated) bias once.
// A column layer followed by a row layer (attention's q/k/v then o, the FFN's up then down)
// communicates once per direction: the row layer's forward all-reduce and the column layer's
// backward all-reduce.
#include "models/linear.h"
#include "parallel/communicator.h"

namespace strata::models {

class ColumnParallelLinear : public Linear {
 public:
  // How forward treats x: Replicated applies copy_to_tp (its backward all-reduces dx); InRegion
  // means the caller already did, so several layers reading one input (q, k and v) share one
  // backward all-reduce.
  enum class Input { Replicated, InRegion };

  // Throws unless tp.size() divides out_features (the message names `what` and both numbers).
  ColumnParallelLinear(int64_t in_features, int64_t out_features, bool bias, Init weight_init,
                       Init bias_init, parallel::Communicator& tp, Input input = Input::Replicated,
                       const std::string& what = "ColumnParallelLinear");
  // x [..., in] replicated -> this rank's slice [..., out / tp].
  Tensor forward(const Tensor& x) const override;
  int64_t local_out_features() const { return out_features() / tp_.size(); }

 private:
  parallel::Communicator& tp_;
  Input input_;
};

class RowParallelLinear : public Linear {
 public:
  // How forward treats x: Split is this rank's slice [..., in / tp] (a column layer's output);
  // Replicated is the whole [..., in], and forward takes its slice (scatter_to_tp).
  enum class Input { Split, Replicated };

  // Throws unless tp.size() divides in_features.
  RowParallelLinear(int64_t in_features, int64_t out_features, bool bias, Init weight_init,
                    Init bias_init, parallel::Communicator& tp, Input input = Input::Split,
                    const std::string& what = "RowParallelLinear");
  // -> [..., out], replicated.
  Tensor forward(const Tensor& x) const override;
  int64_t local_in_features() const { return in_features() / tp_.size(); }

 private:
  parallel::Communicator& tp_;
  Input input_;
  std::string what_;
};

}  // namespace strata::models
