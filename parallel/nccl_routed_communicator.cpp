#include "parallel/nccl_routed_communicator.h"

#include "core/error.h"

namespace strata::parallel {

DeviceRoutedCommunicator::DeviceRoutedCommunicator(std::shared_ptr<Communicator> host,
                                                   std::shared_ptr<Communicator> gpu)
    : host_(std::move(host)), gpu_(std::move(gpu)) {
  STRATA_CHECK(host_ && gpu_ && host_->size() == gpu_->size() && host_->rank() == gpu_->rank(),
               "DeviceRoutedCommunicator: the MPI and NCCL communicators of group '",
               host_ ? host_->name() : std::string("?"), "' are not the same group");
}

// An undefined tensor goes to the host side, whose check names the problem.
Communicator& DeviceRoutedCommunicator::route(const Tensor& t) const {
  return t.defined() && !t.device().is_cpu() ? *gpu_ : *host_;
}

void DeviceRoutedCommunicator::all_reduce(Tensor& t, ReduceOp op, std::string_view what) {
  route(t).all_reduce(t, op, what);
}

std::unique_ptr<Work> DeviceRoutedCommunicator::all_reduce_async(Tensor& t, ReduceOp op,
                                                                 std::string_view what) {
  return route(t).all_reduce_async(t, op, what);
}

Tensor DeviceRoutedCommunicator::all_gather(const Tensor& t, int64_t dim, std::string_view what) {
  return route(t).all_gather(t, dim, what);
}

Tensor DeviceRoutedCommunicator::reduce_scatter(const Tensor& t, int64_t dim,
                                                std::string_view what) {
  return route(t).reduce_scatter(t, dim, what);
}

void DeviceRoutedCommunicator::broadcast(Tensor& t, int root, std::string_view what) {
  route(t).broadcast(t, root, what);
}

void DeviceRoutedCommunicator::send(const Tensor& t, int dst, std::string_view what) {
  route(t).send(t, dst, what);
}

void DeviceRoutedCommunicator::recv(Tensor& t, int src, std::string_view what) {
  route(t).recv(t, src, what);
}

std::unique_ptr<Work> DeviceRoutedCommunicator::send_async(const Tensor& t, int dst,
                                                           std::string_view what) {
  return route(t).send_async(t, dst, what);
}

std::unique_ptr<Work> DeviceRoutedCommunicator::recv_async(Tensor& t, int src,
                                                           std::string_view what) {
  return route(t).recv_async(t, src, what);
}

void DeviceRoutedCommunicator::barrier(std::string_view what) {
  host_->barrier(what);
}

void DeviceRoutedCommunicator::set_timeout(std::chrono::milliseconds timeout) {
  host_->set_timeout(timeout);
  gpu_->set_timeout(timeout);
}

}  // namespace strata::parallel
