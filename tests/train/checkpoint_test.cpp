#include "train/checkpoint.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <thread>

#include "core/error.h"
#include "core/io/hdf5_file.h"
#include "core/ops.h"
#include "tests/train/checkpoint_fixture.h"

namespace strata::train {
namespace {

namespace fs = std::filesystem;
using fixtures::flip_byte_of_marker;
using fixtures::marker_tensor;
using fixtures::small_state;

// A fresh directory per test, removed afterwards.
class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    run_ = fs::temp_directory_path() /
           ("strata_ckpt_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(run_);
  }
  void TearDown() override { fs::remove_all(run_); }
  fs::path run_;
};

bool same_bytes(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  const Tensor ca = a.contiguous(), cb = b.contiguous();
  return std::memcmp(ca.raw_data(), cb.raw_data(), size_t(ca.numel()) * ca.element_size()) == 0;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST_F(CheckpointTest, RoundTripIsBitwiseForEveryDtype) {
  CheckpointState s;
  s.model["w.f32"] = randn({3, 5}, RandomKey{1});
  s.model["w.f64"] = randn({4}, RandomKey{2}, DType::f64);
  s.model["w.bf16"] = randn({2, 3, 4}, RandomKey{3}).to(DType::bf16);
  s.model["w.i64"] = from_vector<int64_t>({-1, 0, int64_t(1) << 62, 7}, {2, 2});
  s.model["w.i32"] = from_vector<int32_t>({-5, 9}, {2});
  s.model["w.b8"] = from_vector<bool>({true, false, true}, {3});
  s.model["w.scalar"] = from_vector<float>({-0.0f}, {});
  s.model["w.empty"] = Tensor::empty({0, 3}, DType::f32);
  s.model["w.transposed"] = randn({3, 4}, RandomKey{4}).t();  // non-contiguous view
  {
    Tensor nan = from_vector<float>({0.0f, 1.0f}, {2});
    nan.data<float>()[0] = std::numeric_limits<float>::quiet_NaN();
    s.model["w.nan"] = nan;
  }
  s.optim["w.f32"]["exp_avg"] = randn({3, 5}, RandomKey{5});
  s.optim["w.f32"]["exp_avg_sq"] = abs(randn({3, 5}, RandomKey{6}));
  s.ints["samples_consumed"] = 123456789012345;
  s.ints["loader_counter"] = -3;
  s.ints["seed"] = 42;
  s.doubles["clock_seconds"] = 0.1 + 0.2;
  s.doubles["tokens_per_s"] = 1e300;
  s.strings["config"] = "[model]\nd_model = 256\n\n[train]\nlr = 3e-4\n";
  s.strings["tokenizer_fingerprint"] = "unigram:32000:deadbeef";
  s.strings["empty"] = "";

  const fs::path dir = save_checkpoint(run_, 7, s, 3);
  EXPECT_EQ(dir, run_ / "step_000000007");
  EXPECT_TRUE(fs::exists(dir / "DONE"));
  EXPECT_TRUE(fs::exists(dir / "state.h5"));

  const CheckpointState l = load_checkpoint(dir);
  ASSERT_EQ(l.model.size(), s.model.size());
  for (const auto& [name, t] : s.model) {
    ASSERT_TRUE(l.model.count(name)) << name;
    EXPECT_TRUE(same_bytes(l.model.at(name), t)) << name;
  }
  ASSERT_EQ(l.optim.size(), 1u);
  ASSERT_EQ(l.optim.at("w.f32").size(), 2u);
  for (const auto& [state, t] : s.optim.at("w.f32"))
    EXPECT_TRUE(same_bytes(l.optim.at("w.f32").at(state), t)) << state;
  auto ints = s.ints;
  ints["step"] = 7;
  EXPECT_EQ(l.ints, ints);
  EXPECT_EQ(l.doubles, s.doubles);
  EXPECT_EQ(l.strings, s.strings);

  // h5py-compatible layout: what other tools see.
  const io::H5File f = io::H5File::open((dir / "state.h5").string(), io::H5File::Mode::Read);
  EXPECT_EQ(f.attr_int("/train", "format_version"), kCheckpointFormatVersion);
  EXPECT_EQ(f.attr_int("/train", "step"), 7);
  EXPECT_EQ(f.shape_of("/optim/w.f32/exp_avg_sq"), (Shape{3, 5}));
  EXPECT_EQ(f.attr_string("/model/w.f32", "checksum").substr(0, 6), "mix64:");
}

TEST_F(CheckpointTest, RejectsBadNamesAndKeys) {
  CheckpointState s;
  s.model["a/b"] = randn({2}, RandomKey{1});
  EXPECT_NE(error_of([&] { save_checkpoint(run_, 1, s, 0); }).find("'a/b'"), std::string::npos);
  s = {};
  s.ints["manifest"] = 1;
  EXPECT_NE(error_of([&] { save_checkpoint(run_, 1, s, 0); }).find("reserved"), std::string::npos);
  s = {};
  s.ints["x"] = 1;
  s.doubles["x"] = 1;
  EXPECT_NE(error_of([&] { save_checkpoint(run_, 1, s, 0); }).find("both"), std::string::npos);
  s = {};
  s.ints["step"] = 5;
  EXPECT_NE(error_of([&] { save_checkpoint(run_, 6, s, 0); }).find("step 6"), std::string::npos);
  EXPECT_NO_THROW(save_checkpoint(run_, 5, s, 0));
}

TEST_F(CheckpointTest, KeepLastDeletesOnlyOlderCompleteCheckpoints) {
  for (int64_t step = 1; step <= 5; ++step) save_checkpoint(run_, step * 10, small_state(step), 2);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(run_)) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"step_000000040", "step_000000050"}));
  // Saving an older step (a resume from an earlier checkpoint) keeps the one just written.
  save_checkpoint(run_, 30, small_state(3), 1);
  EXPECT_TRUE(fs::exists(run_ / "step_000000030"));
  EXPECT_TRUE(fs::exists(run_ / "step_000000050"));
  EXPECT_FALSE(fs::exists(run_ / "step_000000040"));
  // keep_last <= 0 keeps everything.
  save_checkpoint(run_, 60, small_state(6), 0);
  EXPECT_TRUE(fs::exists(run_ / "step_000000030"));
}

