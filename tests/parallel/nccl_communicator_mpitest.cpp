// The NCCL communicator under mpirun, one GPU per rank (1 rank on a one-GPU machine, more where
// there are more GPUs): every collective on GPU tensors, every dtype, against the MPI
// communicator's result on the same data; async handles; point to point including a symmetric
// exchange; the groups of Topology::create(..., CommBackend::Nccl); errors for tensors on the
// wrong transport; determinism.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <memory>
#include <vector>

#include "core/random/philox.h"
#include "nccl_test_util.h"
#include "parallel/mpi_communicator.h"
#include "parallel/nccl_communicator.h"
#include "parallel/nccl_routed_communicator.h"
#include "parallel/topology.h"

namespace strata::parallel {
namespace {

using testing::bitwise_equal;
using testing::rel_diff;
using testing::to_cpu;

constexpr DType kAll[] = {DType::f32, DType::f64, DType::bf16, DType::i32, DType::i64};

// One NCCL topology (DP = world) for the binary, gone before main() finalises MPI.
class NcclEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    topo_ = std::make_unique<Topology>(Topology::create(Layout{}, CommBackend::Nccl));
    topo_->set_timeout(std::chrono::seconds(120));
  }
  void TearDown() override { topo_.reset(); }
  static Topology& topo() { return *topo_; }

 private:
  static inline std::unique_ptr<Topology> topo_;
};
const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new NcclEnvironment);

Topology& topo() {
  return NcclEnvironment::topo();
}
DeviceRoutedCommunicator& world() {
  return dynamic_cast<DeviceRoutedCommunicator&>(topo().world());
}
Communicator& mpi() {
  return world().host();
}
Communicator& nccl() {
  return world().gpu();
}
Tensor gpu(const Tensor& cpu) {
  return testing::to_gpu(cpu, topo().device());
}

// Rank r's value at element i: small integers (halved for floating dtypes), so every sum is
// exact and NCCL's summation order cannot differ from MPI's in the result.
Tensor rank_tensor(int r, const Shape& shape, DType d) {
  std::vector<double> v(size_t(numel(shape)));
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = double((r + 1) * (int64_t(i) % 13 - 6)) * (is_floating(d) ? 0.5 : 1);
  return from_vector(v, shape).to(d);
}

Tensor positive(const Tensor& t) {
  return gt(t, zeros_like(t));
}

std::string str(DType d) {
  return std::string(dtype_name(d));
}

TEST(Nccl, TopologyPicksThisRanksGpu) {
  EXPECT_EQ(topo().backend(), CommBackend::Nccl);
  EXPECT_FALSE(topo().device().is_cpu());
  EXPECT_EQ(topo().device().index, topo().local_rank() % cuda::device_count());
  EXPECT_EQ(nccl().size(), topo().world_size());
  EXPECT_EQ(nccl().rank(), topo().world_rank());
  int current = -1;
  cudaGetDevice(&current);
  EXPECT_EQ(current, topo().device().index);
}

TEST(Nccl, AllReduceSumAndMaxMatchMpiEveryDtype) {
  const int me = world().rank();
  for (DType d : kAll) {
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max}) {
      Tensor host = rank_tensor(me, {3, 5}, d);
      Tensor dev = gpu(host);
      mpi().all_reduce(host, op, "test.ar");
      world().all_reduce(dev, op, "test.ar");  // routed to NCCL by the device
      EXPECT_TRUE(bitwise_equal(to_cpu(dev), host))
          << str(d) << (op == ReduceOp::Sum ? " sum" : " max");
    }
  }
}

TEST(Nccl, RandomSumsAgreeWithMpiWithinRounding) {
  const int me = world().rank();
  for (int64_t n : {1, 1000, 1'000'000}) {
    for (DType d : {DType::f32, DType::f64, DType::bf16}) {
      const Tensor x = randn({n}, RandomKey{3, uint32_t(RngStream::Test), uint64_t(me), 0}, d);
      Tensor host = x.clone(), dev = gpu(x);
      mpi().all_reduce(host, ReduceOp::Sum, "test.rand");
      nccl().all_reduce(dev, ReduceOp::Sum, "test.rand");
      const double tol = d == DType::f64 ? 1e-12 : d == DType::f32 ? 1e-5 : 1e-2;
      EXPECT_LE(rel_diff(to_cpu(dev), host), tol) << str(d) << " n " << n;
    }
  }
}

