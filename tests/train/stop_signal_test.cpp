// Preemption (train/stop_signals.h): the first SIGTERM / SIGUSR1 / SIGINT stops a run at a step
// boundary after saving it, `strata train` then exits with 75, and the resumed run equals the
// straight one bit for bit; a second signal exits at once with 130; under mpirun with 4 ranks every
// rank saves the same step.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "tests/train/tiny_corpus.h"
#include "train/checkpoint.h"
#include "train/checkpoint_compare.h"
#include "train/stop_signals.h"
#include "train/trainer.h"

#ifndef STRATA_BIN
#error "STRATA_BIN must name the strata binary"
#endif

namespace strata::train {
namespace {

namespace fs = std::filesystem;

const fixtures::TinyCorpus& tiny() {
  static const fixtures::TinyCorpus corpus("stop_signal_test");
  return corpus;
}

// Two checkpoint directories, every tensor bit for bit (train/checkpoint_compare.h).
void expect_identical(const fs::path& a, const fs::path& b) {
  const CheckpointComparison c = compare_checkpoints(a, b);
  EXPECT_TRUE(c.identical) << c.report;
}

// Raises a stop signal (as the waiting thread would record it) while step `at` runs.
class SignalAt final : public TrainingMethod {
 public:
  explicit SignalAt(int64_t at) : at_(at) {}
  std::string_view name() const override { return "signal_at"; }
  void before_step(StepContext& s) override {
    if (s.step == at_) StopSignals::raise_for_test(SIGUSR1);
  }

