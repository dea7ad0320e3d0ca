// Topology without MPI: the rank mapping, layout errors, and the one-process topology whose
// collectives are identities or copies.
#include <gtest/gtest.h>

#include <sstream>

#include "core/ops.h"
#include "parallel/topology.h"

namespace strata::parallel {
namespace {

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Layout, TpVariesFastestThenDpThenPp) {
  const Layout l = resolve_layout({2, 2, 2}, 8);
  // World ranks 0..7 -> (dp, tp, pp), as Megatron's tp-dp-pp order.
  const int want[8][3] = {{0, 0, 0}, {0, 1, 0}, {1, 0, 0}, {1, 1, 0},
                          {0, 0, 1}, {0, 1, 1}, {1, 0, 1}, {1, 1, 1}};
  for (int r = 0; r < 8; ++r) {
    const Coords c = coords_of(l, r);
    EXPECT_EQ(c.dp, want[r][0]) << r;
    EXPECT_EQ(c.tp, want[r][1]) << r;
    EXPECT_EQ(c.pp, want[r][2]) << r;
  }
}

TEST(Layout, InfersDpFromTheWorldSize) {
  const Layout l = resolve_layout({0, 2, 3}, 12);
  EXPECT_EQ(l.dp, 2);
  EXPECT_EQ(l.str(), "DP2 x TP2 x PP3");
  EXPECT_EQ((Layout{0, 4, 1}.str()), "DP? x TP4 x PP1");
}

TEST(Layout, ErrorsNameTheLayoutUnderstoodAndTheFix) {
  const std::string wrong = error_of([] { resolve_layout({3, 2, 1}, 8); });
  EXPECT_NE(wrong.find("DP3 x TP2 x PP1 needs 6 ranks but the job has 8"), std::string::npos)
      << wrong;
  EXPECT_NE(wrong.find("mpirun -np"), std::string::npos) << wrong;
  const std::string infer = error_of([] { resolve_layout({0, 3, 1}, 8); });
  EXPECT_NE(infer.find("DP? x TP3 x PP1: cannot infer dp, the world size 8 is not a multiple of "
                       "tp * pp = 3"),
            std::string::npos)
      << infer;
  EXPECT_NE(error_of([] {
              resolve_layout({1, 0, 1}, 1);
            }).find("tp and pp must be at least 1"),
            std::string::npos);
}

TEST(Layout, CreateWithoutMpiAcceptsOnlyOneProcess) {
  const Topology t = Topology::create({0, 1, 1});
  EXPECT_EQ(t.world_size(), 1);
  EXPECT_EQ(t.layout().dp, 1);
  EXPECT_NE(error_of([] {
              Topology::create({2, 1, 1});
            }).find("needs 2 ranks but the job has 1"),
            std::string::npos);
}

TEST(Layout, ReportErrorOncePrintsTheMessageAndGivesExitStatus2) {
  std::ostringstream os;
  EXPECT_EQ(report_error_once(Error("bad layout"), os), 2);
  EXPECT_EQ(os.str(), "bad layout\n");
}

TEST(SingleTopology, EveryGroupHasOneRankAndCollectivesAreIdentities) {
  const Topology t = Topology::single();
  EXPECT_EQ(t.world_rank(), 0);
  EXPECT_EQ(t.world_size(), 1);
  EXPECT_EQ(t.local_rank(), 0);
  EXPECT_TRUE(t.is_first_stage());
  EXPECT_TRUE(t.is_last_stage());
  EXPECT_EQ(t.rank_of({0, 0, 0}), 0);
  for (Communicator* c : {&t.world(), &t.tp(), &t.dp(), &t.pp()}) {
    EXPECT_EQ(c->size(), 1);
    EXPECT_EQ(c->rank(), 0);
  }
  EXPECT_EQ(t.dp().name(), "dp");

  Tensor x = from_vector<float>({1, 2, 3, 4}, {2, 2});
  t.dp().all_reduce(x, ReduceOp::Sum, "g");
  EXPECT_EQ(x.to_vector<float>(), (std::vector<float>{1, 2, 3, 4}));
  t.dp().all_reduce_async(x, ReduceOp::Max, "g")->wait();
  EXPECT_EQ(x.to_vector<float>(), (std::vector<float>{1, 2, 3, 4}));

  // all_gather and reduce_scatter return copies, never the input itself.
  Tensor g = t.tp().all_gather(x, 1, "g");
  g.fill_(0);
  Tensor s = t.tp().reduce_scatter(x, 0, "s");
  s.fill_(0);
  EXPECT_EQ(x.to_vector<float>(), (std::vector<float>{1, 2, 3, 4}));

  t.pp().broadcast(x, 0, "b");
  t.world().barrier("b");
  EXPECT_NE(error_of([&] { t.pp().broadcast(x, 1, "b"); }).find("not a rank of group 'pp'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { t.pp().send(x, 0, "act"); }).find("no peer"), std::string::npos);
  EXPECT_NE(error_of([&] { t.pp().recv(x, 0, "act"); }).find("no peer"), std::string::npos);
  Tensor nc = x.t();
  EXPECT_NE(error_of([&] { t.dp().all_reduce(nc, ReduceOp::Sum, "g"); }).find("contiguous"),
            std::string::npos);
}

}  // namespace
}  // namespace strata::parallel
