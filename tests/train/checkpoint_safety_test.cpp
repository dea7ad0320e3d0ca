// Checkpoint safety (issue 21): retention counts only checkpoints that verify and never deletes
// the newest one that does; a checkpoint that does not fit on its filesystem is a clear error
// that keeps the previous checkpoints and leaves no partial one behind, never a crash.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/ops.h"
#include "tests/train/checkpoint_fixture.h"
#include "train/checkpoint.h"
#include "train/checkpoint_dir.h"
#include "train/checkpoint_space.h"

namespace strata::train {
namespace {

namespace fs = std::filesystem;
using fixtures::flip_byte_of_marker;
using fixtures::small_state;

// Removes a test's scratch directory however the test ends.
struct Scratch {
  fs::path dir;
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

fs::path fresh_dir(const std::string& tag) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const fs::path d = fs::temp_directory_path() /
                     ("strata_" + tag + "_" + info->name() + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d;
}

// A fresh run directory per test, removed afterwards.
class CheckpointRetention : public ::testing::Test {
 protected:
  void SetUp() override { run_ = fresh_dir("retention"); }
  void TearDown() override { fs::remove_all(run_); }

  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(run_)) out.push_back(e.path().filename());
    std::sort(out.begin(), out.end());
    return out;
  }
  bool verifies(int64_t step) const {
    try {
      verify_checkpoint(run_ / checkpoint_dir_name(step));
      return true;
    } catch (const Error&) {
      return false;
    }
  }
  // Damages a saved checkpoint. The pause puts the damage on a later file timestamp than the
  // save (timestamps are coarse), as it would be on a real disk.
  void corrupt(int64_t step) const {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    flip_byte_of_marker(run_ / checkpoint_dir_name(step) / "state.h5");
  }
  fs::path run_;
};

// The defect of issue 21: the newest checkpoint is corrupt, a resume falls back to the one
// before it, and the next save used to delete that good one while keeping the corrupt one.
TEST_F(CheckpointRetention, CountsOnlyCheckpointsThatVerify) {
  for (int64_t step : {10, 20, 30}) save_checkpoint(run_, step, small_state(step), 2);
  ASSERT_EQ(names(), (std::vector<std::string>{"step_000000020", "step_000000030"}));
  corrupt(30);
  std::string warnings;
  const auto resume = find_latest_checkpoint(run_, &warnings);
  ASSERT_TRUE(resume);
  EXPECT_EQ(*resume, run_ / "step_000000020");

  save_checkpoint(run_, 40, small_state(4), 2);
  // Two good checkpoints (20, 40) as keep_last asks; the corrupt 30 is kept but not counted.
  EXPECT_EQ(names(),
            (std::vector<std::string>{"step_000000020", "step_000000030", "step_000000040"}));
  EXPECT_TRUE(verifies(20));
  EXPECT_FALSE(verifies(30));
  EXPECT_TRUE(verifies(40));

  // Once keep_last good checkpoints are newer than it, the corrupt one goes like any old one.
  save_checkpoint(run_, 50, small_state(5), 2);
  EXPECT_EQ(names(), (std::vector<std::string>{"step_000000040", "step_000000050"}));
}

// Damage after the save (no find_latest_checkpoint in between) is noticed as well.
TEST_F(CheckpointRetention, DamageAfterASaveIsNoticed) {
  for (int64_t step : {10, 20, 30}) save_checkpoint(run_, step, small_state(step), 3);
  corrupt(30);
  save_checkpoint(run_, 40, small_state(4), 2);
  EXPECT_EQ(names(),
            (std::vector<std::string>{"step_000000020", "step_000000030", "step_000000040"}));
  EXPECT_TRUE(verifies(20));
}

// Saving an older step (a resume from an earlier checkpoint) with keep_last 1 keeps the new
// save and the newest checkpoint that verifies, which the corrupt newest one does not replace.
TEST_F(CheckpointRetention, NeverDeletesTheNewestCheckpointThatVerifies) {
  for (int64_t step : {20, 30}) save_checkpoint(run_, step, small_state(step), 5);
  corrupt(30);
  save_checkpoint(run_, 10, small_state(1), 1);
  EXPECT_EQ(names(),
            (std::vector<std::string>{"step_000000010", "step_000000020", "step_000000030"}));
  EXPECT_TRUE(verifies(20));
}

// A checkpoint that lacks its DONE marker is not complete: never counted, and left to the
// resume logic (it is not a step_ directory a save of this process published).
TEST_F(CheckpointRetention, IncompleteCheckpointsAreNotCounted) {
  for (int64_t step : {10, 20, 30}) save_checkpoint(run_, step, small_state(step), 5);
  fs::remove(run_ / "step_000000030" / "DONE");
  save_checkpoint(run_, 40, small_state(4), 2);
  EXPECT_TRUE(verifies(20));
  EXPECT_TRUE(verifies(40));
  EXPECT_FALSE(fs::exists(run_ / "step_000000010"));
}

// Retention reads only what it has to: nothing this process wrote or already judged, and each
// changed checkpoint once.
TEST_F(CheckpointRetention, VerifiesOnlyCheckpointsItHasNotJudged) {
  const int64_t before = detail::retention_verifications();
  for (int64_t step = 1; step <= 5; ++step) save_checkpoint(run_, step * 10, small_state(step), 2);
  EXPECT_EQ(detail::retention_verifications(), before);
  corrupt(50);
  save_checkpoint(run_, 60, small_state(6), 2);  // reads 50 (changed), counts 40 (its own)
  EXPECT_EQ(detail::retention_verifications(), before + 1);
  save_checkpoint(run_, 70, small_state(7), 3);  // 50 is known to be bad
  EXPECT_EQ(detail::retention_verifications(), before + 1);
  EXPECT_EQ(names(), (std::vector<std::string>{"step_000000040", "step_000000050", "step_000000060",
                                               "step_000000070"}));
}

// A tmpfs of `bytes` mounted for the test's life. Mounting needs root (CAP_SYS_ADMIN), which CI
// has; without it the tests that need one are skipped, saying why.
class TinyFilesystem {
 public:
  TinyFilesystem(const fs::path& dir, int64_t bytes) : dir_(dir) {
    fs::create_directories(dir_);
    const std::string opts = "size=" + std::to_string(bytes);
    if (::mount("tmpfs", dir_.c_str(), "tmpfs", 0, opts.c_str()) == 0)
      mounted_ = true;
    else
      error_ = std::strerror(errno);
  }
  ~TinyFilesystem() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  TinyFilesystem(const TinyFilesystem&) = delete;
  TinyFilesystem& operator=(const TinyFilesystem&) = delete;
  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }
  const fs::path& dir() const { return dir_; }

