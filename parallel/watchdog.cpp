#include "parallel/watchdog.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "core/error.h"
#include "parallel/mpi_env.h"

namespace strata::parallel {

namespace {
constexpr int kQueryTag = 1;
constexpr int kAnswerTag = 2;

template <size_t N>
void copy_name(char (&dst)[N], std::string_view src) {
  const size_t n = std::min(src.size(), N - 1);
  std::memcpy(dst, src.data(), n);
  dst[n] = '\0';
}

double seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}
}  // namespace

// Fixed-size, trivially copyable messages between watchdogs (sent as MPI_BYTE between processes
// of one build, so the layout is the same on both ends).
struct Watchdog::Query {
  int32_t kind = 0;   // OpKind of the asker's wait
  int32_t asker = 0;  // the asker's rank in the group
  int64_t seq = 0;
  char group[32] = {};
};

struct Watchdog::Answer {
  int32_t known_group = 0;
  int32_t blocked = 0;  // whether the answering rank is in a watched wait (any group)
  int64_t entered = 0;  // last collective entered in the asked group
  int64_t p2p = 0;      // sends to / receives from the asker posted, for a p2p query
  int64_t blocked_seq = 0;
  int64_t blocked_ms = 0;
  int32_t blocked_kind = 0;
  int32_t blocked_peer = -1;
  char blocked_op[24] = {};
  char blocked_group[32] = {};
  char blocked_what[64] = {};
};

// What a timed-out rank asked its peers; alive until the job is aborted, since MPI may still
// touch the buffers.
struct Watchdog::Inquiry {
  std::vector<int> peers;
  std::vector<Query> queries;
  std::vector<Answer> answers;
  std::vector<MPI_Request> sends, recvs;
  std::vector<bool> answered;
};

GroupProgress::GroupProgress(std::string name, int rank, std::vector<int> watchdog_ranks)
    : name_(std::move(name)),
      rank_(rank),
      watchdog_ranks_(std::move(watchdog_ranks)),
      sends_(watchdog_ranks_.size()),
      recvs_(watchdog_ranks_.size()) {}

GroupProgress::Blocked GroupProgress::blocked() const {
  std::lock_guard lk(mutex_);
  return blocked_;
}

std::chrono::steady_clock::time_point GroupProgress::seen_since(const Blocked& b) {
  if (b.epoch != seen_epoch_) {
    seen_epoch_ = b.epoch;
    seen_since_ = std::chrono::steady_clock::now();
  }
  return seen_since_;
}

GroupProgress::BlockedScope::BlockedScope(GroupProgress& g, OpKind kind, const char* op,
                                          std::string_view what, int64_t seq, int peer)
    : g_(g) {
  std::lock_guard lk(g_.mutex_);
  g_.blocked_.active = true;
  g_.blocked_.kind = kind;
  g_.blocked_.op = op;
  copy_name(g_.blocked_.what, what);
  g_.blocked_.seq = seq;
  g_.blocked_.peer = peer;
  ++g_.blocked_.epoch;
}

GroupProgress::BlockedScope::~BlockedScope() {
  std::lock_guard lk(g_.mutex_);
  g_.blocked_.active = false;
}

