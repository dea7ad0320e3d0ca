#pragma once
// The timeout watchdog behind NcclCommunicator. NCCL operations are queued on CUDA streams and
// return at once, so a hang shows up as an operation that never completes rather than as a
// blocked call. Every operation records a CUDA event after itself and registers it here; one
// background thread per NcclWatchdog (a Topology shares one among its groups) polls, every poll
// interval, the oldest unfinished operation of each group and the communicators' asynchronous
// error state (ncclCommGetAsyncError, which a non-blocking communicator keeps current):
//   - an operation unfinished for longer than the group's timeout, counted from when the one
//     before it in the group finished (or from its enqueue), ends the job after one message in
//     the shape of the MPI watchdog's, naming the operation, its sequence number, the group and
//     this rank; the group's communicators are aborted (ncclCommAbort) so that the GPU kernels
//     stop, then MPI_Abort (exit status 3);
//   - an asynchronous NCCL error (a peer's network failure, a remote abort) ends the job the same
//     way, naming the error and the oldest unfinished operation.
// The fast path is one event record and a push under an uncontended mutex per operation.
// Unlike the MPI watchdog it does not ask the peers how far they got: each rank's own watchdog
// reports its own oldest operation, so the messages of all ranks together show who is behind.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "parallel/watchdog.h"  // OpKind

struct CUevent_st;
struct ncclComm;

namespace strata::parallel {

// A CUDA event (timing disabled), shared by the Work that waits on it and the watchdog that
// watches it; destroyed with its last owner.
using CudaEvent = std::shared_ptr<CUevent_st>;
CudaEvent make_cuda_event();  // on the current device

// One NCCL process group as the watchdog sees it. Its communicator updates it; the watchdog's
// thread reads it.
class NcclGroupWatch {
 public:
  NcclGroupWatch(std::string name, int rank, int size, int device, std::vector<ncclComm*> comms);

  const std::string& name() const { return name_; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  int device() const { return device_; }

  // An enqueued operation whose completion `done` (recorded after it) marks. `op` is a string
  // literal; `peer` is -1 for collectives.
  void track(CudaEvent done, OpKind kind, const char* op, std::string_view what, int64_t seq,
             int peer);

  void set_timeout(std::chrono::milliseconds t) { timeout_ms_ = t.count(); }
  std::chrono::milliseconds timeout() const {
    return std::chrono::milliseconds(timeout_ms_.load());
  }

  // The message the watchdog prints for an operation of this group that outlived the timeout
  // (also used for host-side waits that time out: communicator creation, enqueueing).
  std::string timeout_message(OpKind kind, const char* op, std::string_view what, int64_t seq,
                              int peer, double waited_s) const;

 private:
  friend class NcclWatchdog;
  struct InFlight {
    CudaEvent done;
    OpKind kind;
    const char* op;
    std::string what;
    int64_t seq;
    int peer;
    std::chrono::steady_clock::time_point since;
  };

  std::string name_;
  int rank_, size_, device_;
  std::vector<ncclComm*> comms_;  // aborted together on a timeout
  std::atomic<int64_t> timeout_ms_{300'000};
  std::mutex mutex_;  // guards in_flight_
  std::deque<InFlight> in_flight_;
};

class NcclWatchdog {
 public:
  NcclWatchdog();
  ~NcclWatchdog();
  NcclWatchdog(const NcclWatchdog&) = delete;
  NcclWatchdog& operator=(const NcclWatchdog&) = delete;

  // Starts watching a group whose communicators are fully created; remove it before destroying
  // them. The reference stays valid until remove_group.
  NcclGroupWatch& add_group(std::string name, int rank, int size, int device,
                            std::vector<ncclComm*> comms);
  void remove_group(NcclGroupWatch& g);

  // How often the thread wakes up (default 20 ms).
  void set_poll_interval(std::chrono::milliseconds t) { poll_ms_ = t.count(); }

 private:
  void run();
  void check(NcclGroupWatch& g);
  [[noreturn]] static void abort_job(const NcclGroupWatch& g, const std::string& message);

  std::list<NcclGroupWatch> groups_;  // list: stable addresses, removal in the middle
  std::mutex groups_mutex_;
  std::atomic<int64_t> poll_ms_{20};
  std::mutex stop_mutex_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace strata::parallel
