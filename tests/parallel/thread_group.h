#pragma once
// The one in-process communicator of the tests: a group of `size` ranks that are threads of this
// process, for tensor- and pipeline-parallel tests without mpirun.
//   - point to point: one FIFO mailbox per (source, destination) pair, matched in order as MPI
//     matches messages between two ranks; a message carries its name, and a receive checks it,
//     its shape and its dtype;
//   - collectives (all_reduce, all_gather, reduce_scatter, broadcast, barrier): every rank hands
//     in its tensor and waits until all have; sums accumulate in f64 for f64 tensors and in f32
//     otherwise, in rank order, so every rank gets the same bits;
//   - a wait longer than the timeout throws naming the rank and the message, so a broken
//     schedule fails instead of hanging the test.
// ThreadGroup::inert(rank, size) is a rank that must not communicate at all (building and
// initialising a tensor-parallel model needs no collective): every call throws naming it.
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/error.h"
#include "core/ops.h"
#include "parallel/communicator.h"
#include "parallel/local_communicator.h"

namespace strata::parallel::testing {

class ThreadGroup {
 public:
  // `name` is the group's name in messages ("pp", "tp").
  explicit ThreadGroup(int size, const std::string& name = "thread")
      : size_(size), boxes_(size_t(size * size)), slots_(size_t(size)) {
    for (int r = 0; r < size; ++r) comms_.push_back(std::make_unique<Comm>(this, r, size, name));
  }
  Communicator& comm(int rank) { return *comms_.at(size_t(rank)); }
  int size() const { return size_; }

  // Rank `rank` of a group of `size` whose every call throws.
  static std::unique_ptr<Communicator> inert(int rank, int size) {
    return std::make_unique<Comm>(nullptr, rank, size, "inert");
  }

  // Runs fn(rank) on one thread per rank; rethrows the first exception any rank threw.
  void run(const std::function<void(int rank)>& fn) {
    std::vector<std::exception_ptr> errors(static_cast<size_t>(size_));
    std::vector<std::thread> threads;
    for (int r = 0; r < size_; ++r)
      threads.emplace_back([&, r] {
        try {
          fn(r);
        } catch (...) {
          errors[size_t(r)] = std::current_exception();
        }
      });
    for (auto& t : threads) t.join();
    for (auto& e : errors)
      if (e) std::rethrow_exception(e);
  }

 private:
  struct Message {
    std::string what;
    Tensor data;
  };
  struct Mailbox {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<Message> queue;
  };

  class Comm final : public Communicator {
   public:
    Comm(ThreadGroup* group, int rank, int size, std::string name)
        : group_(group), rank_(rank), size_(size), name_(std::move(name)) {}
    int rank() const override { return rank_; }
    int size() const override { return size_; }
    const std::string& name() const override { return name_; }
    void set_timeout(std::chrono::milliseconds timeout) override { timeout_ = timeout; }

    void send(const Tensor& t, int dst, std::string_view what) override {
      Mailbox& box = group().box(rank_, dst);
      Tensor copy = t.detach().contiguous().clone();
      {
        std::lock_guard lock(box.mu);
        box.queue.push_back({std::string(what), copy});
      }
      box.cv.notify_all();
    }
    void recv(Tensor& t, int src, std::string_view what) override {
      Mailbox& box = group().box(src, rank_);
      std::unique_lock lock(box.mu);
      STRATA_CHECK(box.cv.wait_for(lock, timeout_, [&] { return !box.queue.empty(); }),
                   "thread group: rank ", rank_, " timed out receiving ", what, " from rank ", src);
      Message m = std::move(box.queue.front());
      box.queue.pop_front();
      lock.unlock();
      STRATA_CHECK(m.what == what, "thread group: rank ", rank_, " expected ", what, " from rank ",
                   src, " but the next message is ", m.what);
      STRATA_CHECK(m.data.shape() == t.shape() && m.data.dtype() == t.dtype(),
                   "thread group: ", what, " arrived as ", shape_str(m.data.shape()), " ",
                   std::string(dtype_name(m.data.dtype())), " but the receiver expects ",
                   shape_str(t.shape()), " ", std::string(dtype_name(t.dtype())));
      NoGradGuard no_grad;
      t.copy_(m.data);
    }
    std::unique_ptr<Work> send_async(const Tensor& t, int dst, std::string_view what) override {
      send(t, dst, what);
      return std::make_unique<DoneWork>();
    }
    std::unique_ptr<Work> recv_async(Tensor& t, int src, std::string_view what) override {
      recv(t, src, what);
      return std::make_unique<DoneWork>();
    }

