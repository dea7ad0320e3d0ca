#include "parallel/nccl_watchdog.h"

#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "core/cuda/cuda_check.h"
#include "parallel/mpi_env.h"

namespace strata::parallel {

namespace {

double seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

int world_rank() {
  int r = 0;
  if (MpiEnv::active()) MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

// ncclCommAbort itself can hang on some failures (a peer gone mid-transfer), so it runs on a
// thread of its own and the job ends after a bounded wait either way.
void abort_comms(const std::vector<ncclComm*>& comms) {
  auto finished = std::make_shared<std::atomic<bool>>(false);
  std::thread([comms, finished] {
    for (ncclComm* c : comms)
      if (c) ncclCommAbort(c);
    *finished = true;
  }).detach();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!*finished && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

}  // namespace

CudaEvent make_cuda_event() {
  cudaEvent_t e = nullptr;
  STRATA_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return CudaEvent(e, [](cudaEvent_t ev) { cudaEventDestroy(ev); });
}

NcclGroupWatch::NcclGroupWatch(std::string name, int rank, int size, int device,
                               std::vector<ncclComm*> comms)
    : name_(std::move(name)), rank_(rank), size_(size), device_(device), comms_(std::move(comms)) {}

void NcclGroupWatch::track(CudaEvent done, OpKind kind, const char* op, std::string_view what,
                           int64_t seq, int peer) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lk(mutex_);
  in_flight_.push_back({std::move(done), kind, op, std::string(what), seq, peer, now});
}

std::string NcclGroupWatch::timeout_message(OpKind kind, const char* op, std::string_view what,
                                            int64_t seq, int peer, double waited_s) const {
  std::ostringstream os;
  os.precision(3);
  os << "strata: timeout on world rank " << world_rank() << ": " << op << " '" << what << "' #"
     << seq;
  if (kind == OpKind::Collective)
    os << " of group '" << name_ << "' (rank " << rank_ << " of " << size_ << ")";
  else
    os << (kind == OpKind::Send ? " to" : " from") << " rank " << peer << " of group '" << name_
       << "' (this rank " << rank_ << ")";
  os << " waited " << waited_s << " s (timeout " << seconds(timeout()) << " s).\n";
  os << "  NCCL on cuda:" << device_
     << ": the operation did not complete; a rank of the group that never reached it names an "
        "earlier operation (or none) in its own message; every rank reached it if all name this "
        "one (then the ranks disagree on the order of calls, or the network is too slow for the "
        "timeout)\n";
  return os.str();
}

NcclWatchdog::NcclWatchdog() {
  thread_ = std::thread([this] { run(); });
}

NcclWatchdog::~NcclWatchdog() {
  {
    std::lock_guard lk(stop_mutex_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  thread_.join();
}

NcclGroupWatch& NcclWatchdog::add_group(std::string name, int rank, int size, int device,
                                        std::vector<ncclComm*> comms) {
  std::lock_guard lk(groups_mutex_);
  return groups_.emplace_back(std::move(name), rank, size, device, std::move(comms));
}

void NcclWatchdog::remove_group(NcclGroupWatch& g) {
  std::lock_guard lk(groups_mutex_);
  groups_.remove_if([&g](const NcclGroupWatch& x) { return &x == &g; });
}

void NcclWatchdog::run() {
  std::unique_lock lk(stop_mutex_);
  while (!stop_) {
    lk.unlock();
    {
      std::lock_guard glk(groups_mutex_);
      for (auto& g : groups_) check(g);
    }
    lk.lock();
    stop_cv_.wait_for(lk, std::chrono::milliseconds(poll_ms_.load()), [this] { return stop_; });
  }
}

void NcclWatchdog::check(NcclGroupWatch& g) {
  // The current device is per thread: the events and communicators of the group live on its.
  cudaSetDevice(g.device_);
  const auto now = std::chrono::steady_clock::now();
  std::unique_lock lk(g.mutex_);
  while (!g.in_flight_.empty()) {
    NcclGroupWatch::InFlight& f = g.in_flight_.front();
    const cudaError_t q = cudaEventQuery(f.done.get());
    // Not ready: still running. Any other error is a sticky device error that the next CUDA
    // call of the main thread reports with its context; the operation is no longer in flight.
    if (q == cudaErrorNotReady) break;
    g.in_flight_.pop_front();
    if (!g.in_flight_.empty() && g.in_flight_.front().since < now) g.in_flight_.front().since = now;
  }
  for (ncclComm* c : g.comms_) {
    ncclResult_t err = ncclSuccess;
    if (!c || ncclCommGetAsyncError(c, &err) != ncclSuccess) continue;
    if (err == ncclSuccess || err == ncclInProgress) continue;
    std::ostringstream os;
    os << "strata: NCCL error on world rank " << world_rank() << " in group '" << g.name_
       << "' (rank " << g.rank_ << " of " << g.size_ << ", cuda:" << g.device_
       << "): " << ncclGetErrorString(err) << " (" << ncclGetLastError(c) << ")";
    if (!g.in_flight_.empty()) {
      const auto& f = g.in_flight_.front();
      os << "; oldest unfinished operation: " << f.op << " '" << f.what << "' #" << f.seq;
    }
    os << "\n";
    const std::string msg = os.str();
    lk.unlock();
    abort_job(g, msg);
  }
  if (g.in_flight_.empty()) return;
  const NcclGroupWatch::InFlight f = g.in_flight_.front();
  const double waited = seconds(now - f.since);
  if (now - f.since <= g.timeout()) return;
  lk.unlock();
  abort_job(g, g.timeout_message(f.kind, f.op, f.what, f.seq, f.peer, waited));
}

void NcclWatchdog::abort_job(const NcclGroupWatch& g, const std::string& message) {
  const std::string msg = message + "strata: aborting the job (ncclCommAbort on group '" + g.name_ +
                          "', then MPI_Abort)\n";
  std::fputs(msg.c_str(), stderr);
  std::fflush(stderr);
  abort_comms(g.comms_);
  if (MpiEnv::active()) MPI_Abort(MPI_COMM_WORLD, 3);
  std::abort();
}

}  // namespace strata::parallel
