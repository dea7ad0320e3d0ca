// MpiCommunicator under mpirun (2, 3 and 4 ranks): every collective against an expectation each
// rank computes locally, for every dtype; async handles; point to point; bad input; and
// determinism (bitwise the same on every rank and on every repetition).
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "core/ops.h"
#include "core/random/philox.h"
#include "parallel/mpi_communicator.h"

namespace strata::parallel {
namespace {

constexpr DType kAll[] = {DType::f32, DType::f64, DType::bf16, DType::i32, DType::i64};

// One communicator for the whole binary (a duplicate of the world with its own watchdog), owned
// by a test environment so that it is gone before main() finalises MPI.
class WorldEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    comm_ = MpiCommunicator::world("world");
    comm_->set_timeout(std::chrono::seconds(120));
  }
  void TearDown() override { comm_.reset(); }
  static MpiCommunicator& comm() { return *comm_; }

 private:
  static inline std::unique_ptr<MpiCommunicator> comm_;
};
const auto* const kWorld = ::testing::AddGlobalTestEnvironment(new WorldEnvironment);

MpiCommunicator& comm() {
  return WorldEnvironment::comm();
}

// Rank r's value at element i: small integers (halved for floating dtypes), so that every sum
// below is exact in every dtype and the expectation does not depend on the summation order.
double value(int r, int64_t i) {
  return double((r + 1) * ((i % 13) - 6));
}

