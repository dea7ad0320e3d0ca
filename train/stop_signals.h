#pragma once
// Preemption: SIGTERM, SIGUSR1 (Slurm's warning before a time limit or preemption, asked for with
// --signal=B:USR1@120) and SIGINT. While a run trains, the first one only sets a flag; the Trainer
// reads it at step boundaries, and in a parallel job every rank agrees on it with one small
// all-reduce (MAX), so every rank saves the same step; the run then ends with kExitSavedRequeue. A
// second signal (a second or more after the first) exits at once (kExitInterrupted) without
// touching the last good checkpoint: a
// save in flight only ever writes a temporary directory, which the next save removes. Outside a
// training run the first signal ends the process as its default action would.
//
// The signals are blocked in every thread and taken by one thread that waits for them (sigwait),
// so none interrupts a system call: an MPI library whose progress engine sees EINTR can lose
// track of a collective (seen here: SIGTERM through mpirun left the ranks in different
// collectives). StopSignals must therefore be constructed before any other thread exists (first
// thing in main, before MPI_Init and OpenMP).
#include <atomic>
#include <cstdint>
#include <thread>

namespace strata::train {

// `strata train` exit codes (docs/cluster.md).
inline constexpr int kExitSavedRequeue = 75;  // stopped by a signal after saving: requeue me
inline constexpr int kExitInterrupted = 130;  // a second signal: stopped at once
// A signal within this time of the first is the same request delivered twice, not a second one.
inline constexpr int64_t kSecondSignalGraceNs = 1'000'000'000;

class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // While on (a training run), the first signal only sets received(); off, it ends the process.
  static void defer_to_step_boundary(bool on);
  // The first signal received while deferring (0: none).
  static int received();
  // For tests: as if `signal` had arrived while deferring; and forgetting it again.
  static void raise_for_test(int signal);
  static void clear_for_test();

 private:
  std::thread waiter_;
};

}  // namespace strata::train
