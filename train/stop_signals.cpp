#include "train/stop_signals.h"

#include <pthread.h>
#include <unistd.h>

#include <chrono>
#include <csignal>

#include "core/error.h"

namespace strata::train {

namespace {

// Process-wide because signals are: what the waiting thread saw, and whether a run defers.
std::atomic<int> g_received{0};
std::atomic<bool> g_deferring{false};
std::atomic<bool> g_closing{false};
std::atomic<bool> g_installed{false};
std::atomic<int64_t> g_first_ns{0};  // when the first signal arrived (steady clock)

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

sigset_t stop_set() {
  sigset_t s;
  sigemptyset(&s);
  for (int sig : {SIGTERM, SIGUSR1, SIGINT}) sigaddset(&s, sig);
  return s;
}

void on_signal(int signal) {
  if (!g_deferring) _exit(128 + signal);  // as the default action would end the process
  int none = 0;
  if (g_received.compare_exchange_strong(none, signal)) {
    g_first_ns = now_ns();
    return;
  }
  // One preemption often arrives twice (Slurm signals the batch shell and the tasks, the script
  // forwards to mpirun): only a signal a grace period after the first is a second request.
  if (now_ns() - g_first_ns >= kSecondSignalGraceNs) _exit(kExitInterrupted);
}

}  // namespace

StopSignals::StopSignals() {
  STRATA_CHECK(!g_installed.exchange(true), "StopSignals: already installed in this process");
  g_received = 0;
  g_closing = false;
  const sigset_t set = stop_set();
  // Threads inherit the mask: every thread started after this one leaves the signals to waiter_.
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  waiter_ = std::thread([set] {
    for (;;) {
      int signal = 0;
      if (sigwait(&set, &signal) != 0) continue;
      if (g_closing) return;
      on_signal(signal);
    }
  });
}

StopSignals::~StopSignals() {
  g_closing = true;
  pthread_kill(waiter_.native_handle(), SIGUSR1);  // wakes sigwait; the waiter then returns
  waiter_.join();
  const sigset_t set = stop_set();
  // Drop what arrived while closing, then restore the default delivery in this thread.
  timespec zero{0, 0};
  while (sigtimedwait(&set, nullptr, &zero) > 0) {
  }
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  g_installed = false;
}

void StopSignals::defer_to_step_boundary(bool on) {
  g_deferring = on;
}

int StopSignals::received() {
  return g_received;
}

void StopSignals::raise_for_test(int signal) {
  const bool was = g_deferring.exchange(true);
  on_signal(signal);
  g_deferring = was;
}

void StopSignals::clear_for_test() {
  g_received = 0;
}

}  // namespace strata::train
