#include "parallel/local_communicator.h"

#include "core/autograd/grad_mode.h"
#include "core/error.h"
#include "parallel/comm_tensor.h"

namespace strata::parallel {

void LocalCommunicator::all_reduce(Tensor& t, ReduceOp, std::string_view what) {
  check_comm_tensor(t, "all_reduce", what, true, false, CommTransport::Local);
}

std::unique_ptr<Work> LocalCommunicator::all_reduce_async(Tensor& t, ReduceOp op,
                                                          std::string_view what) {
  all_reduce(t, op, what);
  return std::make_unique<DoneWork>();
}

Tensor LocalCommunicator::all_gather(const Tensor& t, int64_t dim, std::string_view what) {
  check_comm_tensor(t, "all_gather", what, false, true, CommTransport::Local);
  comm_dim(t, dim, "all_gather", what);
  NoGradGuard ng;
  return t.detach().contiguous().clone();
}

Tensor LocalCommunicator::reduce_scatter(const Tensor& t, int64_t dim, std::string_view what) {
  check_comm_tensor(t, "reduce_scatter", what, false, false, CommTransport::Local);
  check_scatter_dim(t, comm_dim(t, dim, "reduce_scatter", what), 1, what);
  NoGradGuard ng;
  return t.detach().contiguous().clone();
}

void LocalCommunicator::broadcast(Tensor& t, int root, std::string_view what) {
  check_comm_tensor(t, "broadcast", what, true, true, CommTransport::Local);
  STRATA_CHECK(root == 0, "broadcast '", what, "': root ", root, " is not a rank of group '", name_,
               "' (size 1)");
}

void LocalCommunicator::send(const Tensor&, int dst, std::string_view what) {
  STRATA_FAIL("send '", what, "' to rank ", dst, ": group '", name_,
              "' has one process, so there is no peer to send to");
}

void LocalCommunicator::recv(Tensor&, int src, std::string_view what) {
  STRATA_FAIL("recv '", what, "' from rank ", src, ": group '", name_,
              "' has one process, so there is no peer to receive from");
}

std::unique_ptr<Work> LocalCommunicator::send_async(const Tensor& t, int dst,
                                                    std::string_view what) {
  send(t, dst, what);
  return nullptr;
}

std::unique_ptr<Work> LocalCommunicator::recv_async(Tensor& t, int src, std::string_view what) {
  recv(t, src, what);
  return nullptr;
}

}  // namespace strata::parallel