TEST_F(CheckpointTest, ResavingAStepReplacesIt) {
  save_checkpoint(run_, 3, small_state(1), 2);
  save_checkpoint(run_, 3, small_state(2), 2);
  const CheckpointState l = load_checkpoint(run_ / "step_000000003");
  EXPECT_EQ(l.ints.at("samples_consumed"), 200);
  EXPECT_EQ(std::distance(fs::directory_iterator(run_), fs::directory_iterator()), 1);
}

TEST_F(CheckpointTest, CorruptDataIsDetectedAndSkipped) {
  save_checkpoint(run_, 10, small_state(1), 5);
  const fs::path bad = save_checkpoint(run_, 20, small_state(2), 5);
  flip_byte_of_marker(bad / "state.h5");

  const std::string err = error_of([&] { load_checkpoint(bad); });
  EXPECT_NE(err.find(bad.string()), std::string::npos) << err;
  EXPECT_NE(err.find("checksum mismatch in /model/layers.0.marker"), std::string::npos) << err;
  EXPECT_NE(err.find("delete it or resume from an earlier checkpoint"), std::string::npos) << err;

  std::string warnings;
  const auto latest = find_latest_checkpoint(run_, &warnings);
  ASSERT_TRUE(latest);
  EXPECT_EQ(*latest, run_ / "step_000000010");
  EXPECT_NE(warnings.find("step_000000020"), std::string::npos) << warnings;
  EXPECT_NE(warnings.find("checksum mismatch"), std::string::npos) << warnings;
  EXPECT_EQ(load_checkpoint(*latest).ints.at("samples_consumed"), 100);
}

TEST_F(CheckpointTest, TruncatedFileAndChangedAttributesAreDetected) {
  save_checkpoint(run_, 1, small_state(1), 5);
  const fs::path dir = save_checkpoint(run_, 2, small_state(2), 5);
  {
    io::H5File f = io::H5File::open((dir / "state.h5").string(), io::H5File::Mode::ReadWrite);
    f.set_attr("/train", "samples_consumed", int64_t(999));
  }
  EXPECT_NE(error_of([&] { load_checkpoint(dir); }).find("checksum mismatch in the /train"),
            std::string::npos);

  const fs::path dir3 = save_checkpoint(run_, 3, small_state(3), 5);
  fs::resize_file(dir3 / "state.h5", fs::file_size(dir3 / "state.h5") / 2);
  const std::string err = error_of([&] { load_checkpoint(dir3); });
  EXPECT_NE(err.find(dir3.string()), std::string::npos) << err;
  EXPECT_NE(err.find("corrupt"), std::string::npos) << err;

  std::string warnings;
  EXPECT_EQ(find_latest_checkpoint(run_, &warnings), run_ / "step_000000001");
  EXPECT_NE(warnings.find("step_000000003"), std::string::npos) << warnings;
  EXPECT_NE(warnings.find("step_000000002"), std::string::npos) << warnings;
}

TEST_F(CheckpointTest, IncompleteAndTemporaryDirectoriesAreIgnored) {
  save_checkpoint(run_, 10, small_state(1), 5);
  // A step directory without DONE (a crash, or a copy still in progress) and a leftover temporary
  // directory that is complete but was never published.
  fs::copy(run_ / "step_000000010", run_ / "step_000000030", fs::copy_options::recursive);
  fs::remove(run_ / "step_000000030" / "DONE");
  fs::copy(run_ / "step_000000010", run_ / ".tmp-step_000000040", fs::copy_options::recursive);

  const std::string err = error_of([&] { load_checkpoint(run_ / "step_000000030"); });
  EXPECT_NE(err.find("no DONE marker"), std::string::npos) << err;
  std::string warnings;
  EXPECT_EQ(find_latest_checkpoint(run_, &warnings), run_ / "step_000000010");
  EXPECT_NE(warnings.find("step_000000030"), std::string::npos) << warnings;
  EXPECT_EQ(warnings.find(".tmp-"), std::string::npos) << warnings;

  // The next save clears leftovers of interrupted saves.
  save_checkpoint(run_, 20, small_state(2), 5);
  EXPECT_FALSE(fs::exists(run_ / ".tmp-step_000000040"));
  EXPECT_FALSE(find_latest_checkpoint(run_ / "no_such_dir"));
}

