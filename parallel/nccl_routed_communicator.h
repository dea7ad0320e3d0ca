#pragma once
// A process group of a GPU job: one set of ranks reached by two transports, NCCL for CUDA
// tensors and MPI for CPU ones, chosen per call by the tensor's device. Training on GPUs still
// sends a few CPU tensors (the gradient reducer's layout check, losses for logging, the
// pipeline's loss broadcast); they go over MPI, the rest over NCCL. Both transports see every
// rank's calls in the same program order, so mixing them cannot deadlock: MPI calls block the
// host, NCCL calls are queued on the GPU. barrier() is MPI's (a host rendezvous).
#include <memory>

#include "parallel/communicator.h"

namespace strata::parallel {

class DeviceRoutedCommunicator final : public Communicator {
 public:
  // `host` and `gpu` must be the same group (same ranks, same order).
  DeviceRoutedCommunicator(std::shared_ptr<Communicator> host, std::shared_ptr<Communicator> gpu);

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  const std::string& name() const override { return host_->name(); }
  Communicator& host() const { return *host_; }
  Communicator& gpu() const { return *gpu_; }

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

 private:
  Communicator& route(const Tensor& t) const;

  std::shared_ptr<Communicator> host_, gpu_;
};

}  // namespace strata::parallel
