// Topology under mpirun: the rank mapping and the groups of DP2 x TP2 x PP2 on 8 ranks (and of
// the other layouts 8 ranks allow), the node-local rank, and layout errors raised alike on every
// rank.
#include <gtest/gtest.h>

#include <mpi.h>

#include <sstream>

#include "core/ops.h"
#include "parallel/mpi_env.h"
#include "parallel/topology.h"

namespace strata::parallel {
namespace {

int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

// Every member's world rank, gathered over `c` in group-rank order.
std::vector<int64_t> members(Communicator& c, int world_rank) {
  return c.all_gather(from_vector<int64_t>({world_rank}, {1}), 0, "test.members")
      .to_vector<int64_t>();
}

void check_layout(const Layout& want) {
  Topology t = Topology::create(want);
  t.set_timeout(std::chrono::seconds(60));
  const Layout& l = t.layout();
  const int me = t.world_rank();
  ASSERT_EQ(l.dp * l.tp * l.pp, t.world_size());
  const Coords c = t.coords();
  EXPECT_EQ(c.tp, me % l.tp);
  EXPECT_EQ(c.dp, (me / l.tp) % l.dp);
  EXPECT_EQ(c.pp, me / (l.tp * l.dp));
  EXPECT_EQ(t.rank_of(c), me);
  EXPECT_EQ(t.is_first_stage(), c.pp == 0);
  EXPECT_EQ(t.is_last_stage(), c.pp == l.pp - 1);

  EXPECT_EQ(t.tp().size(), l.tp);
  EXPECT_EQ(t.dp().size(), l.dp);
  EXPECT_EQ(t.pp().size(), l.pp);
  EXPECT_EQ(t.tp().rank(), c.tp);
  EXPECT_EQ(t.dp().rank(), c.dp);
  EXPECT_EQ(t.pp().rank(), c.pp);
  EXPECT_EQ(t.world().rank(), me);

  std::vector<int64_t> tp, dp, pp;
  for (int i = 0; i < l.tp; ++i) tp.push_back(t.rank_of({c.dp, i, c.pp}));
  for (int i = 0; i < l.dp; ++i) dp.push_back(t.rank_of({i, c.tp, c.pp}));
  for (int i = 0; i < l.pp; ++i) pp.push_back(t.rank_of({c.dp, c.tp, i}));
  EXPECT_EQ(members(t.tp(), me), tp) << l.str();
  EXPECT_EQ(members(t.dp(), me), dp) << l.str();
  EXPECT_EQ(members(t.pp(), me), pp) << l.str();

  // One machine: the node-local rank is the world rank.
  EXPECT_EQ(t.local_rank(), me);
}

TEST(Topology, Dp2Tp2Pp2On8Ranks) {
  if (world_size() != 8) GTEST_SKIP() << "needs 8 ranks";
  check_layout({2, 2, 2});
  // DP2 x TP2 x PP2, spelled out: world rank 5 is (dp 0, tp 1, pp 1).
  Topology t = Topology::create({2, 2, 2});
  if (t.world_rank() == 5) {
    EXPECT_EQ(t.coords().dp, 0);
    EXPECT_EQ(t.coords().tp, 1);
    EXPECT_EQ(t.coords().pp, 1);
    EXPECT_EQ(members(t.tp(), 5), (std::vector<int64_t>{4, 5}));
    EXPECT_EQ(members(t.dp(), 5), (std::vector<int64_t>{5, 7}));
    EXPECT_EQ(members(t.pp(), 5), (std::vector<int64_t>{1, 5}));
  } else {
    members(t.tp(), t.world_rank());
    members(t.dp(), t.world_rank());
    members(t.pp(), t.world_rank());
  }
}

TEST(Topology, EveryLayoutThatFitsTheWorld) {
  const int n = world_size();
  for (int tp = 1; tp <= n; ++tp)
    for (int pp = 1; tp * pp <= n; ++pp)
      if (n % (tp * pp) == 0) check_layout({0, tp, pp});
}

TEST(Topology, GroupsReduceIndependently) {
  Topology t = Topology::create({0, world_size() % 2 == 0 ? 2 : 1, 1});
  // Sum of world ranks in each group; each group's sum is its own.
  Tensor x = from_vector<int64_t>({t.world_rank()}, {1});
  t.dp().all_reduce(x, ReduceOp::Sum, "test.dp_sum");
  int64_t want = 0;
  for (int i = 0; i < t.layout().dp; ++i) want += t.rank_of({i, t.coords().tp, 0});
  EXPECT_EQ(x.item<int64_t>(), want);
}

TEST(Topology, LayoutErrorsAreRaisedAlikeOnEveryRankAndPrintedOnce) {
  const int n = world_size();
  std::string msg;
  try {
    Topology::create({n + 1, 1, 1});
  } catch (const Error& e) {
    msg = e.what();
  }
  std::ostringstream want;
  want << "DP" << n + 1 << " x TP1 x PP1 needs " << n + 1 << " ranks but the job has " << n;
  EXPECT_NE(msg.find(want.str()), std::string::npos) << msg;

  std::ostringstream os;
  EXPECT_EQ(report_error_once(Error(msg), os), 2);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  EXPECT_EQ(os.str().empty(), rank != 0);

  if (n > 1) {
    std::string infer;
    try {
      Topology::create({0, n + 1, 1});
    } catch (const Error& e) {
      infer = e.what();
    }
    EXPECT_NE(infer.find("cannot infer dp"), std::string::npos) << infer;
  }
}

}  // namespace
}  // namespace strata::parallel
