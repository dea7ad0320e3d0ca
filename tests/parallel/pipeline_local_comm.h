#pragma once
// An in-process stand-in for a pipeline group, for tests without MPI: p ranks are p threads that
// exchange tensors through mailboxes, one FIFO per (source, destination) pair as MPI matches
// messages between two ranks in order. It implements what the pipeline executor uses
// (send/recv, their async forms, broadcast, barrier); the collectives throw. A receive that
// waits longer than the timeout throws naming the message, so a broken schedule fails instead of
// hanging the test.
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
#include "parallel/communicator.h"
#include "parallel/local_communicator.h"

namespace strata::parallel::testing {

class LocalHub {
 public:
  explicit LocalHub(int size) : size_(size), boxes_(size_t(size * size)) {
    for (int r = 0; r < size; ++r) comms_.push_back(std::make_unique<Comm>(*this, r));
  }
  Communicator& comm(int rank) { return *comms_.at(size_t(rank)); }
  int size() const { return size_; }

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

  class Comm : public Communicator {
   public:
    Comm(LocalHub& hub, int rank) : hub_(hub), rank_(rank) {}
    int rank() const override { return rank_; }
    int size() const override { return hub_.size_; }
    const std::string& name() const override { return name_; }

    void send(const Tensor& t, int dst, std::string_view what) override {
      Mailbox& box = hub_.box(rank_, dst);
      Tensor copy = t.detach().contiguous().clone();
      {
        std::lock_guard lock(box.mu);
        box.queue.push_back({std::string(what), copy});
      }
      box.cv.notify_all();
    }
    void recv(Tensor& t, int src, std::string_view what) override {
      Mailbox& box = hub_.box(src, rank_);
      std::unique_lock lock(box.mu);
      STRATA_CHECK(box.cv.wait_for(lock, timeout_, [&] { return !box.queue.empty(); }),
                   "local pp group: rank ", rank_, " timed out receiving ", what, " from rank ",
                   src);
      Message m = std::move(box.queue.front());
      box.queue.pop_front();
      lock.unlock();
      STRATA_CHECK(m.what == what, "local pp group: rank ", rank_, " expected ", what,
                   " from rank ", src, " but the next message is ", m.what);
      STRATA_CHECK(m.data.shape() == t.shape() && m.data.dtype() == t.dtype(),
                   "local pp group: ", what, " arrived as ", shape_str(m.data.shape()), " ",
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
    void broadcast(Tensor& t, int root, std::string_view what) override {
      if (rank_ == root) {
        for (int r = 0; r < size(); ++r)
          if (r != root) send(t, r, what);
      } else {
        recv(t, root, what);
      }
    }
    void barrier(std::string_view what) override {
      Tensor token = Tensor::empty({1}, DType::f32);
      token.fill_(0);
      broadcast(token, 0, what);
      if (rank_ != 0)
        send(token, 0, what);
      else
        for (int r = 1; r < size(); ++r) recv(token, r, what);
    }
    void set_timeout(std::chrono::milliseconds timeout) override { timeout_ = timeout; }

    void all_reduce(Tensor&, ReduceOp, std::string_view) override { unsupported(); }
    std::unique_ptr<Work> all_reduce_async(Tensor&, ReduceOp, std::string_view) override {
      unsupported();
    }
    Tensor all_gather(const Tensor&, int64_t, std::string_view) override { unsupported(); }
    Tensor reduce_scatter(const Tensor&, int64_t, std::string_view) override { unsupported(); }

   private:
    [[noreturn]] static void unsupported() {
      STRATA_FAIL("local pp group: only point-to-point, broadcast and barrier are implemented");
    }
    LocalHub& hub_;
    int rank_;
    std::string name_ = "pp";
    std::chrono::milliseconds timeout_{60000};
  };

  Mailbox& box(int src, int dst) {
    STRATA_CHECK(src >= 0 && src < size_ && dst >= 0 && dst < size_, "local pp group: rank ", src,
                 " -> ", dst, " outside a group of ", size_);
    return boxes_[size_t(src * size_ + dst)];
  }

  int size_;
  std::vector<Mailbox> boxes_;
  std::vector<std::unique_ptr<Comm>> comms_;
};

}  // namespace strata::parallel::testing
