#pragma once
// Data-parallel gradient reduction. Parameters are packed, in reverse registration order (the
// order backward finishes them), into flat buckets of about `bucket_bytes`; when the last
// gradient of a bucket is final (the leaf grad-ready hook of core), the bucket's all-reduce is
// launched while backward goes on. finish() completes the rest and writes the average over the
// data-parallel group into every parameter's grad.
//
//   GradReducer reducer(model.named_parameters(), topo.dp());
//   for (micro-batch k of n) {
//     auto guard = k + 1 < n ? reducer.no_sync() : GradReducer::NoSync();  // accumulate locally
//     (model.loss(...) / n).backward();
//   }
//   reducer.finish();
//   optimizer.step();
//
// Determinism: buckets are launched strictly in bucket order, whatever order their gradients
// become ready in, so every rank issues the same collectives in the same order; a parameter that
// got no gradient by finish() contributes its accumulated grad, or zeros, so after finish() every
// parameter has a grad (zeros when no rank produced one).
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "parallel/communicator.h"

namespace strata::parallel {

struct GradReducerOptions {
  int64_t bucket_bytes = int64_t(25) << 20;
};

class GradReducer {
 public:
  // Registers hooks on every parameter that requires grad (create the reducer after Module::to,
  // which replaces the tensors). Collective over `dp`: every rank must pass the same names,
  // shapes and dtypes, else every rank throws strata::Error. `dp` must outlive the reducer.
  GradReducer(const std::vector<std::pair<std::string, Tensor>>& params, Communicator& dp,
              GradReducerOptions options = {});
  ~GradReducer();
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  // While a NoSync guard lives, backward passes only accumulate into param.grad (every
  // micro-batch but the last of a gradient-accumulation step). A default-constructed guard does
  // nothing.
  class NoSync {
   public:
    NoSync() = default;
    NoSync(NoSync&& o) noexcept : r_(std::exchange(o.r_, nullptr)) {}
    NoSync& operator=(NoSync&& o) noexcept;
    ~NoSync();

   private:
    friend class GradReducer;
    explicit NoSync(GradReducer& r);
    GradReducer* r_ = nullptr;
  };
  [[nodiscard]] NoSync no_sync() { return NoSync(*this); }
  void set_sync(bool on);
  bool sync() const;

  // Launches the buckets not launched during backward, waits for all, and sets every
  // parameter's grad to the average over the group. Once per optimizer step, after the last
  // backward; a backward with sync on that runs twice before finish() is an error.
  void finish();

  // Parameter names per bucket, in launch order (for tests and logs).
  std::vector<std::vector<std::string>> bucket_names() const;
  // How many buckets the last step launched during backward, before finish() (overlap).
  int launched_during_backward() const;

 private:
  struct State;
  std::shared_ptr<State> state_;  // shared with the hooks, which hold it weakly
};

// Copies dp rank 0's parameters to the other ranks (start from identical weights whatever each
// rank initialised).
void broadcast_parameters(const std::vector<std::pair<std::string, Tensor>>& params,
                          Communicator& dp);

}  // namespace strata::parallel
