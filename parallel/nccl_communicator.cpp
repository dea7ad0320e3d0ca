#include "parallel/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <thread>

#include "core/autograd/grad_mode.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_context.h"
#include "core/error.h"
#include "core/ops/shape.h"
#include "parallel/comm_tensor.h"

namespace strata::parallel {

namespace {

using Clock = std::chrono::steady_clock;

ncclDataType_t nccl_type(DType d) {
  switch (d) {
    case DType::f32:
      return ncclFloat32;
    case DType::f64:
      return ncclFloat64;
    case DType::bf16:
      return ncclBfloat16;
    case DType::i32:
      return ncclInt32;
    case DType::i64:
      return ncclInt64;
    case DType::b8:
      return ncclUint8;
  }
  return ncclUint8;
}

ncclRedOp_t nccl_op(ReduceOp op) {
  return op == ReduceOp::Sum ? ncclSum : ncclMax;
}

std::string last_error(ncclComm_t c) {
  const char* e = ncclGetLastError(c);
  return e && *e ? std::string(": ") + e : std::string();
}

// Non-blocking communicators: NCCL never blocks the host and makes no other thread of ours
// necessary; `commName` shows in NCCL's own logs (NCCL_DEBUG=INFO).
ncclConfig_t make_config(const std::string& name) {
  ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
  cfg.blocking = 0;
  cfg.commName = name.c_str();
  return cfg;
}

// Waits until a non-blocking communicator has finished the call just made on it (creation,
// split, finalize, an enqueue). Returns the final state; `timed_out` tells a deadline from an
// error.
ncclResult_t wait_ready(ncclComm_t c, std::chrono::milliseconds timeout, bool& timed_out) {
  timed_out = false;
  const auto start = Clock::now();
  for (;;) {
    ncclResult_t state = ncclInProgress;
    const ncclResult_t q = ncclCommGetAsyncError(c, &state);
    if (q != ncclSuccess) return q;
    if (state != ncclInProgress) return state;
    if (Clock::now() - start > timeout) {
      timed_out = true;
      return ncclInProgress;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

// Finishes the creation of `c` by `call` (which returned `r`); on failure aborts it and throws,
// naming the group, this rank and the fix.
void finish_creation(ncclComm_t c, ncclResult_t r, const char* call, const std::string& name,
                     int rank, int size, int device, std::chrono::milliseconds timeout) {
  bool timed_out = false;
  if (r == ncclSuccess || r == ncclInProgress) r = c ? wait_ready(c, timeout, timed_out) : r;
  if (r == ncclSuccess) return;
  const std::string detail = c ? last_error(c) : std::string();
  if (c) ncclCommAbort(c);
  STRATA_CHECK(!timed_out, "NCCL: ", call, " for group '", name, "' (rank ", rank, " of ", size,
               ", cuda:", device, ") did not finish within ",
               std::chrono::duration<double>(timeout).count(),
               " s: a rank of the group did not join (every rank must create the same groups in "
               "the same order) or the ranks cannot reach each other (NCCL_DEBUG=INFO shows why)");
  STRATA_FAIL("NCCL: ", call, " for group '", name, "' (rank ", rank, " of ", size,
              ", cuda:", device, ") failed: ", ncclGetErrorString(r), detail,
              " (NCCL_DEBUG=INFO shows why)");
}

// ncclCommSplit of a non-blocking communicator; the child is non-blocking too.
ncclComm_t split_comm(ncclComm_t parent, int color, int key, const std::string& name, int rank,
                      int size, int device, std::chrono::milliseconds timeout) {
  ncclConfig_t cfg = make_config(name);
  ncclComm_t child = nullptr;
  ncclResult_t r = ncclCommSplit(parent, color, key, &child, &cfg);
  if (r == ncclSuccess || r == ncclInProgress) {
    bool timed_out = false;
    const ncclResult_t p = wait_ready(parent, timeout, timed_out);
    if (p != ncclSuccess && !timed_out) r = p;
  }
  finish_creation(child, r, "ncclCommSplit", name, rank, size, device, timeout);
  return child;
}

// Finalize (flushes the queued operations, quiesces with the peers), then destroy; a
// communicator that cannot finish within the timeout is aborted instead. Never throws.
void close_comm(ncclComm_t c, std::chrono::milliseconds timeout) {
  ncclResult_t r = ncclCommFinalize(c);
  bool timed_out = false;
  if (r == ncclSuccess || r == ncclInProgress) r = wait_ready(c, timeout, timed_out);
  if (r == ncclSuccess)
    ncclCommDestroy(c);
  else
    ncclCommAbort(c);
}

cudaStream_t compute_stream(int device) {
  return cuda::stream(device);
}

}  // namespace

// --- NcclWork ----------------------------------------------------------------------------------

NcclWork::NcclWork(int device, CudaEvent done, ncclComm* comm, std::vector<Tensor> keep,
                   std::function<void()> finish)
    : device_(device),
      done_event_(std::move(done)),
      comm_(comm),
      keep_(std::move(keep)),
      finish_(std::move(finish)) {}

NcclWork::~NcclWork() {
  if (done_) return;
  try {
    wait();
  } catch (...) {  // a destructor must not throw; the error was the caller's to collect
  }
}

void NcclWork::complete() {
  done_ = true;
  if (finish_) finish_();
  keep_.clear();  // released in stream order: after the compute stream's wait above
}

void NcclWork::wait() {
  if (done_) return;
  cuda::DeviceGuard g(device_);
  STRATA_CUDA_CHECK(cudaStreamWaitEvent(compute_stream(device_), done_event_.get(), 0));
  complete();
}

bool NcclWork::done() {
  if (done_) return true;
  cuda::DeviceGuard g(device_);
  const cudaError_t q = cudaEventQuery(done_event_.get());
  if (q == cudaErrorNotReady) return false;
  STRATA_CUDA_CHECK(q);
  wait();
  return true;
}

void NcclWork::synchronize() {
  cuda::DeviceGuard g(device_);
  for (;;) {
    const cudaError_t q = cudaEventQuery(done_event_.get());
    if (q == cudaSuccess) break;
    if (q != cudaErrorNotReady) STRATA_CUDA_CHECK(q);
    ncclResult_t state = ncclSuccess;
    if (ncclCommGetAsyncError(comm_, &state) == ncclSuccess && state != ncclSuccess &&
        state != ncclInProgress)
      STRATA_FAIL("NCCL error while waiting on the host: ", ncclGetErrorString(state),
                  last_error(comm_));
    // The watchdog thread ends the job if this outlives the timeout.
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  wait();
}

// --- NcclCommunicator: creation ----------------------------------------------------------------

std::unique_ptr<NcclCommunicator> NcclCommunicator::init(MPI_Comm bootstrap, int device,
                                                         std::string name,
                                                         std::shared_ptr<NcclWatchdog> watchdog,
                                                         NcclOptions options) {
  int rank = 0, size = 1;
  MPI_Comm_rank(bootstrap, &rank);
  MPI_Comm_size(bootstrap, &size);
  // Rank 0's status travels with the id, so that a failure there throws on every rank instead
  // of leaving the others waiting for a communicator that never forms.
  struct {
    ncclUniqueId id;
    int32_t status;
  } msg{};
  if (rank == 0) msg.status = int32_t(ncclGetUniqueId(&msg.id));
  MPI_Bcast(&msg, int(sizeof(msg)), MPI_BYTE, 0, bootstrap);
  STRATA_CHECK(msg.status == ncclSuccess, "NCCL: rank 0 of group '", name,
               "' could not make the unique id: ", ncclGetErrorString(ncclResult_t(msg.status)),
               " (check NCCL_SOCKET_IFNAME and the network; NCCL_DEBUG=INFO shows why)");
  cuda::DeviceGuard g(device);
  ncclConfig_t cfg = make_config(name);
  ncclComm_t comm = nullptr;
  const ncclResult_t r = ncclCommInitRankConfig(&comm, size, msg.id, rank, &cfg);
  finish_creation(comm, r, "ncclCommInitRankConfig", name, rank, size, device, options.timeout);
  return std::unique_ptr<NcclCommunicator>(
      new NcclCommunicator(comm, device, std::move(name), std::move(watchdog), options));
}

std::unique_ptr<NcclCommunicator> NcclCommunicator::split(int color, int key, std::string name,
                                                          NcclOptions options) {
  cuda::DeviceGuard g(device_);
  ncclComm_t child = split_comm(comm_, color, key, name, rank_, size_, device_, options.timeout);
  return std::unique_ptr<NcclCommunicator>(
      new NcclCommunicator(child, device_, std::move(name), watchdog_, options));
}

NcclCommunicator::NcclCommunicator(ncclComm* comm, int device, std::string name,
                                   std::shared_ptr<NcclWatchdog> watchdog, NcclOptions options)
    : comm_(comm),
      device_(device),
      name_(std::move(name)),
      options_(options),
      watchdog_(std::move(watchdog)) {
  cuda::DeviceGuard g(device_);
  ncclCommUserRank(comm_, &rank_);
  ncclCommCount(comm_, &size_);
  sends_.assign(size_t(size_), 0);
  recvs_.assign(size_t(size_), 0);
  // Communication streams at the highest priority: their kernels are scheduled ahead of the
  // compute kernels they overlap, which then fill the GPU around them.
  int least = 0, greatest = 0;
  STRATA_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  auto make_stream = [greatest] {
    cudaStream_t s = nullptr;
    STRATA_CUDA_CHECK(cudaStreamCreateWithPriority(&s, cudaStreamNonBlocking, greatest));
    return s;
  };
  side_ = make_stream();
  if (options_.p2p_lanes && size_ > 1) {
    up_ = split_comm(comm_, 0, rank_, name_ + ".up", rank_, size_, device_, options_.timeout);
    down_ = split_comm(comm_, 0, rank_, name_ + ".down", rank_, size_, device_, options_.timeout);
    up_stream_ = make_stream();
    down_stream_ = make_stream();
  }
  watch_ = &watchdog_->add_group(name_, rank_, size_, device_, {comm_, up_, down_});
  watch_->set_timeout(options_.timeout);
}

NcclCommunicator::~NcclCommunicator() {
  if (watch_) watchdog_->remove_group(*watch_);
  int previous = -1;
  cudaGetDevice(&previous);
  cudaSetDevice(device_);
  for (ncclComm* c : {down_, up_, comm_})
    if (c) close_comm(c, options_.timeout);
  for (cudaStream_t s : {side_, up_stream_, down_stream_})
    if (s) cudaStreamDestroy(s);
  if (previous >= 0) cudaSetDevice(previous);
}

void NcclCommunicator::set_timeout(std::chrono::milliseconds timeout) {
  STRATA_CHECK(timeout.count() > 0, "set_timeout: group '", name_,
               "': the timeout must be positive");
  options_.timeout = timeout;
  watch_->set_timeout(timeout);
}

// --- NcclCommunicator: helpers -----------------------------------------------------------------

void NcclCommunicator::check_tensor(const Tensor& t, const char* op, std::string_view what,
                                    bool in_place, bool moves_only) const {
  check_comm_tensor(t, op, what, in_place, moves_only, CommTransport::Nccl);
  STRATA_CHECK(t.device() == Device::cuda(device_), op, " '", what, "': group '", name_,
               "' runs on cuda:", device_, " but the tensor is on ", t.device().str(),
               "; create this rank's tensors on its own GPU (Topology::device())");
}

void NcclCommunicator::check_peer(int peer, const char* op, std::string_view what) const {
  STRATA_CHECK(peer >= 0 && peer < size_, op, " '", what, "': rank ", peer, " is not in group '",
               name_, "' (size ", size_, ")");
  STRATA_CHECK(peer != rank_, op, " '", what, "': rank ", peer,
               " is this rank; sending to oneself is not supported");
}

void NcclCommunicator::settle(ncclComm* comm, int result, const char* call, std::string_view what,
                              int64_t seq, OpKind kind, int peer) {
  ncclResult_t r = ncclResult_t(result);
  if (r == ncclSuccess) return;
  bool timed_out = false;
  if (r == ncclInProgress) r = wait_ready(comm, options_.timeout, timed_out);
  if (r == ncclSuccess) return;
  const std::string detail = last_error(comm);
  if (timed_out) {
    ncclCommAbort(comm);
    STRATA_FAIL(watch_->timeout_message(kind, call, what, seq, peer,
                                        std::chrono::duration<double>(options_.timeout).count()),
                "  (NCCL did not finish enqueueing it; the communicator was aborted)");
  }
  STRATA_FAIL("NCCL error in ", call, " '", what, "' #", seq, " of group '", name_, "' (rank ",
              rank_, " of ", size_, ", cuda:", device_, "): ", ncclGetErrorString(r), detail);
}

CudaEvent NcclCommunicator::record(CUstream_st* stream) const {
  CudaEvent e = make_cuda_event();
  STRATA_CUDA_CHECK(cudaEventRecord(e.get(), stream));
  return e;
}

void NcclCommunicator::track(CUstream_st* stream, OpKind kind, const char* op,
                             std::string_view what, int64_t seq, int peer, CudaEvent* out) {
  CudaEvent done = record(stream);
  watch_->track(done, kind, op, what, seq, peer);
  if (out) *out = std::move(done);
}

// --- NcclCommunicator: collectives -------------------------------------------------------------

void NcclCommunicator::all_reduce(Tensor& t, ReduceOp op, std::string_view what) {
  check_tensor(t, "all_reduce", what, true, false);
  const int64_t seq = ++collectives_;
  cuda::DeviceGuard g(device_);
  NoGradGuard ng;
  cudaStream_t s = compute_stream(device_);
  const bool widen = t.dtype() == DType::bf16 && op == ReduceOp::Sum;
  Tensor buf = widen ? t.to(DType::f32).contiguous() : t;
  settle(comm_,
         ncclAllReduce(buf.raw_data(), buf.raw_data(), size_t(buf.numel()), nccl_type(buf.dtype()),
                       nccl_op(op), comm_, s),
         "all_reduce", what, seq, OpKind::Collective, -1);
  track(s, OpKind::Collective, "all_reduce", what, seq, -1);
  if (widen) t.copy_(buf);  // rounds once
  t.storage().bump_version();
}

std::unique_ptr<Work> NcclCommunicator::all_reduce_async(Tensor& t, ReduceOp op,
                                                         std::string_view what) {
  check_tensor(t, "all_reduce_async", what, true, false);
  const int64_t seq = ++collectives_;
  cuda::DeviceGuard g(device_);
  NoGradGuard ng;
  cudaStream_t s = compute_stream(device_);
  const bool widen = t.dtype() == DType::bf16 && op == ReduceOp::Sum;
  Tensor buf = widen ? t.to(DType::f32).contiguous() : t;
  // The side stream starts after what the compute stream has queued so far (t's producers).
  const CudaEvent ready = record(s);
  STRATA_CUDA_CHECK(cudaStreamWaitEvent(side_, ready.get(), 0));
  settle(comm_,
         ncclAllReduce(buf.raw_data(), buf.raw_data(), size_t(buf.numel()), nccl_type(buf.dtype()),
                       nccl_op(op), comm_, side_),
         "all_reduce_async", what, seq, OpKind::Collective, -1);
  CudaEvent done;
  track(side_, OpKind::Collective, "all_reduce_async", what, seq, -1, &done);
  auto finish = [t, buf, widen]() mutable {
    NoGradGuard ng2;
    if (widen) t.copy_(buf);
    t.storage().bump_version();
  };
  return std::make_unique<NcclWork>(device_, std::move(done), comm_, std::vector<Tensor>{t, buf},
                                    std::move(finish));
}

Tensor NcclCommunicator::all_gather(const Tensor& t, int64_t dim, std::string_view what) {
  check_tensor(t, "all_gather", what, false, true);
  const int64_t d = comm_dim(t, dim, "all_gather", what);
  const int64_t seq = ++collectives_;
  cuda::DeviceGuard g(device_);
  NoGradGuard ng;
  cudaStream_t s = compute_stream(device_);
  const Tensor x = t.detach().contiguous();
  Shape stacked{int64_t(size_)};
  stacked.insert(stacked.end(), x.shape().begin(), x.shape().end());
  Tensor all = Tensor::empty(stacked, x.dtype(), Device::cuda(device_));
  settle(comm_,
         ncclAllGather(x.raw_data(), all.raw_data(), size_t(x.numel()), nccl_type(x.dtype()), comm_,
                       s),
         "all_gather", what, seq, OpKind::Collective, -1);
  track(s, OpKind::Collective, "all_gather", what, seq, -1);
  Shape out = x.shape();
  out[size_t(d)] *= size_;
  if (d == 0) return all.view(out);
  std::vector<Tensor> parts;
  for (int r = 0; r < size_; ++r) parts.push_back(all.select(0, r));
  return cat(parts, d);
}

Tensor NcclCommunicator::reduce_scatter(const Tensor& t, int64_t dim, std::string_view what) {
  check_tensor(t, "reduce_scatter", what, false, false);
  const int64_t d = comm_dim(t, dim, "reduce_scatter", what);
  check_scatter_dim(t, d, size_, what);
  const int64_t seq = ++collectives_;
  cuda::DeviceGuard g(device_);
  NoGradGuard ng;
  cudaStream_t s = compute_stream(device_);
  const int64_t k = t.size(d) / size_;
  // Rank r's slice must be the r-th contiguous block of the send buffer.
  Tensor send;
  if (d == 0) {
    send = t.detach().contiguous();
  } else {
    std::vector<Tensor> slices;
    for (int r = 0; r < size_; ++r) slices.push_back(t.detach().narrow(d, r * k, k));
    send = stack(slices, 0).contiguous();
  }
  const bool widen = t.dtype() == DType::bf16;
  if (widen) send = send.to(DType::f32).contiguous();
  Shape out_shape = t.shape();
  out_shape[size_t(d)] = k;
  Tensor out = Tensor::empty(out_shape, send.dtype(), Device::cuda(device_));
  settle(comm_,
         ncclReduceScatter(send.raw_data(), out.raw_data(), size_t(out.numel()),
                           nccl_type(send.dtype()), ncclSum, comm_, s),
         "reduce_scatter", what, seq, OpKind::Collective, -1);
  track(s, OpKind::Collective, "reduce_scatter", what, seq, -1);
  return widen ? out.to(DType::bf16) : out;
}

void NcclCommunicator::broadcast(Tensor& t, int root, std::string_view what) {
  check_tensor(t, "broadcast", what, true, true);
  STRATA_CHECK(root >= 0 && root < size_, "broadcast '", what, "': root ", root,
               " is not a rank of group '", name_, "' (size ", size_, ")");
  const int64_t seq = ++collectives_;
  cuda::DeviceGuard g(device_);
  cudaStream_t s = compute_stream(device_);
  settle(comm_,
         ncclBroadcast(t.raw_data(), t.raw_data(), size_t(t.numel()), nccl_type(t.dtype()), root,
                       comm_, s),
         "broadcast", what, seq, OpKind::Collective, -1);
  track(s, OpKind::Collective, "broadcast", what, seq, -1);
  if (rank_ != root) t.storage().bump_version();
}

void NcclCommunicator::barrier(std::string_view what) {
  const int64_t seq = ++collectives_;
  cuda::DeviceGuard g(device_);
  cudaStream_t s = compute_stream(device_);
  Tensor token = Tensor::empty({1}, DType::f32, Device::cuda(device_));
  STRATA_CUDA_CHECK(cudaMemsetAsync(token.raw_data(), 0, sizeof(float), s));
  settle(comm_,
         ncclAllReduce(token.raw_data(), token.raw_data(), 1, ncclFloat32, ncclSum, comm_, s),
         "barrier", what, seq, OpKind::Collective, -1);
  CudaEvent done;
  track(s, OpKind::Collective, "barrier", what, seq, -1, &done);
  NcclWork(device_, std::move(done), comm_, {token}, nullptr).synchronize();
}

// --- NcclCommunicator: point to point ----------------------------------------------------------

std::unique_ptr<Work> NcclCommunicator::p2p(Tensor t, int peer, bool is_send, const char* op,
                                            std::string_view what) {
  const int64_t seq = is_send ? ++sends_[size_t(peer)] : ++recvs_[size_t(peer)];
  const OpKind kind = is_send ? OpKind::Send : OpKind::Recv;
  cuda::DeviceGuard g(device_);
  // Lower-to-higher transfers use `up_` on both ends, higher-to-lower ones `down_`.
  const bool upward = is_send ? peer > rank_ : peer < rank_;
  ncclComm_t c = up_ ? (upward ? up_ : down_) : comm_;
  cudaStream_t lane = up_ ? (upward ? up_stream_ : down_stream_) : side_;
  const CudaEvent ready = record(compute_stream(device_));
  STRATA_CUDA_CHECK(cudaStreamWaitEvent(lane, ready.get(), 0));
  const size_t n = size_t(t.numel());
  const ncclResult_t r = is_send ? ncclSend(t.raw_data(), n, nccl_type(t.dtype()), peer, c, lane)
                                 : ncclRecv(t.raw_data(), n, nccl_type(t.dtype()), peer, c, lane);
  settle(c, r, op, what, seq, kind, peer);
  CudaEvent done;
  track(lane, kind, op, what, seq, peer, &done);
  std::function<void()> finish;
  if (!is_send) finish = [t] { t.storage().bump_version(); };
  return std::make_unique<NcclWork>(device_, std::move(done), c, std::vector<Tensor>{t},
                                    std::move(finish));
}

void NcclCommunicator::send(const Tensor& t, int dst, std::string_view what) {
  check_tensor(t, "send", what, false, true);
  check_peer(dst, "send", what);
  p2p(t.detach().contiguous(), dst, true, "send", what)->wait();
}

void NcclCommunicator::recv(Tensor& t, int src, std::string_view what) {
  check_tensor(t, "recv", what, true, true);
  check_peer(src, "recv", what);
  p2p(t, src, false, "recv", what)->wait();
}

std::unique_ptr<Work> NcclCommunicator::send_async(const Tensor& t, int dst,
                                                   std::string_view what) {
  check_tensor(t, "send_async", what, false, true);
  check_peer(dst, "send_async", what);
  return p2p(t.detach().contiguous(), dst, true, "send_async", what);
}

std::unique_ptr<Work> NcclCommunicator::recv_async(Tensor& t, int src, std::string_view what) {
  check_tensor(t, "recv_async", what, true, true);
  check_peer(src, "recv_async", what);
  return p2p(t, src, false, "recv_async", what);
}

}  // namespace strata::parallel
