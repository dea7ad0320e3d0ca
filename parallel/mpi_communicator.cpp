#include "parallel/mpi_communicator.h"

#include <climits>
#include <cstdio>
#include <functional>

#include "core/autograd/grad_mode.h"
#include "core/error.h"
#include "core/ops/shape.h"
#include "parallel/comm_tensor.h"
#include "parallel/local_communicator.h"
#include "parallel/mpi_env.h"

namespace strata::parallel {

namespace {

using Blocked = GroupProgress::BlockedScope;

// The MPI type that carries a dtype's bits; bf16 travels as raw 16-bit words and is only summed
// after widening to f32.
MPI_Datatype wire_type(DType d) {
  switch (d) {
    case DType::f32:
      return MPI_FLOAT;
    case DType::f64:
      return MPI_DOUBLE;
    case DType::bf16:
      return MPI_UINT16_T;
    case DType::i32:
      return MPI_INT32_T;
    case DType::i64:
      return MPI_INT64_T;
    case DType::b8:
      return MPI_UINT8_T;
  }
  return MPI_DATATYPE_NULL;
}

MPI_Op mpi_op(ReduceOp op) {
  return op == ReduceOp::Sum ? MPI_SUM : MPI_MAX;
}

int mpi_count(int64_t n, const char* op, std::string_view what) {
  STRATA_CHECK(n <= INT_MAX, op, " '", what, "': ", n,
               " elements exceed MPI's int count; split the tensor into pieces below 2^31");
  return int(n);
}

// bf16 sums are done in f32: widen into a fresh buffer, reduce, round once on the way back.
Tensor widen(const Tensor& t) {
  return t.to(DType::f32).contiguous();
}

void round_into(const Tensor& wide, const Tensor& dst) {
  const float* src = wide.data<float>();
  bf16* out = dst.data<bf16>();
  const int64_t n = dst.numel();
  for (int64_t i = 0; i < n; ++i) out[i] = bf16(src[i]);
}

class MpiWork final : public Work {
 public:
  MpiWork(GroupProgress& g, OpKind kind, const char* op, std::string_view what, int64_t seq,
          int peer, std::vector<Tensor> keep)
      : g_(g), kind_(kind), op_(op), what_(what), seq_(seq), peer_(peer), keep_(std::move(keep)) {}
  ~MpiWork() override {
    if (done_) return;
    try {
      wait();
    } catch (...) {  // a destructor must not throw; the error was the caller's to collect
    }
  }

  MPI_Request* request() { return &req_; }
  // Runs once the request completes (bf16 rounding, received-size check).
  void on_complete(std::function<void(const MPI_Status&)> f) { finish_ = std::move(f); }

  void wait() override {
    if (done_) return;
    {
      Blocked b(g_, kind_, op_, what_, seq_, peer_);
      MPI_Wait(&req_, &status_);
    }
    complete();
  }
  bool done() override {
    if (done_) return true;
    int flag = 0;
    MPI_Test(&req_, &flag, &status_);
    if (flag) complete();
    return done_;
  }

 private:
  void complete() {
    done_ = true;
    if (finish_) finish_(status_);
  }

  GroupProgress& g_;
  OpKind kind_;
  const char* op_;
  std::string what_;
  int64_t seq_;
  int peer_;
  std::vector<Tensor> keep_;  // buffers MPI reads or writes until completion
  MPI_Request req_ = MPI_REQUEST_NULL;
  MPI_Status status_{};
  std::function<void(const MPI_Status&)> finish_;
  bool done_ = false;
};

void check_received(const MPI_Status& st, const Tensor& t, int src, std::string_view what) {
  int got = 0;
  MPI_Get_count(&st, wire_type(t.dtype()), &got);
  STRATA_CHECK(got == t.numel(), "recv '", what, "' from rank ", src, ": expected ", t.numel(),
               " elements of ", dtype_name(t.dtype()), ", got ", got,
               " (sender and receiver disagree on the shape)");
}

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::string name,
                                 std::shared_ptr<Watchdog> watchdog)
    : comm_(comm), name_(std::move(name)), watchdog_(std::move(watchdog)) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  progress_ = &watchdog_->add_group(name_, comm_);
}

std::unique_ptr<MpiCommunicator> MpiCommunicator::world(const std::string& name) {
  auto wd = std::make_shared<Watchdog>(MPI_COMM_WORLD);
  MPI_Comm dup;
  MPI_Comm_dup(MPI_COMM_WORLD, &dup);
  return std::make_unique<MpiCommunicator>(dup, name, std::move(wd));
}

MpiCommunicator::~MpiCommunicator() {
  if (comm_ != MPI_COMM_NULL && MpiEnv::active()) MPI_Comm_free(&comm_);
}

void MpiCommunicator::set_timeout(std::chrono::milliseconds timeout) {
  STRATA_CHECK(timeout.count() > 0, "set_timeout: group '", name_,
               "': the timeout must be positive");
  progress_->set_timeout(timeout);
}