 private:
  fs::path dir_;
  bool mounted_ = false;
  std::string error_;
};

#define SKIP_UNLESS_MOUNTED(tiny)                                                      \
  if (!(tiny).mounted())                                                               \
  GTEST_SKIP() << "cannot mount a tmpfs at " << (tiny).dir() << " (" << (tiny).error() \
               << "): the full-filesystem case needs root; it runs in CI, which has it"

// Runs `save` in a child process that then exits normally (running the libraries' exit
// handlers, where HDF5 used to crash after a failed write). Returns the error message the save
// threw ("" when it did not throw) and the child's exit status.
struct ChildOutcome {
  bool exited = false;
  int code = -1, signal = 0;
  std::string error;
};
ChildOutcome run_in_child(const fs::path& message_file, const std::function<void()>& save) {
  std::cout.flush();
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::string message;
    try {
      save();
    } catch (const Error& e) {
      message = e.what();
    }
    std::ofstream(message_file) << message;
    std::exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ChildOutcome out;
  out.exited = WIFEXITED(status);
  if (out.exited) out.code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) out.signal = WTERMSIG(status);
  std::ifstream in(message_file);
  std::ostringstream text;
  text << in.rdbuf();
  out.error = text.str();
  return out;
}

// small_state plus `count` tensors of 4 KiB: many datasets, as a model has, so that the disk
// fills up while HDF5 is between datasets (closing one), where the old failure path crashed.
CheckpointState state_with_layers(int64_t seed, int count) {
  CheckpointState s = small_state(seed);
  for (int i = 0; i < count; ++i)
    s.model["layers." + std::to_string(i) + ".w"] = randn({1024}, RandomKey{uint64_t(seed), 7});
  return s;
}

