#pragma once
// The timeout watchdog behind MpiCommunicator. One background thread per Watchdog (a Topology
// shares one among its groups) does two jobs:
//   - it watches the blocking waits of its groups: a wait longer than the group's timeout ends
//     the job (MPI_Abort) after one message naming the collective, its sequence number, the
//     group and the ranks that did not arrive;
//   - it answers the other ranks' watchdogs when they ask how far this rank got.
// So the fast path costs one atomic increment and a few stores under an uncontended mutex per call
// (about 35 ns); all the talking happens after a timeout. A rank that is busy outside MPI still
// answers (its watchdog thread runs); a rank that is stopped or dead does not, and is reported as
// such.
#include <mpi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace strata::parallel {

enum class OpKind : int32_t { Collective, Send, Recv };

// The progress of this rank in one process group. The communicator that owns the group updates
// it; the watchdog thread reads it.
class GroupProgress {
 public:
  GroupProgress(std::string name, int rank, std::vector<int> watchdog_ranks);

  const std::string& name() const { return name_; }
  int rank() const { return rank_; }
  int size() const { return int(watchdog_ranks_.size()); }

  // Sequence numbers (1-based) of what this rank has entered: collectives in this group, and
  // sends to / receives from each peer (posted, whether blocking or not).
  int64_t enter_collective() { return ++collectives_; }
  int64_t enter_send(int peer) { return ++sends_[size_t(peer)]; }
  int64_t enter_recv(int peer) { return ++recvs_[size_t(peer)]; }

  void set_timeout(std::chrono::milliseconds t) { timeout_ms_ = t.count(); }
  std::chrono::milliseconds timeout() const {
    return std::chrono::milliseconds(timeout_ms_.load());
  }

  // Marks this rank as blocked in (kind, what, seq, peer) for the scope's lifetime.
  class BlockedScope {
   public:
    // `op` is a string literal ("all_reduce"); `what` the caller's name for the call.
    BlockedScope(GroupProgress& g, OpKind kind, const char* op, std::string_view what, int64_t seq,
                 int peer = -1);
    ~BlockedScope();
    BlockedScope(const BlockedScope&) = delete;
    BlockedScope& operator=(const BlockedScope&) = delete;

   private:
    GroupProgress& g_;
  };

 private:
  friend class Watchdog;
  struct Blocked {
    bool active = false;
    OpKind kind = OpKind::Collective;
    const char* op = "";
    char what[64] = {};  // truncated copy of the caller's name: no allocation on the fast path
    int64_t seq = 0;
    int peer = -1;
    uint64_t epoch = 0;  // counts the scopes entered: tells one long wait from many short ones
  };
  Blocked blocked() const;
  // Since when the watchdog has seen the current wait (read and written by its thread only):
  // the fast path reads no clock, and the watchdog's sampling every poll interval is precise
  // enough for timeouts of seconds.
  std::chrono::steady_clock::time_point seen_since(const Blocked& b);
  uint64_t seen_epoch_ = 0;
  std::chrono::steady_clock::time_point seen_since_;

  std::string name_;
  int rank_;
  std::vector<int> watchdog_ranks_;  // group rank -> rank in the watchdog's communicator
  std::atomic<int64_t> timeout_ms_{300'000};
  std::atomic<int64_t> collectives_{0};
  std::vector<std::atomic<int64_t>> sends_, recvs_;
  mutable std::mutex mutex_;  // guards blocked_
  Blocked blocked_;
};

class Watchdog {
 public:
  // Collective over `comm`, which it duplicates: every rank of every group it will watch must be
  // in it. Needs MPI_THREAD_MULTIPLE (MpiEnv asks for it).
  explicit Watchdog(MPI_Comm comm);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Starts watching a group (`group_comm` must be a subset of the watchdog's communicator).
  // Names are unique per watchdog: peers find the group by name when asked about it.
  GroupProgress& add_group(const std::string& name, MPI_Comm group_comm);

  // How often the thread wakes up (default 20 ms), and how long it waits for the peers'
  // answers after a timeout before reporting the silent ones (default 3 s).
  void set_poll_interval(std::chrono::milliseconds t) { poll_ms_ = t.count(); }
  void set_answer_grace(std::chrono::milliseconds t) { grace_ms_ = t.count(); }

 private:
  struct Query;
  struct Answer;
  struct Inquiry;
  void run();
  void serve_queries();
  Answer answer(const Query& q, int asker);
  [[noreturn]] void time_out(GroupProgress& g, const GroupProgress::Blocked& b);
  void ask_peers(GroupProgress& g, const GroupProgress::Blocked& b, Inquiry& inq);
  GroupProgress* find(std::string_view name) const;

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  std::deque<GroupProgress> groups_;  // deque: stable addresses as groups are added
  mutable std::mutex groups_mutex_;
  std::atomic<int64_t> poll_ms_{20}, grace_ms_{3000};
  std::unique_ptr<Query> query_;  // receive buffer of the pending query
  MPI_Request query_req_ = MPI_REQUEST_NULL;
  std::mutex stop_mutex_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace strata::parallel