int64_t MpiCommunicator::enter_collective(const char* op, std::string_view what) {
  const int64_t seq = progress_->enter_collective();
  if (check_order_ && size_ > 1) check_order(op, what, seq);
  return seq;
}

// Every rank contributes (h, -h) of its call to one MAX all-reduce: equal calls everywhere iff
// max(h) == min(h). On a mismatch every rank gathers every rank's call for the message.
void MpiCommunicator::check_order(const char* op, std::string_view what, int64_t seq) {
  uint64_t h = 1469598103934665603ull;
  for (char c : std::string(op) + "/" + std::string(what)) h = (h ^ uint8_t(c)) * 1099511628211ull;
  const int64_t mine = int64_t(h >> 1);
  int64_t v[2] = {mine, -mine};
  MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_INT64_T, MPI_MAX, comm_);
  if (v[0] == -v[1]) return;
  char call[96] = {};
  const std::string desc = std::string(op) + " '" + std::string(what) + "'";
  std::snprintf(call, sizeof(call), "%s", desc.c_str());
  std::vector<char> all(sizeof(call) * size_t(size_));
  MPI_Allgather(call, sizeof(call), MPI_CHAR, all.data(), sizeof(call), MPI_CHAR, comm_);
  std::string calls;
  for (int r = 0; r < size_; ++r)
    calls += detail::concat("\n  rank ", r, ": ", std::string(all.data() + r * sizeof(call)));
  STRATA_FAIL("collective order check: the ranks of group '", name_, "' disagree on call #", seq,
              ":", calls);
}

void MpiCommunicator::check_peer(int peer, const char* op, std::string_view what) const {
  STRATA_CHECK(peer >= 0 && peer < size_, op, " '", what, "': rank ", peer, " is not in group '",
               name_, "' (size ", size_, ")");
  STRATA_CHECK(peer != rank_, op, " '", what, "': rank ", peer,
               " is this rank; sending to oneself is not supported");
}

void MpiCommunicator::all_reduce(Tensor& t, ReduceOp op, std::string_view what) {
  check_comm_tensor(t, "all_reduce", what, true, false);
  const int64_t seq = enter_collective("all_reduce", what);
  if (size_ == 1) return;
  NoGradGuard ng;
  const int n = mpi_count(t.numel(), "all_reduce", what);
  if (t.dtype() == DType::bf16) {
    Tensor w = widen(t);
    {
      Blocked b(*progress_, OpKind::Collective, "all_reduce", what, seq);
      MPI_Allreduce(MPI_IN_PLACE, w.raw_data(), n, MPI_FLOAT, mpi_op(op), comm_);
    }
    round_into(w, t);
  } else {
    Blocked b(*progress_, OpKind::Collective, "all_reduce", what, seq);
    MPI_Allreduce(MPI_IN_PLACE, t.raw_data(), n, wire_type(t.dtype()), mpi_op(op), comm_);
  }
  t.storage().bump_version();
}

std::unique_ptr<Work> MpiCommunicator::all_reduce_async(Tensor& t, ReduceOp op,
                                                        std::string_view what) {
  check_comm_tensor(t, "all_reduce_async", what, true, false);
  const int64_t seq = enter_collective("all_reduce_async", what);
  if (size_ == 1) return std::make_unique<DoneWork>();
  NoGradGuard ng;
  const int n = mpi_count(t.numel(), "all_reduce_async", what);
  const bool narrow = t.dtype() == DType::bf16;
  Tensor buf = narrow ? widen(t) : t;
  auto work = std::make_unique<MpiWork>(*progress_, OpKind::Collective, "all_reduce_async", what,
                                        seq, -1, std::vector<Tensor>{t, buf});
  MPI_Iallreduce(MPI_IN_PLACE, buf.raw_data(), n, narrow ? MPI_FLOAT : wire_type(t.dtype()),
                 mpi_op(op), comm_, work->request());
  work->on_complete([t, buf, narrow](const MPI_Status&) {
    if (narrow) round_into(buf, t);
    t.storage().bump_version();
  });
  return work;
}

Tensor MpiCommunicator::all_gather(const Tensor& t, int64_t dim, std::string_view what) {
  check_comm_tensor(t, "all_gather", what, false, true);
  const int64_t d = comm_dim(t, dim, "all_gather", what);
  const int64_t seq = enter_collective("all_gather", what);
  NoGradGuard ng;
  const Tensor x = t.detach().contiguous();
  if (size_ == 1) return x.clone();
  Shape stacked{int64_t(size_)};
  stacked.insert(stacked.end(), x.shape().begin(), x.shape().end());
  Tensor all = Tensor::empty(stacked, x.dtype());
  const int n = mpi_count(x.numel(), "all_gather", what);
  {
    Blocked b(*progress_, OpKind::Collective, "all_gather", what, seq);
    MPI_Allgather(x.raw_data(), n, wire_type(x.dtype()), all.raw_data(), n, wire_type(x.dtype()),
                  comm_);
  }
  Shape out = x.shape();
  out[size_t(d)] *= size_;
  if (d == 0) return all.view(out);
  std::vector<Tensor> parts;
  for (int r = 0; r < size_; ++r) parts.push_back(all.select(0, r));
  return cat(parts, d);
}

