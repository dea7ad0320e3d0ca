#pragma once
// The DP x TP x PP layout of the world and its process groups. World rank r maps to
//   tp = r % TP,  dp = (r / TP) % DP,  pp = r / (TP * DP)
// (TP fastest-varying so a TP group shares a node, then DP, then PP). Groups are made with
// MPI_Comm_split; the node-local rank (MPI_Comm_split_type shared) picks a GPU.
#include <chrono>
#include <exception>
#include <iosfwd>
#include <memory>
#include <string>

#include "parallel/communicator.h"

namespace strata::parallel {

struct Layout {
  int dp = 0;  // 0: inferred as world / (tp * pp)
  int tp = 1;
  int pp = 1;
  std::string str() const;  // "DP2 x TP2 x PP1"
};

struct Coords {
  int dp = 0, tp = 0, pp = 0;
};

class Topology {
 public:
  // Collective over the world. Checks that the product matches the world size (inferring dp when
  // 0) and throws strata::Error naming the layout it understood otherwise; every rank throws the
  // same error (see report_error_once). Without MPI initialised, a layout of one process gives
  // single().
  static Topology create(Layout layout);
  // A one-process topology (no MPI needed): every group has size 1.
  static Topology single();

  const Layout& layout() const { return layout_; }
  int world_rank() const;
  int world_size() const;
  int local_rank() const;  // among the ranks on this node
  Coords coords() const { return coords_; }
  int rank_of(Coords c) const;  // world rank

  Communicator& world() const { return *world_; }
  Communicator& tp() const { return *tp_; }  // ranks with the same (dp, pp)
  Communicator& dp() const { return *dp_; }  // ranks with the same (tp, pp)
  Communicator& pp() const { return *pp_; }  // ranks with the same (dp, tp), ordered by stage

  // The same timeout for the four groups (`--parallel.timeout`).
  void set_timeout(std::chrono::milliseconds timeout);

  bool is_first_stage() const { return coords_.pp == 0; }
  bool is_last_stage() const { return coords_.pp == layout_.pp - 1; }

 private:
  Layout layout_;
  Coords coords_;
  int local_rank_ = 0;
  std::shared_ptr<Communicator> world_, tp_, dp_, pp_;
};

// The layout with dp inferred (when 0) for `world_size` ranks; throws strata::Error naming the
// layout understood and the fix when it does not fit.
Layout resolve_layout(Layout layout, int world_size);
// Coordinates of a world rank under a resolved layout.
Coords coords_of(const Layout& layout, int world_rank);

// For mains: an error that every rank raised alike (a layout error) is printed once, by world
// rank 0, and every rank returns this exit status (2) so the job ends non-zero without N copies
// of the message.
int report_error_once(const std::exception& e, std::ostream& os);

}  // namespace strata::parallel