// The defect of issue 21: a checkpoint larger than the free space used to end the run with a
// segfault (HDF5's exit handler closing what the failed write left open).
TEST(CheckpointSpace, FullFilesystemIsAClearErrorAndKeepsThePreviousCheckpoint) {
  const fs::path work = fresh_dir("space");
  const Scratch scratch{work};
  TinyFilesystem tiny(work / "fs", 256 << 10);
  SKIP_UNLESS_MOUNTED(tiny);
  const fs::path run = tiny.dir() / "run";
  save_checkpoint(run, 1, small_state(1), 3);
  const CheckpointState big = state_with_layers(2, 128);  // 512 KiB of tensors

  const ChildOutcome child =
      run_in_child(work / "message.txt", [&] { save_checkpoint(run, 2, big, 3); });
  EXPECT_TRUE(child.exited && child.code == 0)
      << "the child ended with signal " << child.signal << " / exit " << child.code;
  EXPECT_NE(child.error, "") << "the save did not fail";
  EXPECT_NE(child.error.find(run.string()), std::string::npos) << child.error;
  EXPECT_NE(child.error.find("bytes"), std::string::npos) << child.error;
  EXPECT_NE(child.error.find("available"), std::string::npos) << child.error;
  EXPECT_FALSE(fs::exists(run / ".tmp-step_000000002")) << "the partial checkpoint was left";
  EXPECT_FALSE(fs::exists(run / "step_000000002"));
  EXPECT_EQ(load_checkpoint(run / "step_000000001").ints.at("samples_consumed"), 100);
}

// Restores the real filesystem's numbers when a test ends.
struct ProbeGuard {
  explicit ProbeGuard(detail::SpaceProbe p) { detail::set_space_probe_for_tests(std::move(p)); }
  ~ProbeGuard() { detail::set_space_probe_for_tests({}); }
};