Tensor MpiCommunicator::reduce_scatter(const Tensor& t, int64_t dim, std::string_view what) {
  check_comm_tensor(t, "reduce_scatter", what, false, false);
  const int64_t d = comm_dim(t, dim, "reduce_scatter", what);
  check_scatter_dim(t, d, size_, what);
  const int64_t seq = enter_collective("reduce_scatter", what);
  NoGradGuard ng;
  if (size_ == 1) return t.detach().contiguous().clone();
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
  Shape out_shape = t.shape();
  out_shape[size_t(d)] = k;
  const bool narrow = t.dtype() == DType::bf16;
  if (narrow) send = widen(send);
  Tensor out = Tensor::empty(out_shape, narrow ? DType::f32 : t.dtype());
  const int n = mpi_count(out.numel(), "reduce_scatter", what);
  {
    Blocked b(*progress_, OpKind::Collective, "reduce_scatter", what, seq);
    MPI_Reduce_scatter_block(send.raw_data(), out.raw_data(), n, wire_type(send.dtype()), MPI_SUM,
                             comm_);
  }
  if (!narrow) return out;
  Tensor rounded = Tensor::empty(out_shape, DType::bf16);
  round_into(out, rounded);
  return rounded;
}

void MpiCommunicator::broadcast(Tensor& t, int root, std::string_view what) {
  check_comm_tensor(t, "broadcast", what, true, true);
  STRATA_CHECK(root >= 0 && root < size_, "broadcast '", what, "': root ", root,
               " is not a rank of group '", name_, "' (size ", size_, ")");
  const int64_t seq = enter_collective("broadcast", what);
  if (size_ == 1) return;
  const int n = mpi_count(t.numel(), "broadcast", what);
  {
    Blocked b(*progress_, OpKind::Collective, "broadcast", what, seq);
    MPI_Bcast(t.raw_data(), n, wire_type(t.dtype()), root, comm_);
  }
  if (rank_ != root) t.storage().bump_version();
}

void MpiCommunicator::send(const Tensor& t, int dst, std::string_view what) {
  check_comm_tensor(t, "send", what, false, true);
  check_peer(dst, "send", what);
  const int64_t seq = progress_->enter_send(dst);
  const Tensor x = t.detach().contiguous();
  const int n = mpi_count(x.numel(), "send", what);
  Blocked b(*progress_, OpKind::Send, "send", what, seq, dst);
  MPI_Send(x.raw_data(), n, wire_type(x.dtype()), dst, 0, comm_);
}

void MpiCommunicator::recv(Tensor& t, int src, std::string_view what) {
  check_comm_tensor(t, "recv", what, true, true);
  check_peer(src, "recv", what);
  const int64_t seq = progress_->enter_recv(src);
  const int n = mpi_count(t.numel(), "recv", what);
  MPI_Status st;
  {
    Blocked b(*progress_, OpKind::Recv, "recv", what, seq, src);
    MPI_Recv(t.raw_data(), n, wire_type(t.dtype()), src, 0, comm_, &st);
  }
  check_received(st, t, src, what);
  t.storage().bump_version();
}

std::unique_ptr<Work> MpiCommunicator::send_async(const Tensor& t, int dst, std::string_view what) {
  check_comm_tensor(t, "send_async", what, false, true);
  check_peer(dst, "send_async", what);
  const int64_t seq = progress_->enter_send(dst);
  const Tensor x = t.detach().contiguous();
  const int n = mpi_count(x.numel(), "send_async", what);
  auto work = std::make_unique<MpiWork>(*progress_, OpKind::Send, "send_async", what, seq, dst,
                                        std::vector<Tensor>{x});
  MPI_Isend(x.raw_data(), n, wire_type(x.dtype()), dst, 0, comm_, work->request());
  return work;
}

std::unique_ptr<Work> MpiCommunicator::recv_async(Tensor& t, int src, std::string_view what) {
  check_comm_tensor(t, "recv_async", what, true, true);
  check_peer(src, "recv_async", what);
  const int64_t seq = progress_->enter_recv(src);
  const int n = mpi_count(t.numel(), "recv_async", what);
  auto work = std::make_unique<MpiWork>(*progress_, OpKind::Recv, "recv_async", what, seq, src,
                                        std::vector<Tensor>{t});
  MPI_Irecv(t.raw_data(), n, wire_type(t.dtype()), src, 0, comm_, work->request());
  work->on_complete([t, src, what = std::string(what)](const MPI_Status& st) {
    check_received(st, t, src, what);
    t.storage().bump_version();
  });
  return work;
}

void MpiCommunicator::barrier(std::string_view what) {
  const int64_t seq = enter_collective("barrier", what);
  if (size_ == 1) return;
  Blocked b(*progress_, OpKind::Collective, "barrier", what, seq);
  MPI_Barrier(comm_);
}

}  // namespace strata::parallel