Watchdog::Watchdog(MPI_Comm comm) : query_(std::make_unique<Query>()) {
  STRATA_CHECK(MpiEnv::active(),
               "Watchdog: MPI is not initialised (construct a parallel::MpiEnv "
               "first in main, and run under mpirun)");
  int provided = 0;
  MPI_Query_thread(&provided);
  STRATA_CHECK(provided == MPI_THREAD_MULTIPLE,
               "Watchdog: needs MPI_THREAD_MULTIPLE; initialise MPI through parallel::MpiEnv");
  MPI_Comm_dup(comm, &comm_);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Irecv(query_.get(), sizeof(Query), MPI_BYTE, MPI_ANY_SOURCE, kQueryTag, comm_, &query_req_);
  thread_ = std::thread([this] { run(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard lk(stop_mutex_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  thread_.join();
  if (!MpiEnv::active()) return;  // MPI already finalised: nothing left to release
  if (query_req_ != MPI_REQUEST_NULL) {
    MPI_Cancel(&query_req_);
    MPI_Wait(&query_req_, MPI_STATUS_IGNORE);
  }
  MPI_Comm_free(&comm_);
}

GroupProgress& Watchdog::add_group(const std::string& name, MPI_Comm group_comm) {
  STRATA_CHECK(name.size() < sizeof(Query::group), "Watchdog: group name '", name,
               "' is too long (at most ", sizeof(Query::group) - 1, " characters)");
  int size = 0, rank = 0;
  MPI_Comm_size(group_comm, &size);
  MPI_Comm_rank(group_comm, &rank);
  MPI_Group mine, theirs;
  MPI_Comm_group(group_comm, &mine);
  MPI_Comm_group(comm_, &theirs);
  std::vector<int> in_group(size_t(size), 0), in_watchdog(size_t(size), 0);
  for (int r = 0; r < size; ++r) in_group[size_t(r)] = r;
  MPI_Group_translate_ranks(mine, size, in_group.data(), theirs, in_watchdog.data());
  MPI_Group_free(&mine);
  MPI_Group_free(&theirs);
  for (int w : in_watchdog)
    STRATA_CHECK(w != MPI_UNDEFINED, "Watchdog: group '", name,
                 "' has a rank outside the watchdog's communicator");
  std::lock_guard lk(groups_mutex_);
  for (const auto& g : groups_)
    STRATA_CHECK(g.name() != name, "Watchdog: a group named '", name, "' is already watched");
  return groups_.emplace_back(name, rank, std::move(in_watchdog));
}

GroupProgress* Watchdog::find(std::string_view name) const {
  std::lock_guard lk(groups_mutex_);
  for (const auto& g : groups_)
    if (g.name() == name) return const_cast<GroupProgress*>(&g);
  return nullptr;
}

void Watchdog::run() {
  std::unique_lock lk(stop_mutex_);
  while (!stop_) {
    lk.unlock();
    {
      const MpiEnv::Use mpi;
      if (!mpi) return;  // MPI is finalised (the watchdog outlived MpiEnv): nothing left to watch
      serve_queries();
      const auto now = std::chrono::steady_clock::now();
      GroupProgress* late = nullptr;
      GroupProgress::Blocked b;
      {
        std::lock_guard glk(groups_mutex_);
        for (auto& g : groups_) {
          b = g.blocked();
          if (b.active && now - g.seen_since(b) > g.timeout()) {
            late = &g;
            break;
          }
        }
      }
      if (late) time_out(*late, b);
    }
    lk.lock();
    stop_cv_.wait_for(lk, std::chrono::milliseconds(poll_ms_.load()), [this] { return stop_; });
  }
}

void Watchdog::serve_queries() {
  for (;;) {
    int flag = 0;
    MPI_Status st;
    MPI_Test(&query_req_, &flag, &st);
    if (!flag) return;
    const Answer a = answer(*query_, st.MPI_SOURCE);
    // Blocking is fine: the asker posted its receive before sending the query.
    MPI_Send(&a, sizeof(Answer), MPI_BYTE, st.MPI_SOURCE, kAnswerTag, comm_);
    MPI_Irecv(query_.get(), sizeof(Query), MPI_BYTE, MPI_ANY_SOURCE, kQueryTag, comm_, &query_req_);
  }
}

Watchdog::Answer Watchdog::answer(const Query& q, int) {
  Answer a;
  if (GroupProgress* g = find(std::string_view(q.group, strnlen(q.group, sizeof(q.group))))) {
    a.known_group = 1;
    a.entered = g->collectives_.load();
    if (q.asker >= 0 && q.asker < g->size()) {
      const auto kind = OpKind(q.kind);
      // The asker waits on a receive from us: how many sends to it have we posted? And the
      // other way round.
      if (kind == OpKind::Recv) a.p2p = g->sends_[size_t(q.asker)].load();
      if (kind == OpKind::Send) a.p2p = g->recvs_[size_t(q.asker)].load();
    }
  }
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lk(groups_mutex_);
  for (auto& g : groups_) {
    const auto b = g.blocked();
    if (!b.active) continue;
    a.blocked = 1;
    a.blocked_seq = b.seq;
    a.blocked_kind = int32_t(b.kind);
    a.blocked_peer = b.peer;
    a.blocked_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(now - g.seen_since(b)).count();
    copy_name(a.blocked_op, b.op);
    copy_name(a.blocked_group, g.name());
    copy_name(a.blocked_what, b.what);
    break;
  }
  return a;
}

void Watchdog::ask_peers(GroupProgress& g, const GroupProgress::Blocked& b, Inquiry& inq) {
  if (b.kind == OpKind::Collective) {
    for (int r = 0; r < g.size(); ++r)
      if (r != g.rank()) inq.peers.push_back(r);
  } else {
    inq.peers.push_back(b.peer);
  }
  const size_t n = inq.peers.size();
  inq.queries.resize(n);
  inq.answers.resize(n);
  inq.sends.assign(n, MPI_REQUEST_NULL);
  inq.recvs.assign(n, MPI_REQUEST_NULL);
  inq.answered.assign(n, false);
  for (size_t i = 0; i < n; ++i) {
    const int dst = g.watchdog_ranks_[size_t(inq.peers[i])];
    Query& q = inq.queries[i];
    q.kind = int32_t(b.kind);
    q.asker = g.rank();
    q.seq = b.seq;
    copy_name(q.group, g.name());
    MPI_Irecv(&inq.answers[i], sizeof(Answer), MPI_BYTE, dst, kAnswerTag, comm_, &inq.recvs[i]);
    MPI_Isend(&q, sizeof(Query), MPI_BYTE, dst, kQueryTag, comm_, &inq.sends[i]);
  }
  // Keep answering the others meanwhile: they may be timing out on us at the same moment.
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(grace_ms_.load());
  size_t pending = n;
  while (pending > 0 && std::chrono::steady_clock::now() < deadline) {
    serve_queries();
    for (size_t i = 0; i < n; ++i) {
      if (inq.answered[i]) continue;
      int flag = 0;
      MPI_Test(&inq.recvs[i], &flag, MPI_STATUS_IGNORE);
      if (flag) inq.answered[i] = true, --pending;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void Watchdog::time_out(GroupProgress& g, const GroupProgress::Blocked& b) {
  const double waited = seconds(std::chrono::steady_clock::now() - g.seen_since(b));
  Inquiry inq;
  ask_peers(g, b, inq);

  int world_rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  auto world_of = [&](int group_rank) {
    int wr = 0;
    MPI_Group wd, world;
    MPI_Comm_group(comm_, &wd);
    MPI_Comm_group(MPI_COMM_WORLD, &world);
    const int in = g.watchdog_ranks_[size_t(group_rank)];
    MPI_Group_translate_ranks(wd, 1, &in, world, &wr);
    MPI_Group_free(&wd);
    MPI_Group_free(&world);
    return wr;
  };

  std::ostringstream os;
  os.precision(3);
  os << "strata: timeout on world rank " << world_rank << ": " << b.op << " '" << b.what << "' #"
     << b.seq;
  if (b.kind == OpKind::Collective)
    os << " of group '" << g.name() << "' (rank " << g.rank() << " of " << g.size() << ")";
  else
    os << (b.kind == OpKind::Send ? " to" : " from") << " rank " << b.peer << " of group '"
       << g.name() << "' (this rank " << g.rank() << ")";
  os << " waited " << waited << " s (timeout " << seconds(g.timeout()) << " s).\n";

  std::vector<int> arrived;
  int missing = 0;
  for (size_t i = 0; i < inq.peers.size(); ++i) {
    const int r = inq.peers[i];
    const Answer& a = inq.answers[i];
    std::ostringstream who;
    who << "rank " << r << " (world " << world_of(r) << ")";
    if (!inq.answered[i]) {
      ++missing;
      os << "  did not arrive: " << who.str() << ": no answer within "
         << seconds(std::chrono::milliseconds(grace_ms_.load()))
         << " s (stopped, dead or unreachable)\n";
      continue;
    }
    bool here = false;
    std::ostringstream got;
    if (b.kind == OpKind::Collective) {
      here = a.entered >= b.seq;
      got << "entered up to #" << a.entered << " of '" << g.name() << "'";
    } else {
      here = a.p2p >= b.seq;
      got << "posted " << a.p2p << (b.kind == OpKind::Recv ? " sends to" : " receives from")
          << " this rank";
    }
    if (here) {
      arrived.push_back(r);
      continue;
    }
    ++missing;
    os << "  did not arrive: " << who.str() << ": " << got.str() << "; ";
    if (a.blocked)
      os << "it is waiting in " << a.blocked_op << " '" << a.blocked_what << "' #" << a.blocked_seq
         << " of group '" << a.blocked_group << "' for " << double(a.blocked_ms) / 1000.0 << " s\n";
    else
      os << "it is not waiting in any collective (busy outside MPI, or in unwatched code)\n";
  }
  if (!arrived.empty()) {
    os << "  arrived:";
    for (int r : arrived) os << " " << r;
    os << "\n";
  }
  if (missing == 0)
    os << "  every rank arrived: the ranks disagree on the order of calls (compare the names and "
          "sequence numbers above), or the network is too slow for the timeout\n";
  os << "strata: aborting the job\n";
  const std::string msg = os.str();
  std::fputs(msg.c_str(), stderr);
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 3);
  std::abort();
}

}  // namespace strata::parallel