TEST(Nccl, Bf16SumsInF32AndRoundsOnce) {
  const int P = world().size();
  const float small = float(std::ldexp(1.0, -9));
  Tensor t = gpu(from_vector<float>({world().rank() == 0 ? 1.0f : small}, {1}).to(DType::bf16));
  nccl().all_reduce(t, ReduceOp::Sum, "test.bf16");
  const float exact = 1.0f + float(P - 1) * small;
  EXPECT_EQ(to_cpu(t).item<float>(), float(bf16(exact)));
}

TEST(Nccl, AllGatherAlongEachDimMatchesMpi) {
  const int me = world().rank();
  for (DType d : {DType::f32, DType::f64, DType::bf16, DType::i32, DType::i64, DType::b8}) {
    for (int64_t dim : {0, 1, -1}) {
      const Tensor mine = d == DType::b8 ? positive(rank_tensor(me, {2, 3}, DType::f32))
                                         : rank_tensor(me, {2, 3}, d);
      const Tensor want = mpi().all_gather(mine, dim, "test.gather");
      const Tensor got = nccl().all_gather(gpu(mine), dim, "test.gather");
      EXPECT_FALSE(got.device().is_cpu());
      EXPECT_TRUE(bitwise_equal(to_cpu(got), want)) << str(d) << " dim " << dim;
    }
  }
}

TEST(Nccl, ReduceScatterAlongEachDimMatchesMpi) {
  const int P = world().size(), me = world().rank();
  for (DType d : kAll) {
    for (int64_t dim : {0, 1}) {
      const Tensor x = rank_tensor(me, {2 * P, 3 * P}, d);
      const Tensor want = mpi().reduce_scatter(x, dim, "test.rs");
      const Tensor got = nccl().reduce_scatter(gpu(x), dim, "test.rs");
      EXPECT_TRUE(bitwise_equal(to_cpu(got), want)) << str(d) << " dim " << dim;
    }
  }
}

TEST(Nccl, BroadcastFromEveryRootMatchesMpi) {
  const int P = world().size(), me = world().rank();
  for (DType d : {DType::f32, DType::f64, DType::bf16, DType::i32, DType::i64, DType::b8}) {
    for (int root = 0; root < P; ++root) {
      Tensor host =
          d == DType::b8 ? positive(rank_tensor(me, {7}, DType::f32)) : rank_tensor(me, {7}, d);
      Tensor dev = gpu(host);
      mpi().broadcast(host, root, "test.bcast");
      nccl().broadcast(dev, root, "test.bcast");
      EXPECT_TRUE(bitwise_equal(to_cpu(dev), host)) << str(d) << " root " << root;
    }
  }
}

TEST(Nccl, SendRecvAroundTheRing) {
  const int P = world().size(), me = world().rank();
  if (P < 2) GTEST_SKIP() << "point to point needs two ranks";
  const int next = (me + 1) % P, prev = (me + P - 1) % P;
  for (DType d : kAll) {
    const Tensor out = gpu(rank_tensor(me, {1000}, d));
    Tensor in = Tensor::empty({1000}, d, topo().device());
    if (me % 2 == 0) {
      world().send(out, next, "test.ring");
      world().recv(in, prev, "test.ring");
    } else {
      world().recv(in, prev, "test.ring");
      world().send(out, next, "test.ring");
    }
    EXPECT_TRUE(bitwise_equal(to_cpu(in), rank_tensor(prev, {1000}, d))) << str(d);
    Tensor in2 = Tensor::empty({1000}, d, topo().device());
    auto r = world().recv_async(in2, prev, "test.ring_async");
    auto s = world().send_async(out, next, "test.ring_async");
    r->wait();
    s->wait();
    EXPECT_TRUE(bitwise_equal(to_cpu(in2), rank_tensor(prev, {1000}, d))) << str(d);
    EXPECT_TRUE(r->done());
  }
}

