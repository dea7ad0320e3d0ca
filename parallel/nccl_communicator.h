#pragma once
// The Communicator over NCCL for CUDA tensors (one GPU per rank). Every call is queued on a CUDA
// stream and returns without waiting for the GPU, so communication is ordered with the kernels
// around it and needs no host synchronisation:
//   - blocking calls (all_reduce, all_gather, reduce_scatter, broadcast) run on the compute
//     stream of the communicator's device (cuda::stream(device)): what follows on that stream
//     sees the result, and the host sees it at its next synchronising read (Tensor::item, a copy
//     to the CPU);
//   - async calls run on a side stream of higher priority, after the work already queued on the
//     compute stream, so they overlap the kernels queued after them; Work::wait() makes the
//     compute stream wait for them (no host wait), Work::done() asks the GPU without waiting, and
//     NcclWork::synchronize() waits on the host;
//   - sends and receives use two more communicators over the same ranks (`p2p_lanes`), one per
//     direction, each with its own stream: NCCL runs the operations of one communicator in
//     order, so a send to a peer and a receive from it can only progress together on different
//     communicators. Blocking send/recv are the async ones followed by wait(). NCCL cannot check
//     the size that arrives: sender and receiver must agree on it (the MPI communicator checks).
// Communicators are non-blocking (ncclConfig_t::blocking = 0): no NCCL call can hang the host,
// and the NcclWatchdog (parallel/nccl_watchdog.h) turns an operation that does not complete
// within the timeout, or an asynchronous NCCL error, into an abort of the job with a message
// naming the operation, its sequence number, the group and the rank.
//
// Sums: f32, f64, i32 and i64 with ncclSum; bf16 is widened to f32 on the GPU, reduced and
// rounded once (as MpiCommunicator does); max is exact in every dtype and runs in the tensor's
// own. NCCL picks its algorithm from the message size, the group size and the machine's topology,
// and every algorithm ends with one result reaching all ranks, so a call gives the same bits on
// every rank and in every run on the same machine (NCCL_ALGO / NCCL_PROTO pinned, if the
// topology detection could change between runs).
#include <mpi.h>

#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/nccl_watchdog.h"

struct CUstream_st;

namespace strata::parallel {

struct NcclOptions {
  // Create the two point-to-point communicators (see above). Groups that only run collectives
  // can leave them out: they cost a communicator creation each.
  bool p2p_lanes = true;
  std::chrono::milliseconds timeout{300'000};
};

class NcclCommunicator final : public Communicator {
 public:
  // Collective over `bootstrap` (the ranks of the new group, in its rank order): its rank 0
  // makes the NCCL unique id and broadcasts it over MPI, and every rank joins on `device`.
  // Throws strata::Error (on every rank alike where the failure is shared) if NCCL fails or a
  // rank does not join within the timeout.
  static std::unique_ptr<NcclCommunicator> init(MPI_Comm bootstrap, int device, std::string name,
                                                std::shared_ptr<NcclWatchdog> watchdog,
                                                NcclOptions options = {});
  // Collective over this communicator: the ranks passing the same color form one group, ordered
  // by key (MPI_Comm_split's rule), made with ncclCommSplit. Shares this one's watchdog.
  std::unique_ptr<NcclCommunicator> split(int color, int key, std::string name,
                                          NcclOptions options = {});
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  int device() const { return device_; }  // the CUDA device index of this rank
  ncclComm* comm() const { return comm_; }

  void all_reduce(Tensor& t, ReduceOp op, std::string_view what) override;
  std::unique_ptr<Work> all_reduce_async(Tensor& t, ReduceOp op, std::string_view what) override;
  Tensor all_gather(const Tensor& t, int64_t dim, std::string_view what) override;
  Tensor reduce_scatter(const Tensor& t, int64_t dim, std::string_view what) override;
  void broadcast(Tensor& t, int root, std::string_view what) override;
  void send(const Tensor& t, int dst, std::string_view what) override;
  void recv(Tensor& t, int src, std::string_view what) override;
  std::unique_ptr<Work> send_async(const Tensor& t, int dst, std::string_view what) override;
  std::unique_ptr<Work> recv_async(Tensor& t, int src, std::string_view what) override;
  // Returns when every rank has reached it and this rank's queued work on the group is done
  // (a one-element all-reduce waited for on the host).
  void barrier(std::string_view what) override;
  void set_timeout(std::chrono::milliseconds timeout) override;

 private:
  NcclCommunicator(ncclComm* comm, int device, std::string name,
                   std::shared_ptr<NcclWatchdog> watchdog, NcclOptions options);

  void check_tensor(const Tensor& t, const char* op, std::string_view what, bool in_place,
                    bool moves_only) const;
  void check_peer(int peer, const char* op, std::string_view what) const;
  // Throws unless `r` is success or in-progress; waits out in-progress on `comm` (host-side,
  // bounded by the timeout).
  void settle(ncclComm* comm, int r, const char* call, std::string_view what, int64_t seq,
              OpKind kind, int peer);
  CudaEvent record(CUstream_st* stream) const;
  void track(CUstream_st* stream, OpKind kind, const char* op, std::string_view what, int64_t seq,
             int peer, CudaEvent* out = nullptr);
  std::unique_ptr<Work> p2p(Tensor t, int peer, bool is_send, const char* op,
                            std::string_view what);

  ncclComm* comm_ = nullptr;
  ncclComm* up_ = nullptr;    // sends to higher ranks, receives from lower ones
  ncclComm* down_ = nullptr;  // sends to lower ranks, receives from higher ones
  CUstream_st* side_ = nullptr;
  CUstream_st* up_stream_ = nullptr;
  CUstream_st* down_stream_ = nullptr;
  int device_ = 0;
  std::string name_;
  int rank_ = 0, size_ = 1;
  NcclOptions options_;
  std::shared_ptr<NcclWatchdog> watchdog_;
  NcclGroupWatch* watch_ = nullptr;  // owned by watchdog_
  int64_t collectives_ = 0;
  std::vector<int64_t> sends_, recvs_;  // per peer
};

// The Work of NcclCommunicator's async calls.
class NcclWork final : public Work {
 public:
  NcclWork(int device, CudaEvent done, ncclComm* comm, std::vector<Tensor> keep,
           std::function<void()> finish);
  ~NcclWork() override;
  // The compute stream waits for the operation (no host wait); then the buffers are released.
  void wait() override;
  bool done() override;
  // Waits on the host until the operation is complete, checking NCCL's asynchronous errors
  // meanwhile (the watchdog ends the job on a timeout).
  void synchronize();

 private:
  void complete();

  int device_;
  CudaEvent done_event_;
  ncclComm* comm_;
  std::vector<Tensor> keep_;  // buffers NCCL reads or writes until completion
  std::function<void()> finish_;
  bool done_ = false;
};

}  // namespace strata::parallel
