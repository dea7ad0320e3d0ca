#pragma once
// Shared by the tensor-parallel tests that run under mpirun: the TP groups, gathering shards into
// global tensors, and a finite-difference gradient check for ops whose tensors are replicated
// over the group or held per rank.
#include <gtest/gtest.h>
#include <mpi.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "core/ops.h"
#include "core/random/philox.h"
#include "models/module.h"
#include "parallel/topology.h"

namespace strata::parallel::testing {

inline int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

inline Topology make_topology(int tp) {
  Topology t = Topology::create(Layout{0, tp, 1});
  t.set_timeout(std::chrono::seconds(120));
  return t;
}

// TP over the whole world (np ranks: TPnp), made on first use (a collective).
inline Communicator& world_tp() {
  static Topology t = make_topology(world_size());
  return t.tp();
}

// TP2 (DP = np / 2), made on first use (a collective).
inline Communicator& tp2() {
  static Topology t = make_topology(2);
  return t.tp();
}

// The global tensor of a parameter (or its gradient) held as `sh` says: all-gathered over the
// group along the split dim, or itself when replicated.
inline Tensor gather_global(const Tensor& local, const models::Sharding& sh, Communicator& tp) {
  if (sh.is_replicated()) return local;
  EXPECT_EQ(sh.parts, tp.size());
  return tp.all_gather(local.contiguous(), sh.dim, "test.gather_global");
}

// How a tensor of a gradient-check case lives on the group.
enum class Dist {
  Replicated,  // one logical tensor, the same value on every rank
  PerRank,     // a different tensor on every rank (a slice, or a partial summand)
};

struct TpCase {
  std::string label;
  // Builds the f64 inputs on this rank (those to check require grad).
  std::function<std::vector<Tensor>(Communicator&)> make_inputs;
  std::vector<Dist> input_dist;  // one per input
  std::function<Tensor(const std::vector<Tensor>&, Communicator&)> fn;
  Dist output_dist;
};

// The checked objective: L = <y, w> for a replicated output (w the same on every rank), or
// L = sum_r <y_r, w_r> for a per-rank output. Every rank returns the same L.
inline double tp_objective(const TpCase& c, const std::vector<Tensor>& in, const Tensor& w,
                           Communicator& tp) {
  NoGradGuard no_grad;
  Tensor l = sum(c.fn(in, tp) * w).reshape({1}).contiguous();
  if (c.output_dist == Dist::PerRank) tp.all_reduce(l, ReduceOp::Sum, "test.objective");
  return l.item<double>();
}

// Central differences of tp_objective against the gradients backward gives on every rank. A
// replicated input is perturbed on all ranks at once (one logical element); a per-rank input is
// perturbed on one rank at a time while the others hold still. Every rank takes part in every
// evaluation, and checks the elements it owns. Returns the number of elements this rank checked.
inline int tp_gradcheck(const TpCase& c, Communicator& tp, double step = 1e-6,
                        double tolerance = 1e-6) {
  std::vector<Tensor> in = c.make_inputs(tp);
  EXPECT_EQ(in.size(), c.input_dist.size()) << c.label;
  const Tensor y = c.fn(in, tp);
  EXPECT_TRUE(y.requires_grad()) << c.label << ": output does not require grad";
  const uint64_t salt = c.output_dist == Dist::PerRank ? uint64_t(tp.rank()) + 1 : 0;
  const Tensor w = randn(y.shape(), RandomKey{77, uint32_t(RngStream::Test), salt, 0}, DType::f64);
  sum(y * w).backward();

  int checked = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    Tensor& x = in[i];
    if (!x.requires_grad()) continue;
    EXPECT_TRUE(x.is_contiguous() && x.dtype() == DType::f64) << c.label;
    const Tensor g = x.grad();
    const auto analytic =
        g.defined() ? g.to_vector<double>() : std::vector<double>(size_t(x.numel()), 0.0);
    double* p = x.data<double>();
    const int owners = c.input_dist[i] == Dist::Replicated ? 1 : tp.size();
    for (int owner = 0; owner < owners; ++owner) {
      const bool mine = c.input_dist[i] == Dist::Replicated || owner == tp.rank();
      for (int64_t j = 0; j < x.numel(); ++j) {
        const double orig = p[j];
        if (mine) p[j] = orig + step;
        const double lp = tp_objective(c, in, w, tp);
        if (mine) p[j] = orig - step;
        const double lm = tp_objective(c, in, w, tp);
        if (mine) p[j] = orig;
        if (!mine) continue;
        const double numeric = (lp - lm) / (2 * step);
        EXPECT_NEAR(analytic[size_t(j)], numeric, tolerance * std::max(1.0, std::abs(numeric)))
            << c.label << ": input " << i << " element " << j << " on rank " << tp.rank();
        ++checked;
      }
    }
  }
  return checked;
}

}  // namespace strata::parallel::testing