    void all_reduce(Tensor& t, ReduceOp op, std::string_view what) override {
      NoGradGuard no_grad;
      const auto all = group().exchange(rank_, t, what, timeout_);
      const DType wide = t.dtype() == DType::f64 ? DType::f64 : DType::f32;
      Tensor acc = all[0].to(wide);
      for (size_t r = 1; r < all.size(); ++r)
        acc = op == ReduceOp::Sum ? acc + all[r].to(wide) : maximum(acc, all[r].to(wide));
      t.copy_(acc.to(t.dtype()));
    }
    std::unique_ptr<Work> all_reduce_async(Tensor& t, ReduceOp op, std::string_view what) override {
      all_reduce(t, op, what);
      return std::make_unique<DoneWork>();
    }
    Tensor all_gather(const Tensor& t, int64_t dim, std::string_view what) override {
      NoGradGuard no_grad;
      return cat(group().exchange(rank_, t, what, timeout_), dim);
    }
    Tensor reduce_scatter(const Tensor& t, int64_t dim, std::string_view what) override {
      Tensor sum = t.detach().contiguous().clone();
      all_reduce(sum, ReduceOp::Sum, what);
      const int64_t d = dim < 0 ? dim + t.dim() : dim;
      STRATA_CHECK(t.size(d) % size_ == 0, "thread group: reduce_scatter of ", shape_str(t.shape()),
                   " over ", size_, " ranks along dim ", dim);
      const int64_t part = t.size(d) / size_;
      return sum.narrow(d, rank_ * part, part).contiguous();
    }
    void broadcast(Tensor& t, int root, std::string_view what) override {
      NoGradGuard no_grad;
      const auto all = group().exchange(rank_, t, what, timeout_);
      if (rank_ != root) t.copy_(all.at(size_t(root)));
    }
    void barrier(std::string_view what) override {
      Tensor token = Tensor::empty({1}, DType::f32);
      token.fill_(0);
      group().exchange(rank_, token, what, timeout_);
    }

   private:
    ThreadGroup& group() const {
      STRATA_CHECK(group_ != nullptr, "thread group: rank ", rank_, " of an inert group of ", size_,
                   " was asked to communicate");
      return *group_;
    }
    ThreadGroup* group_;
    int rank_, size_;
    std::string name_;
    std::chrono::milliseconds timeout_{60000};
  };

  Mailbox& box(int src, int dst) {
    STRATA_CHECK(src >= 0 && src < size_ && dst >= 0 && dst < size_, "thread group: rank ", src,
                 " -> ", dst, " outside a group of ", size_);
    return boxes_[size_t(src * size_ + dst)];
  }

  // Every rank hands in a copy of its tensor; all return every rank's, in rank order, once the
  // last has arrived. Generations keep a fast rank's next collective from mixing with this one.
  std::vector<Tensor> exchange(int rank, const Tensor& t, std::string_view what,
                               std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    const uint64_t gen = gen_;
    slots_[size_t(rank)] = t.detach().contiguous().clone();
    if (++arrived_ == size_) {
      result_ = slots_;
      arrived_ = 0;
      ++gen_;
      cv_.notify_all();
      return result_;
    }
    STRATA_CHECK(cv_.wait_for(lock, timeout, [&] { return gen_ != gen; }), "thread group: rank ",
                 rank, " timed out in ", what, " (", arrived_, " of ", size_, " ranks arrived)");
    return result_;
  }

  int size_;
  std::vector<Mailbox> boxes_;
  std::vector<std::unique_ptr<Comm>> comms_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  uint64_t gen_ = 0;
  std::vector<Tensor> slots_, result_;
};

}  // namespace strata::parallel::testing