 private:
  int64_t at_;
};

TEST(StopSignals, FirstSignalSavesTheStepAndTheResumeEqualsTheStraightRun) {
  std::ostringstream log;
  TrainOptions straight = tiny().decoder_options("straight");
  straight.sample_tokens = 0;
  train(straight, log);

  TrainOptions o = tiny().decoder_options("signalled");
  o.sample_tokens = 0;
  std::vector<std::unique_ptr<TrainingMethod>> m;
  m.push_back(std::make_unique<SignalAt>(12));
  const TrainResult a = train(o, log, std::move(m));
  StopSignals::clear_for_test();
  EXPECT_EQ(a.stopped_by_signal, SIGUSR1);
  EXPECT_EQ(a.step, 13);  // the step that was running finishes, then the run saves and stops
  EXPECT_TRUE(fs::exists(fs::path(o.run_dir) / "step_000000013" / "DONE")) << log.str();
  EXPECT_NE(log.str().find("stopping at step 13 on signal"), std::string::npos) << log.str();

  const TrainResult b = train(o, log);
  EXPECT_EQ(b.resumed_from, 13);
  EXPECT_EQ(b.step, 40);
  EXPECT_EQ(b.stopped_by_signal, 0);
  expect_identical(fs::path(o.run_dir) / "step_000000040",
                   fs::path(straight.run_dir) / "step_000000040");
}

// Runs `body` in a forked child; returns its wait status.
int in_child(const std::function<void()>& body) {
  const pid_t pid = fork();
  if (pid == 0) {
    body();
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

TEST(StopSignals, SecondSignalExitsAtOnceAndOutsideARunTheFirstDoes) {
  // Real signals through the waiting thread, in a child that owns the process-wide handling.
  int status = in_child([] {
    StopSignals signals;
    StopSignals::defer_to_step_boundary(true);
    kill(getpid(), SIGTERM);
    for (int i = 0; i < 200 && StopSignals::received() == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (StopSignals::received() != SIGTERM) _exit(3);  // the first one only set the flag
    kill(getpid(), SIGUSR1);                           // the same request delivered twice: ignored
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::this_thread::sleep_for(std::chrono::nanoseconds(kSecondSignalGraceNs));
    kill(getpid(), SIGINT);
    std::this_thread::sleep_for(std::chrono::seconds(5));
    _exit(4);  // not reached: the second signal ends the process
  });
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), kExitInterrupted);

  status = in_child([] {
    StopSignals signals;  // not deferring: a plain command
    kill(getpid(), SIGTERM);
    std::this_thread::sleep_for(std::chrono::seconds(5));
    _exit(4);
  });
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGTERM);
}

// `strata train` in the background (its output in `log`); returns its pid.
pid_t spawn(const std::string& command, const fs::path& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    const std::string full = "exec env " + command + " >'" + log.string() + "' 2>&1";
    execl("/bin/sh", "sh", "-c", full.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Waits until `log` shows a progress line (or `seconds` pass); true if it did.
bool wait_for_progress(const fs::path& log, int seconds) {
  for (int i = 0; i < seconds * 20; ++i) {
    if (read(log).find("step  ") != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

int64_t stopped_step(const std::string& log) {
  std::smatch m;
  if (!std::regex_search(log, m, std::regex("stopped: step ([0-9]+) saved"))) return -1;
  return std::stoll(m[1]);
}

std::string train_args(const TrainOptions& o, const std::string& run, int64_t budget) {
  return std::string("train --config ") + STRATA_SOURCE_DIR +
         "/configs/decoder-tiny.ini --data.prepare never --data.tokenizer " + o.tokenizer +
         " --data.train " + o.train_data + " --data.valid " + o.valid_data +
         " --data.seq_len 32 --data.micro_batch 8 --budget.amount " + std::to_string(budget) +
         " --optim.warmup_steps 2 --log.every 20 --log.eval_every 0 --log.save_every 0"
         " --log.peak_gflops 1 --log.sample_tokens 0 --run.threads 1 --run.dir " +
         (tiny().root() / run).string();
}

// A real SIGTERM to a real `strata train`, then a resume to the end, against a straight run.
TEST(StopSignals, StrataTrainSavesOnSigtermExits75AndResumesBitForBit) {
  const TrainOptions o = tiny().decoder_options("unused");
  const int64_t budget = 500;
  const std::string bin = std::string("OMP_NUM_THREADS=1 ") + STRATA_BIN + " ";
  const fs::path log = tiny().root() / "sigterm.log";
  const pid_t pid = spawn(bin + train_args(o, "sigterm", budget), log);
  ASSERT_TRUE(wait_for_progress(log, 60)) << read(log);
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << read(log);
  EXPECT_EQ(WEXITSTATUS(status), kExitSavedRequeue) << read(log);
  const int64_t at = stopped_step(read(log));
  ASSERT_GT(at, 0) << read(log);
  ASSERT_LT(at, budget) << "the run ended before the signal; raise the budget";
  ASSERT_TRUE(fs::exists(tiny().root() / "sigterm" / checkpoint_dir_name(at) / "DONE"));

  ASSERT_EQ(
      std::system((bin + train_args(o, "sigterm", budget) + " >'" + log.string() + ".resume' 2>&1")
                      .c_str()),
      0)
      << read(log.string() + ".resume");
  EXPECT_NE(read(log.string() + ".resume").find("(step " + std::to_string(at) + ")"),
            std::string::npos);
  ASSERT_EQ(
      std::system((bin + train_args(o, "sigterm_straight", budget) + " >/dev/null 2>&1").c_str()),
      0);
  expect_identical(tiny().root() / "sigterm" / checkpoint_dir_name(budget),
                   tiny().root() / "sigterm_straight" / checkpoint_dir_name(budget));
}

// Four ranks under mpirun: the signal reaches every rank through mpirun (SIGUSR1, what Slurm
// sends and what mpirun forwards; launch/slurm/ turns a SIGTERM into it), all save the same
// step, every rank exits 75, and the resumed job equals the straight one bit for bit.
TEST(StopSignals, UnderMpirunEveryRankSavesTheSameStep) {
  ASSERT_EQ(std::system("command -v mpirun >/dev/null 2>&1"), 0)
      << "mpirun not found: the build's MPI (scripts/install_deps.sh) provides it";
  const TrainOptions o = tiny().decoder_options("unused");
  const int64_t budget = 300;
  const std::string mpirun = std::string("OMP_NUM_THREADS=1 mpirun --allow-run-as-root ") +
                             "--oversubscribe -np 4 " + STRATA_BIN + " ";
  const fs::path log = tiny().root() / "mpi_signal.log";
  const pid_t pid = spawn(mpirun + train_args(o, "mpi_signal", budget), log);
  ASSERT_TRUE(wait_for_progress(log, 120)) << read(log);
  ASSERT_NE(read(log).find("parallel: DP4"), std::string::npos) << read(log);  // 4 ranks ran
  kill(pid, SIGUSR1);
  int status = 0;
  waitpid(pid, &status, 0);
  const std::string out = read(log);
  ASSERT_TRUE(WIFEXITED(status)) << out;
  EXPECT_EQ(WEXITSTATUS(status), kExitSavedRequeue) << out;
  const int64_t at = stopped_step(out);
  ASSERT_GT(at, 0) << out;
  ASSERT_LT(at, budget) << "the job ended before the signal; raise the budget";
  // One stop line: world rank 0 speaks for the job, after every rank agreed on the step.
  size_t lines = 0;
  for (size_t p = out.find("stopping at step"); p != std::string::npos;
       p = out.find("stopping at step", p + 1))
    ++lines;
  EXPECT_EQ(lines, 1u) << out;
  ASSERT_TRUE(fs::exists(tiny().root() / "mpi_signal" / checkpoint_dir_name(at) / "DONE"));

  ASSERT_EQ(std::system((mpirun + train_args(o, "mpi_signal", budget) + " >'" + log.string() +
                         ".resume' 2>&1")
                            .c_str()),
            0)
      << read(log.string() + ".resume");
  ASSERT_EQ(
      std::system((mpirun + train_args(o, "mpi_straight", budget) + " >/dev/null 2>&1").c_str()),
      0);
  expect_identical(tiny().root() / "mpi_signal" / checkpoint_dir_name(budget),
                   tiny().root() / "mpi_straight" / checkpoint_dir_name(budget));
}

}  // namespace
}  // namespace strata::train
