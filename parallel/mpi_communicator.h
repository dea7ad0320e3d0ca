#pragma once
// The Communicator over MPI for CPU tensors. Blocking calls are the blocking MPI collectives (so
// they run Open MPI's tuned algorithms at raw speed); async calls are the nonblocking ones. Every
// call registers with the Watchdog, which aborts the job with a named message when a wait
// outlives the timeout (see parallel/watchdog.h).
//
// Sums: f32, f64, i32 and i64 reduce with MPI_SUM; bf16 is widened to f32, reduced, and rounded
// once. Open MPI picks its algorithm from the message size and group size only, and every
// algorithm it has ends with one rank's result being copied to all, so a given call gives the
// same bits on every rank and in every run. The blocking and the async all-reduce use different
// algorithm families (tuned vs. libnbc) and may round differently from each other.
#include <mpi.h>

#include "parallel/communicator.h"
#include "parallel/watchdog.h"

namespace strata::parallel {

class MpiCommunicator final : public Communicator {
 public:
  // Takes ownership of `comm` (freed on destruction) and registers it with `watchdog` under
  // `name`.
  MpiCommunicator(MPI_Comm comm, std::string name, std::shared_ptr<Watchdog> watchdog);
  // Collective over MPI_COMM_WORLD: a duplicate of it, with a watchdog of its own.
  static std::unique_ptr<MpiCommunicator> world(const std::string& name = "world");
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  // The underlying communicator, for other MPI users (NCCL bootstrap, MPI-IO).
  MPI_Comm comm() const { return comm_; }

  void all_reduce(Tensor& t, ReduceOp op, std::string_view what) override;
  std::unique_ptr<Work> all_reduce_async(Tensor& t, ReduceOp op, std::string_view what) override;
  Tensor all_gather(const Tensor& t, int64_t dim, std::string_view what) override;
  Tensor reduce_scatter(const Tensor& t, int64_t dim, std::string_view what) override;
  void broadcast(Tensor& t, int root, std::string_view what) override;
  void send(const Tensor& t, int dst, std::string_view what) override;
  void recv(Tensor& t, int src, std::string_view what) override;
  std::unique_ptr<Work> send_async(const Tensor& t, int dst, std::string_view what) override;
  std::unique_ptr<Work> recv_async(Tensor& t, int src, std::string_view what) override;
  void barrier(std::string_view what) override;
  void set_timeout(std::chrono::milliseconds timeout) override;

  // Debug mode: before each collective, check that every rank of the group is making the same
  // call (kind and `what`); a mismatch throws strata::Error on every rank, listing each rank's
  // call. Costs one small all-reduce per collective; every rank must set it alike.
  void set_check_order(bool on) { check_order_ = on; }

 private:
  int64_t enter_collective(const char* op, std::string_view what);
  void check_order(const char* op, std::string_view what, int64_t seq);
  void check_peer(int peer, const char* op, std::string_view what) const;

  MPI_Comm comm_ = MPI_COMM_NULL;
  std::string name_;
  int rank_ = 0, size_ = 1;
  std::shared_ptr<Watchdog> watchdog_;
  GroupProgress* progress_;  // owned by watchdog_
  bool check_order_ = false;
};

}  // namespace strata::parallel
