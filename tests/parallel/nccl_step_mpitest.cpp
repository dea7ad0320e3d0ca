// Training steps through the NCCL communicator: a two-layer MLP, Megatron-split over TP (first
// matrix by columns, second by rows, joined by the tp mappings) and batch-split over DP, trained
// for two SGD steps on this rank's GPU in every DP x TP layout of the world; every rank's
// gradients and weights must equal its shard of a one-process CPU run on the whole batch (f32,
// within 1e-5). The gradients are averaged over DP with async all-reduces, as GradReducer does.
#include <gtest/gtest.h>
#include <mpi.h>

#include <string>
#include <vector>

#include "core/random/philox.h"
#include "nccl_test_util.h"
#include "parallel/topology.h"
#include "parallel/tp_mappings.h"

namespace strata::parallel {
namespace {

using testing::rel_diff;
using testing::to_cpu;

constexpr int64_t kBatch = 8, kIn = 16, kHidden = 32;
constexpr int kSteps = 2;
constexpr double kLr = 0.1;

Tensor data(const Shape& shape, uint64_t seed) {
  return randn(shape, RandomKey{seed, uint32_t(RngStream::Test), 0, 0});
}

struct Weights {
  Tensor w1, w2;  // [in, hidden] split by columns, [hidden, in] split by rows
};

// The whole model in one process, on the CPU: the reference trajectory (weights and gradients
// after each step).
struct Reference {
  std::vector<Weights> grads, weights;
};

Tensor mlp_loss(const Tensor& x, const Tensor& y, const Tensor& w1, const Tensor& w2,
                Communicator* tp) {
  Tensor in = tp ? copy_to_tp(x, *tp, "tp.mlp.in") : x;
  Tensor part = matmul(relu(matmul(in, w1)), w2);
  Tensor out = tp ? reduce_from_tp(part, *tp, "tp.mlp.out") : part;
  return mean(square(out - y));
}

Reference reference() {
  Reference ref;
  Tensor w1 = data({kIn, kHidden}, 1).set_requires_grad(true);
  Tensor w2 = (data({kHidden, kIn}, 2) * 0.5).detach().set_requires_grad(true);
  for (int step = 0; step < kSteps; ++step) {
    w1.set_grad(Tensor());
    w2.set_grad(Tensor());
    mlp_loss(data({kBatch, kIn}, 10 + step), data({kBatch, kIn}, 20 + step), w1, w2, nullptr)
        .backward();
    ref.grads.push_back({w1.grad().clone(), w2.grad().clone()});
    NoGradGuard ng;
    Tensor(w1).add_(w1.grad(), -kLr);
    Tensor(w2).add_(w2.grad(), -kLr);
    ref.weights.push_back({w1.detach().clone(), w2.detach().clone()});
  }
  return ref;
}

void run_layout(const Layout& layout, const Reference& ref) {
  Topology topo = Topology::create(layout, CommBackend::Nccl);
  const Device dev = topo.device();
  const Layout& l = topo.layout();
  const Coords c = topo.coords();
  const int64_t rows = kBatch / l.dp, cols = kHidden / l.tp;
  auto shard_w1 = [&](const Tensor& w) { return w.narrow(1, c.tp * cols, cols).contiguous(); };
  auto shard_w2 = [&](const Tensor& w) { return w.narrow(0, c.tp * cols, cols).contiguous(); };
  Tensor w1 = testing::to_gpu(shard_w1(data({kIn, kHidden}, 1)), dev).set_requires_grad(true);
  Tensor w2 = testing::to_gpu(shard_w2((data({kHidden, kIn}, 2) * 0.5).detach()), dev)
                  .set_requires_grad(true);
  for (int step = 0; step < kSteps; ++step) {
    const Tensor x = data({kBatch, kIn}, 10 + step).narrow(0, c.dp * rows, rows);
    const Tensor y = data({kBatch, kIn}, 20 + step).narrow(0, c.dp * rows, rows);
    w1.set_grad(Tensor());
    w2.set_grad(Tensor());
    mlp_loss(testing::to_gpu(x, dev), testing::to_gpu(y, dev), w1, w2, &topo.tp()).backward();
    // The DP average: each rank's loss is the mean over its rows, so the sum over the group
    // divided by its size is the whole batch's gradient.
    std::vector<Tensor> grads = {w1.grad().contiguous(), w2.grad().contiguous()};
    std::vector<std::unique_ptr<Work>> works;
    for (size_t k = 0; k < grads.size(); ++k)
      works.push_back(
          topo.dp().all_reduce_async(grads[k], ReduceOp::Sum, "dp.grad." + std::to_string(k)));
    for (auto& w : works) w->wait();
    NoGradGuard ng;
    for (Tensor& g : grads) g.mul_(1.0 / l.dp);
    const std::string at =
        l.str() + " step " + std::to_string(step) + " rank " + std::to_string(topo.world_rank());
    EXPECT_LE(rel_diff(to_cpu(grads[0]), shard_w1(ref.grads[size_t(step)].w1)), 1e-5) << at;
    EXPECT_LE(rel_diff(to_cpu(grads[1]), shard_w2(ref.grads[size_t(step)].w2)), 1e-5) << at;
    Tensor(w1).add_(grads[0], -kLr);
    Tensor(w2).add_(grads[1], -kLr);
    EXPECT_LE(rel_diff(to_cpu(w1.detach()), shard_w1(ref.weights[size_t(step)].w1)), 1e-5) << at;
    EXPECT_LE(rel_diff(to_cpu(w2.detach()), shard_w2(ref.weights[size_t(step)].w2)), 1e-5) << at;
  }
}

TEST(NcclTraining, DpTpStepsEqualTheOneProcessRun) {
  const Reference ref = reference();
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  for (int tp = 1; tp <= world; tp *= 2) {
    if (world % tp != 0 || kHidden % tp != 0 || kBatch % (world / tp) != 0) continue;
    run_layout(Layout{world / tp, tp, 1}, ref);
  }
}

}  // namespace
}  // namespace strata::parallel
