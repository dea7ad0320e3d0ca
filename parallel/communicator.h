#pragma once
// The collective-communication interface every parallel layout is built on. One implementation
// per transport: MPI for CPU tensors (parallel/mpi_communicator.h), NCCL for CUDA tensors (issue
// 8). A communicator is one process group (the world, or a tp / dp / pp group of Topology).
//
// Contract (every implementation, every call):
//   - Tensors are dense and contiguous on the communicator's device; in-place calls write into
//     the caller's tensor. dtypes f32, f64, bf16 (summed in f32 for the wire and rounded once),
//     i32, i64.
//   - Every call carries a `what` name ("dp.grad_bucket.3", "tp.attn.o_proj"). With the group's
//     name and a per-communicator sequence number it identifies the collective in errors: a rank
//     that waits longer than the timeout aborts the whole job with a message naming the
//     collective, its sequence number, the group and the ranks that did not arrive.
//   - All members call collectives in the same order (as MPI requires); the sequence numbers let
//     a debug mode check that they do.
//   - Results are deterministic: the same inputs give bitwise the same outputs on every rank and
//     in every run (sums are reduced in an order fixed by the message and group sizes, never in
//     arrival order).
//   - A communicator is used by one thread at a time, and outlives its Work handles.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/tensor.h"

namespace strata::parallel {

enum class ReduceOp { Sum, Max };

// An in-flight collective. wait() blocks until it is complete (and its output tensor may be
// read); destroying an unwaited handle waits.
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
  virtual bool done() = 0;  // non-blocking test
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;  // in this group
  virtual int size() const = 0;
  virtual const std::string& name() const = 0;  // "world", "tp", "dp", "pp", ...

  // In place: t <- op over the group of t.
  virtual void all_reduce(Tensor& t, ReduceOp op, std::string_view what) = 0;
  virtual std::unique_ptr<Work> all_reduce_async(Tensor& t, ReduceOp op, std::string_view what) = 0;
  // Concatenation of every rank's t along `dim`, in rank order (all ranks pass the same shape).
  virtual Tensor all_gather(const Tensor& t, int64_t dim, std::string_view what) = 0;
  // Sum over the group, then rank r keeps slice r of `dim` (t.size(dim) % size() == 0).
  virtual Tensor reduce_scatter(const Tensor& t, int64_t dim, std::string_view what) = 0;
  // In place: every rank's t <- root's t.
  virtual void broadcast(Tensor& t, int root, std::string_view what) = 0;
  // Point to point within the group; recv writes into t, whose shape and dtype the receiver
  // knows (pipeline activations have static shapes).
  virtual void send(const Tensor& t, int dst, std::string_view what) = 0;
  virtual void recv(Tensor& t, int src, std::string_view what) = 0;
  virtual std::unique_ptr<Work> send_async(const Tensor& t, int dst, std::string_view what) = 0;
  virtual std::unique_ptr<Work> recv_async(Tensor& t, int src, std::string_view what) = 0;
  virtual void barrier(std::string_view what) = 0;

  // How long a rank waits for the others before aborting the job (default 300 s, `--parallel.
  // timeout`).
  virtual void set_timeout(std::chrono::milliseconds timeout) = 0;
};

}  // namespace strata::parallel