// The pre-flight check, with the filesystem's free bytes injected: the error names the run
// directory, its filesystem and both numbers, and nothing is written.
TEST(CheckpointSpace, PreflightNamesTheDirectoryAndTheBytes) {
  const Scratch scratch{fresh_dir("preflight")};
  const fs::path run = scratch.dir / "run";
  save_checkpoint(run, 1, small_state(1), 3);
  const detail::SpaceNeed need = detail::space_need(small_state(2));
  std::string err;
  {
    ProbeGuard probe({[](const fs::path&) { return std::optional<uint64_t>(1000); }, true});
    try {
      save_checkpoint(run, 2, small_state(2), 3);
    } catch (const Error& e) {
      err = e.what();
    }
  }
  ASSERT_NE(err, "") << "a save larger than the free space went ahead";
  EXPECT_NE(err.find("not enough space in '" + run.string() + "' (filesystem mounted at '"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("checkpoint step_000000002 needs about "), std::string::npos) << err;
  EXPECT_NE(
      err.find("(" + std::to_string(need.bytes) + " bytes, " + std::to_string(need.tensor_bytes) +
               " of them tensors) and 1000 bytes are "
               "available"),
      std::string::npos)
      << err;
  EXPECT_NE(err.find("log.keep_last"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(run / ".tmp-step_000000002"));
  EXPECT_FALSE(fs::exists(run / "step_000000002"));
  EXPECT_NO_THROW(verify_checkpoint(run / "step_000000001"));
  // Exactly enough is enough.
  {
    ProbeGuard probe({[&](const fs::path&) { return std::optional<uint64_t>(need.bytes); }, true});
    EXPECT_NO_THROW(save_checkpoint(run, 2, small_state(2), 3));
  }
}

// The estimate is an upper bound of the file HDF5 writes, and not far above it.
TEST(CheckpointSpace, EstimateBoundsTheFile) {
  const Scratch scratch{fresh_dir("estimate")};
  const fs::path run = scratch.dir / "run";
  CheckpointState many = state_with_layers(1, 300);
  many.strings["config"] = std::string(100000, 'x');
  for (const CheckpointState& s : {small_state(1), many}) {
    const detail::SpaceNeed need = detail::space_need(s);
    const fs::path dir = save_checkpoint(run, 1, s, 1);
    const uint64_t size = fs::file_size(dir / "state.h5");
    EXPECT_LE(size, need.bytes);
    EXPECT_LE(need.bytes, need.tensor_bytes + 3 * (size - need.tensor_bytes) + (1 << 20));
    std::cout << "file " << size << " bytes, tensors " << need.tensor_bytes << ", estimate "
              << need.bytes << "\n";
  }
}

// The write path on a really full filesystem, with the pre-flight check and the reservation
// out of the way (they could be fooled by another writer filling the disk): HDF5 fails midway,
// the error is clear, the partial checkpoint is removed and the process exits normally.
TEST(CheckpointSpace, WriteErrorMidwayIsAClearErrorWithoutACrash) {
  const fs::path work = fresh_dir("midway");
  const Scratch scratch{work};
  TinyFilesystem tiny(work / "fs", 256 << 10);
  SKIP_UNLESS_MOUNTED(tiny);
  const fs::path run = tiny.dir() / "run";
  save_checkpoint(run, 1, small_state(1), 3);
  const CheckpointState big = state_with_layers(2, 128);
  const ChildOutcome child = run_in_child(work / "message.txt", [&] {
    detail::set_space_probe_for_tests(
        {[](const fs::path&) { return std::optional<uint64_t>(uint64_t(1) << 40); }, false});
    save_checkpoint(run, 2, big, 3);
  });
  EXPECT_TRUE(child.exited && child.code == 0)
      << "the child ended with signal " << child.signal << " / exit " << child.code;
  EXPECT_NE(child.error.find("writing checkpoint step_000000002 failed"), std::string::npos)
      << child.error;
  EXPECT_NE(child.error.find("No space left on device (errno 28)"), std::string::npos)
      << child.error;
  EXPECT_NE(child.error.find("'" + run.string() + "' (filesystem mounted at '" +
                             tiny.dir().string() + "')"),
            std::string::npos)
      << child.error;
  EXPECT_NE(child.error.find("partial checkpoint was removed"), std::string::npos) << child.error;
  EXPECT_FALSE(fs::exists(run / ".tmp-step_000000002"));
  EXPECT_NO_THROW(verify_checkpoint(run / "step_000000001"));
  std::cout << "message: " << child.error << "\n";
}

// The reservation: a filesystem that cannot hold the file refuses it before HDF5 writes, even
// when the free-space figure said it would fit.
TEST(CheckpointSpace, ReservationRefusesWhatDoesNotFit) {
  const fs::path work = fresh_dir("reserve");
  const Scratch scratch{work};
  TinyFilesystem tiny(work / "fs", 256 << 10);
  SKIP_UNLESS_MOUNTED(tiny);
  const fs::path run = tiny.dir() / "run";
  save_checkpoint(run, 1, small_state(1), 3);
  std::string err;
  {
    ProbeGuard probe(
        {[](const fs::path&) { return std::optional<uint64_t>(uint64_t(1) << 40); }, true});
    try {
      save_checkpoint(run, 2, state_with_layers(2, 128), 3);
    } catch (const Error& e) {
      err = e.what();
    }
  }
  EXPECT_NE(err.find("not enough space in '" + run.string()), std::string::npos) << err;
  EXPECT_NE(err.find("(No space left on device)"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(run / ".tmp-step_000000002"));
  EXPECT_NO_THROW(verify_checkpoint(run / "step_000000001"));
  // What the reservation held beyond the file is given back: a later save that fits succeeds.
  EXPECT_NO_THROW(save_checkpoint(run, 3, small_state(3), 3));
}

}  // namespace
}  // namespace strata::train