// Both ends send first and then receive, with messages far beyond NCCL's buffers: the two
// directions use separate communicators, so neither send waits for the other's receive.
TEST(Nccl, SymmetricExchangeDoesNotDeadlock) {
  const int P = world().size(), me = world().rank();
  if (P < 2) GTEST_SKIP() << "point to point needs two ranks";
  const int peer = me ^ 1;
  if (peer >= P) return;
  const int64_t n = int64_t(16) << 20;  // 64 MiB of f32
  const Tensor mine = gpu(full({n}, double(me + 1)));
  Tensor theirs = Tensor::empty({n}, DType::f32, topo().device());
  auto s = world().send_async(mine, peer, "test.exchange");
  world().recv(theirs, peer, "test.exchange");
  s->wait();
  const Tensor got = to_cpu(theirs);
  EXPECT_EQ(got.narrow(0, 0, 1).item<float>(), float(peer + 1));
  EXPECT_EQ(got.narrow(0, n - 1, 1).item<float>(), float(peer + 1));
}

TEST(Nccl, AsyncAllReducesCompleteInAnyWaitOrder) {
  const int P = world().size(), me = world().rank();
  for (DType d : kAll) {
    std::vector<Tensor> ts;
    std::vector<std::unique_ptr<Work>> works;
    for (int k = 0; k < 4; ++k) {
      ts.push_back(gpu(rank_tensor(me, {64 + k}, d)));
      works.push_back(world().all_reduce_async(ts.back(), ReduceOp::Sum, "test.async"));
    }
    for (int k = 3; k >= 0; --k) works[size_t(k)]->wait();
    while (!works[0]->done()) {
    }
    for (int k = 0; k < 4; ++k) {
      Tensor want = zeros({64 + k}, DType::f64);
      for (int r = 0; r < P; ++r) want.add_(rank_tensor(r, {64 + k}, d).to(DType::f64));
      EXPECT_TRUE(bitwise_equal(to_cpu(ts[size_t(k)]), want.to(d).contiguous()))
          << str(d) << " " << k;
    }
  }
}

TEST(Nccl, HostSynchronizeAndDroppedHandles) {
  const int P = world().size();
  Tensor a = gpu(rank_tensor(world().rank(), {16}, DType::f32));
  Tensor b = a.clone();
  auto w = world().all_reduce_async(a, ReduceOp::Sum, "test.sync");
  dynamic_cast<NcclWork&>(*w).synchronize();
  EXPECT_TRUE(w->done());
  world().all_reduce_async(b, ReduceOp::Sum, "test.drop").reset();
  Tensor want = zeros({16}, DType::f64);
  for (int r = 0; r < P; ++r) want.add_(rank_tensor(r, {16}, DType::f64));
  EXPECT_TRUE(bitwise_equal(to_cpu(a), want.to(DType::f32)));
  EXPECT_TRUE(bitwise_equal(to_cpu(b), want.to(DType::f32)));
  nccl().barrier("test.barrier");
  world().barrier("test.barrier");
}