TEST_F(CheckpointTest, UnknownFormatVersionIsAnError) {
  const fs::path dir = save_checkpoint(run_, 1, small_state(1), 5);
  {
    io::H5File f = io::H5File::open((dir / "state.h5").string(), io::H5File::Mode::ReadWrite);
    f.set_attr("/train", "format_version", int64_t(99));
  }
  const std::string err = error_of([&] { load_checkpoint(dir); });
  EXPECT_NE(err.find("format version 99 is not supported"), std::string::npos) << err;
  EXPECT_NE(err.find(dir.string()), std::string::npos) << err;
}

// A save killed at any moment leaves the previous checkpoint loadable and never a step_
// directory that looks complete but is not.
TEST_F(CheckpointTest, KilledSaveLeavesPreviousCheckpointIntact) {
  save_checkpoint(run_, 1, small_state(1), 5);
  CheckpointState big = small_state(2);
  big.model["big"] = randn({16 << 20}, RandomKey{9});  // 64 MiB: the save takes a while
  const fs::path tmp_file = run_ / ".tmp-step_000000002" / "state.h5";

  auto kill_save = [&](auto&& wait_before_kill) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      try {
        save_checkpoint(run_, 2, big, 5);
      } catch (...) {
        ::_exit(1);
      }
      ::_exit(0);
    }
    wait_before_kill();
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
  };
  int completed = 0, interrupted = 0;
  auto check_invariants = [&] {
    EXPECT_EQ(load_checkpoint(run_ / "step_000000001").ints.at("samples_consumed"), 100);
    std::string warnings;
    const auto latest = find_latest_checkpoint(run_, &warnings);
    ASSERT_TRUE(latest);
    EXPECT_EQ(warnings, "");  // a published step_ directory is always complete
    ++(*latest == run_ / "step_000000002" ? completed : interrupted);
    if (*latest == run_ / "step_000000002") {
      EXPECT_TRUE(same_bytes(load_checkpoint(*latest).model.at("big"), big.model.at("big")));
    } else {
      EXPECT_EQ(*latest, run_ / "step_000000001");
    }
    fs::remove_all(run_ / "step_000000002");
  };

  // Deterministic: kill once the temporary state.h5 exists, i.e. in the middle of writing it.
  kill_save([&] {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!fs::exists(tmp_file) && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::microseconds(100));
  });
  EXPECT_TRUE(fs::exists(run_ / ".tmp-step_000000002")) << "the kill did not land mid-save";
  EXPECT_FALSE(fs::exists(run_ / "step_000000002"));
  check_invariants();

  // Kills at assorted moments, some of which land after the save completed.
  for (int ms : {0, 1, 3, 10, 30, 100, 300, 1000}) {
    kill_save([&] { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); });
    check_invariants();
  }
  std::cout << "kills: " << interrupted << " interrupted a save, " << completed
            << " came after it completed\n";
}

std::pair<int, std::string> run_strata(const std::string& args) {
  const std::string cmd = std::string(STRATA_BIN) + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST_F(CheckpointTest, InspectCommand) {
  save_checkpoint(run_, 10, small_state(1), 5);
  const fs::path bad = save_checkpoint(run_, 20, small_state(2), 5);

  auto [rc, out] = run_strata("inspect " + bad.string());
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("/model/embed.weight  f32 [8, 4]  checksum ok"), std::string::npos) << out;
  EXPECT_NE(out.find("/optim/embed.weight/exp_avg"), std::string::npos) << out;
  EXPECT_NE(out.find("samples_consumed (int) = 200"), std::string::npos) << out;
  EXPECT_NE(out.find("    | d_model = 4"), std::string::npos) << out;
  EXPECT_NE(out.find("verification: OK"), std::string::npos) << out;

  flip_byte_of_marker(bad / "state.h5");
  std::tie(rc, out) = run_strata("inspect " + bad.string());
  EXPECT_NE(rc, 0) << out;
  EXPECT_NE(out.find("/model/layers.0.marker  f32 [256]  BAD"), std::string::npos) << out;
  EXPECT_NE(out.find("checksum mismatch"), std::string::npos) << out;
  EXPECT_NE(out.find("verification: FAILED (1 problem)"), std::string::npos) << out;

  // A run directory: the newest good checkpoint, with a warning about the damaged one.
  std::tie(rc, out) = run_strata("inspect " + run_.string());
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("newest good checkpoint is step_000000010"), std::string::npos) << out;
  EXPECT_NE(out.find("skipping checkpoint"), std::string::npos) << out;
}

}  // namespace
}  // namespace strata::train
