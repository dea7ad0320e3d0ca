#pragma once
// The communicator of a one-process group: no MPI, collectives are identities (in place) or
// copies (all_gather, reduce_scatter). Topology::single() builds its groups from it, so code
// written for a parallel layout runs unchanged in one process.
#include "parallel/communicator.h"

namespace strata::parallel {

class LocalCommunicator final : public Communicator {
 public:
  explicit LocalCommunicator(std::string name) : name_(std::move(name)) {}

  int rank() const override { return 0; }
  int size() const override { return 1; }
  const std::string& name() const override { return name_; }

  void all_reduce(Tensor& t, ReduceOp op, std::string_view what) override;
  std::unique_ptr<Work> all_reduce_async(Tensor& t, ReduceOp op, std::string_view what) override;
  Tensor all_gather(const Tensor& t, int64_t dim, std::string_view what) override;
  Tensor reduce_scatter(const Tensor& t, int64_t dim, std::string_view what) override;
  void broadcast(Tensor& t, int root, std::string_view what) override;
  // A group of one has no peer: these throw.
  void send(const Tensor& t, int dst, std::string_view what) override;
  void recv(Tensor& t, int src, std::string_view what) override;
  std::unique_ptr<Work> send_async(const Tensor& t, int dst, std::string_view what) override;
  std::unique_ptr<Work> recv_async(Tensor& t, int src, std::string_view what) override;
  void barrier(std::string_view) override {}
  void set_timeout(std::chrono::milliseconds) override {}

 private:
  std::string name_;
};

// A Work that is already complete.
class DoneWork final : public Work {
 public:
  void wait() override {}
  bool done() override { return true; }
};

}  // namespace strata::parallel