TEST(Nccl, SumsAreBitwiseEqualOnEveryRankAndEveryRepeat) {
  const int P = world().size(), me = world().rank();
  for (int64_t n : {1, 1000, 100'000, 3'000'000}) {
    for (DType d : {DType::f32, DType::bf16, DType::f64}) {
      const Tensor x = randn({n}, RandomKey{7, uint32_t(RngStream::Test), uint64_t(me), 0}, d);
      Tensor a = gpu(x), b = gpu(x), c = gpu(x);
      nccl().all_reduce(a, ReduceOp::Sum, "test.det");
      nccl().all_reduce(b, ReduceOp::Sum, "test.det");
      nccl().all_reduce_async(c, ReduceOp::Sum, "test.det_async")->wait();
      EXPECT_TRUE(bitwise_equal(to_cpu(a), to_cpu(b)))
          << "repeat differs: n " << n << " " << str(d);
      const Tensor all_a = to_cpu(nccl().all_gather(a.unsqueeze(0), 0, "test.det_gather"));
      const Tensor all_c = to_cpu(nccl().all_gather(c.unsqueeze(0), 0, "test.det_gather"));
      const Tensor ca = to_cpu(a), cc = to_cpu(c);
      for (int r = 0; r < P; ++r) {
        EXPECT_TRUE(bitwise_equal(all_a.select(0, r), ca)) << "rank " << r << " n " << n;
        EXPECT_TRUE(bitwise_equal(all_c.select(0, r), cc)) << "rank " << r << " n " << n;
      }
    }
  }
}

// The tp, dp and pp groups of every layout of the world: each group's NCCL all-reduce and
// all-gather against its MPI twin.
TEST(Nccl, TopologyGroupsMatchTheirMpiTwins) {
  const int P = world().size();
  std::vector<Layout> layouts = {Layout{P, 1, 1}};
  if (P % 2 == 0) layouts.push_back(Layout{P / 2, 2, 1}), layouts.push_back(Layout{P / 2, 1, 2});
  for (const Layout& l : layouts) {
    Topology t = Topology::create(l, CommBackend::Nccl);
    for (Communicator* g : {&t.tp(), &t.dp(), &t.pp()}) {
      auto& routed = dynamic_cast<DeviceRoutedCommunicator&>(*g);
      Tensor host = rank_tensor(t.world_rank(), {4, 6}, DType::f32);
      Tensor dev = gpu(host);
      routed.all_reduce(host, ReduceOp::Sum, "test.group");
      routed.all_reduce(dev, ReduceOp::Sum, "test.group");
      EXPECT_TRUE(bitwise_equal(to_cpu(dev), host)) << l.str() << " group " << g->name();
      const Tensor want = routed.all_gather(host, 1, "test.group_gather");
      const Tensor got = routed.all_gather(dev, 1, "test.group_gather");
      EXPECT_TRUE(bitwise_equal(to_cpu(got), want)) << l.str() << " group " << g->name();
    }
    if (t.layout().pp == 2) {  // pp has point-to-point lanes: stage 0 <-> stage 1
      Communicator& pp = t.pp();
      const Tensor mine = gpu(rank_tensor(pp.rank(), {128}, DType::f32));
      Tensor theirs = Tensor::empty({128}, DType::f32, t.device());
      auto s = pp.send_async(mine, 1 - pp.rank(), "test.pp");
      pp.recv(theirs, 1 - pp.rank(), "test.pp");
      s->wait();
      EXPECT_TRUE(bitwise_equal(to_cpu(theirs), rank_tensor(1 - pp.rank(), {128}, DType::f32)));
    }
  }
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Nccl, TensorsOnTheWrongTransportAreErrorsNamingTheFix) {
  Tensor host = zeros({4});
  Tensor dev = gpu(host);
  const std::string to_nccl = error_of([&] { nccl().all_reduce(host, ReduceOp::Sum, "grad.x"); });
  EXPECT_NE(to_nccl.find("all_reduce 'grad.x': the NCCL communicator carries CUDA tensors"),
            std::string::npos)
      << to_nccl;
  EXPECT_NE(to_nccl.find("Topology::device()"), std::string::npos) << to_nccl;
  const std::string to_mpi = error_of([&] { mpi().all_reduce(dev, ReduceOp::Sum, "grad.y"); });
  EXPECT_NE(to_mpi.find("all_reduce 'grad.y': the MPI communicator carries CPU tensors"),
            std::string::npos)
      << to_mpi;
  EXPECT_NE(to_mpi.find("CommBackend::Nccl"), std::string::npos) << to_mpi;
  Tensor nc = gpu(zeros({4, 3})).t();
  EXPECT_NE(error_of([&] { nccl().all_reduce(nc, ReduceOp::Sum, "nc"); }).find("contiguous"),
            std::string::npos);
  EXPECT_NE(
      error_of([&] { nccl().broadcast(dev, world().size(), "b"); }).find("is not a rank of group"),
      std::string::npos);
  EXPECT_NE(error_of([&] { nccl().send(dev, world().rank(), "s"); }).find("is this rank"),
            std::string::npos);
  // Nothing above reached NCCL: the ranks are still in step.
  nccl().barrier("test.after_errors");
}

}  // namespace
}  // namespace strata::parallel