Tensor rank_tensor(int r, const Shape& shape, DType d) {
  std::vector<double> v(size_t(numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = value(r, int64_t(i)) * (is_floating(d) ? 0.5 : 1);
  return from_vector(v, shape).to(d);
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const Tensor x = a.contiguous(), y = b.contiguous();
  return std::memcmp(x.raw_data(), y.raw_data(), size_t(x.numel()) * x.element_size()) == 0;
}

Tensor positive(const Tensor& t) {
  return gt(t, zeros_like(t));
}

std::string str(DType d) {
  return std::string(dtype_name(d));
}

TEST(Communicator, AllReduceSumAndMaxEveryDtype) {
  const int P = comm().size();
  for (DType d : kAll) {
    const Shape shape{3, 5};
    Tensor sum = rank_tensor(comm().rank(), shape, d);
    Tensor max = sum.clone();
    comm().all_reduce(sum, ReduceOp::Sum, "test.sum");
    comm().all_reduce(max, ReduceOp::Max, "test.max");
    Tensor want_sum = zeros(shape, DType::f64);
    Tensor want_max = rank_tensor(0, shape, d).to(DType::f64);
    for (int r = 0; r < P; ++r) {
      const Tensor x = rank_tensor(r, shape, d).to(DType::f64);
      want_sum.add_(x);
      want_max = maximum(want_max, x);
    }
    EXPECT_TRUE(bitwise_equal(sum, want_sum.to(d).contiguous())) << str(d) << "\n" << sum.str();
    EXPECT_TRUE(bitwise_equal(max, want_max.to(d).contiguous())) << str(d) << "\n" << max.str();
  }
}

TEST(Communicator, Bf16SumsInF32AndRoundsOnce) {
  // 1 + P * 2^-9: each addend is below bf16's half ulp at 1 (2^-8), so summing in bf16 would lose
  // them all; summed in f32 and rounded once, P >= 2 of them round up to 1 + 2^-7 or beyond.
  const int P = comm().size();
  Tensor t = from_vector<float>({comm().rank() == 0 ? 1.0f : 0.0f}, {1}).to(DType::bf16);
  Tensor small = from_vector<float>({float(std::ldexp(1.0, -9))}, {1}).to(DType::bf16);
  if (comm().rank() != 0) t = small.clone();
  comm().all_reduce(t, ReduceOp::Sum, "test.bf16");
  const float exact = 1.0f + float(P - 1) * float(std::ldexp(1.0, -9));
  EXPECT_EQ(t.item<float>(), float(bf16(exact)));
}

TEST(Communicator, AllGatherAlongEachDim) {
  const int P = comm().size(), me = comm().rank();
  for (DType d : {DType::f32, DType::f64, DType::bf16, DType::i32, DType::i64, DType::b8}) {
    for (int64_t dim : {0, 1, -1}) {
      const Shape shape{2, 3};
      const Tensor mine =
          d == DType::b8 ? positive(rank_tensor(me, shape, DType::f32)) : rank_tensor(me, shape, d);
      const Tensor got = comm().all_gather(mine, dim, "test.gather");
      std::vector<Tensor> parts;
      for (int r = 0; r < P; ++r)
        parts.push_back(d == DType::b8 ? positive(rank_tensor(r, shape, DType::f32))
                                       : rank_tensor(r, shape, d));
      EXPECT_TRUE(bitwise_equal(got, cat(parts, dim))) << str(d) << " dim " << dim;
    }
  }
}

TEST(Communicator, AllGatherOfANonContiguousView) {
  const int P = comm().size();
  const Tensor base = rank_tensor(comm().rank(), {4, 3}, DType::f32);
  const Tensor got = comm().all_gather(base.t(), 0, "test.gather_view");
  std::vector<Tensor> parts;
  for (int r = 0; r < P; ++r) parts.push_back(rank_tensor(r, {4, 3}, DType::f32).t());
  EXPECT_TRUE(bitwise_equal(got, cat(parts, 0)));
}

TEST(Communicator, ReduceScatterAlongEachDim) {
  const int P = comm().size(), me = comm().rank();
  for (DType d : kAll) {
    for (int64_t dim : {0, 1}) {
      const Shape shape{2 * P, 3 * P};
      const Tensor got = comm().reduce_scatter(rank_tensor(me, shape, d), dim, "test.rs");
      Tensor sum = zeros(shape, DType::f64);
      for (int r = 0; r < P; ++r) sum.add_(rank_tensor(r, shape, d).to(DType::f64));
      const int64_t k = shape[size_t(dim)] / P;
      const Tensor want = sum.narrow(dim, me * k, k).to(d).contiguous();
      EXPECT_TRUE(bitwise_equal(got, want)) << str(d) << " dim " << dim;
    }
  }
}

TEST(Communicator, BroadcastFromEveryRoot) {
  const int P = comm().size(), me = comm().rank();
  for (DType d : kAll) {
    for (int root = 0; root < P; ++root) {
      Tensor t = rank_tensor(me, {7}, d);
      comm().broadcast(t, root, "test.bcast");
      EXPECT_TRUE(bitwise_equal(t, rank_tensor(root, {7}, d))) << str(d) << " root " << root;
    }
  }
}

TEST(Communicator, SendRecvAroundTheRing) {
  const int P = comm().size(), me = comm().rank();
  const int next = (me + 1) % P, prev = (me + P - 1) % P;
  for (DType d : kAll) {
    // Blocking: even ranks send first, odd ranks receive first (no cycle of blocked sends; with
    // an odd P the last even rank's send to rank 0 completes once rank 0 has sent).
    const Tensor out = rank_tensor(me, {1000}, d);
    Tensor in = empty({1000}, d);
    if (me % 2 == 0) {
      comm().send(out, next, "test.ring");
      comm().recv(in, prev, "test.ring");
    } else {
      comm().recv(in, prev, "test.ring");
      comm().send(out, next, "test.ring");
    }
    EXPECT_TRUE(bitwise_equal(in, rank_tensor(prev, {1000}, d))) << str(d);
    // Async: post both, wait in either order.
    Tensor in2 = empty({1000}, d);
    auto r = comm().recv_async(in2, prev, "test.ring_async");
    auto s = comm().send_async(out, next, "test.ring_async");
    r->wait();
    s->wait();
    EXPECT_TRUE(r->done());
    EXPECT_TRUE(bitwise_equal(in2, rank_tensor(prev, {1000}, d))) << str(d);
  }
}

TEST(Communicator, RecvOfAShorterMessageNamesBothSizes) {
  const int P = comm().size(), me = comm().rank();
  if (P < 2) GTEST_SKIP();
  if (me == 0) comm().send(zeros({5}), 1, "test.short");
  if (me == 1) {
    Tensor t = empty({6});
    try {
      comm().recv(t, 0, "test.short");
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("expected 6 elements of f32, got 5"), std::string::npos)
          << e.what();
    }
  }
}

TEST(Communicator, AsyncAllReducesCompleteInAnyWaitOrder) {
  const int P = comm().size(), me = comm().rank();
  for (DType d : kAll) {
    std::vector<Tensor> ts;
    std::vector<std::unique_ptr<Work>> works;
    for (int k = 0; k < 4; ++k) {
      ts.push_back(rank_tensor(me, {64 + k}, d));
      works.push_back(comm().all_reduce_async(ts.back(), ReduceOp::Sum, "test.async"));
    }
    for (int k = 3; k >= 0; --k) works[size_t(k)]->wait();
    while (!works[0]->done()) {
    }
    for (int k = 0; k < 4; ++k) {
      Tensor want = zeros({64 + k}, DType::f64);
      for (int r = 0; r < P; ++r) want.add_(rank_tensor(r, {64 + k}, d).to(DType::f64));
      EXPECT_TRUE(bitwise_equal(ts[size_t(k)], want.to(d).contiguous())) << str(d) << " " << k;
    }
  }
}

TEST(Communicator, DroppingAnUnwaitedHandleWaits) {
  Tensor t = rank_tensor(comm().rank(), {16}, DType::f32);
  comm().all_reduce_async(t, ReduceOp::Sum, "test.drop").reset();
  Tensor want = zeros({16}, DType::f64);
  for (int r = 0; r < comm().size(); ++r) want.add_(rank_tensor(r, {16}, DType::f64));
  EXPECT_TRUE(bitwise_equal(t, want.to(DType::f32)));
}

// Random f32 data whose sums round, over sizes that select different MPI algorithms.
TEST(Communicator, SumsAreBitwiseEqualOnEveryRankAndEveryRepeat) {
  const int P = comm().size(), me = comm().rank();
  for (int64_t n : {1, 1000, 100'000, 3'000'000}) {
    for (DType d : {DType::f32, DType::bf16, DType::f64}) {
      const Tensor x = randn({n}, RandomKey{7, uint32_t(RngStream::Test), uint64_t(me), 0}, d);
      Tensor a = x.clone(), b = x.clone(), c = x.clone();
      comm().all_reduce(a, ReduceOp::Sum, "test.det");
      comm().all_reduce(b, ReduceOp::Sum, "test.det");
      comm().all_reduce_async(c, ReduceOp::Sum, "test.det_async")->wait();
      EXPECT_TRUE(bitwise_equal(a, b)) << "repeat differs: n " << n << " " << str(d);
      const Tensor all_a = comm().all_gather(a.unsqueeze(0), 0, "test.det_gather");
      const Tensor all_c = comm().all_gather(c.unsqueeze(0), 0, "test.det_gather");
      for (int r = 0; r < P; ++r) {
        EXPECT_TRUE(bitwise_equal(all_a.select(0, r), a))
            << "rank " << r << " n " << n << " " << str(d);
        EXPECT_TRUE(bitwise_equal(all_c.select(0, r), c))
            << "rank " << r << " n " << n << " " << str(d);
      }
    }
  }
}

TEST(Communicator, BadInputIsAnErrorNamingTheCall) {
  auto msg = [](auto&& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  Tensor nc = zeros({4, 3}).t();
  EXPECT_NE(
      msg([&] { comm().all_reduce(nc, ReduceOp::Sum, "grad.x"); }).find("all_reduce 'grad.x'"),
      std::string::npos);
  Tensor mask = positive(zeros({3}));
  EXPECT_NE(msg([&] {
              comm().all_reduce(mask, ReduceOp::Sum, "m");
            }).find("dtype " + std::string(dtype_name(DType::b8))),
            std::string::npos);
  Tensor t = zeros({5});
  EXPECT_NE(msg([&] { comm().broadcast(t, comm().size(), "b"); }).find("is not a rank of group"),
            std::string::npos);
  EXPECT_NE(msg([&] { comm().send(t, comm().rank(), "s"); }).find("is this rank"),
            std::string::npos);
  EXPECT_NE(msg([&] { comm().recv(t, -1, "r"); }).find("is not in group"), std::string::npos);
  if (comm().size() > 1) {
    Tensor odd = zeros({comm().size() + 1});
    EXPECT_NE(msg([&] { comm().reduce_scatter(odd, 0, "rs"); }).find("not divisible"),
              std::string::npos);
  }
  EXPECT_NE(msg([&] { comm().all_gather(t, 1, "g"); }).find("out of range"), std::string::npos);
  // Nothing above reached MPI: the ranks are still in step.
  comm().barrier("test.after_errors");
}

}  // namespace
}  // namespace strata::parallel

namespace strata::parallel {
namespace {

TEST(Communicator, OrderCheckNamesEveryRanksCallOnAMismatch) {
  comm().set_check_order(true);
  Tensor t = zeros({3});
  comm().all_reduce(t, ReduceOp::Sum, "same");  // agreeing calls pass
  std::string msg;
  try {
    comm().all_reduce(t, ReduceOp::Sum, comm().rank() == 0 ? "grad.a" : "grad.b");
  } catch (const Error& e) {
    msg = e.what();
  }
  comm().set_check_order(false);
  if (comm().size() == 1) return;
  EXPECT_NE(msg.find("the ranks of group 'world' disagree on call #"), std::string::npos) << msg;
  EXPECT_NE(msg.find("rank 0: all_reduce 'grad.a'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("rank 1: all_reduce 'grad.b'"), std::string::npos) << msg;
  comm().barrier("test.after_order_check");
}

}  // namespace
}  // namespace strata::parallel
