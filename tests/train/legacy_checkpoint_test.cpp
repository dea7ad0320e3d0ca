// Checkpoints written before the structure issue still resume. tests/fixtures/legacy_1f9f33f holds
// a tiny decoder, BERT and T5, each trained 4 of 8 steps by `strata` built at commit 1f9f33f
// (make.sh there), with their corpus, tokenizers and shards. Today's `strata train`, run with the
// same arguments, must (a) resume each from step 4 and finish the 8 steps, and (b) agree with a
// straight run of today's code: its step-4 checkpoint equals the legacy one and its step 8 equals
// the resumed one, parameter for parameter and moment for moment, bit for bit.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "train/checkpoint_compare.h"

#ifndef STRATA_BIN
#error "STRATA_BIN must name the strata binary"
#endif

namespace strata::train {
namespace {

namespace fs = std::filesystem;

const fs::path kFixture = fs::path(STRATA_SOURCE_DIR) / "tests/fixtures/legacy_1f9f33f";

std::string args_of(const std::string& model) {
  std::ifstream in(kFixture / ("args_" + model));
  std::stringstream s;
  s << in.rdbuf();
  std::string a = s.str();
  for (char& c : a)
    if (c == '\n') c = ' ';
  return a;
}

// Runs today's strata in `dir` (a copy of the fixture); returns its exit status.
int run_strata(const fs::path& dir, const std::string& args, const fs::path& log) {
  const std::string cmd = "cd '" + dir.string() + "' && OMP_NUM_THREADS=1 '" + STRATA_BIN +
                          "' train " + args + " >'" + log.string() + "' 2>&1";
  return std::system(cmd.c_str());
}

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void expect_identical(const fs::path& got, const fs::path& want, const std::string& what) {
  const CheckpointComparison c = compare_checkpoints(got, want);
  EXPECT_TRUE(c.identical) << what << "\n" << c.report;
}

class LegacyCheckpoint : public ::testing::TestWithParam<std::string> {};

TEST_P(LegacyCheckpoint, ResumesAndMatchesTodaysStraightRun) {
  const std::string model = GetParam();
  const fs::path tmp =
      fs::temp_directory_path() / ("strata_legacy_" + model + "_" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::copy(kFixture, tmp, fs::copy_options::recursive);
  const std::string args = args_of(model);

  // (a) Resume the legacy checkpoint (run.resume auto) and finish the budget.
  ASSERT_EQ(run_strata(tmp, args + " --run.dir runs/" + model, tmp / "resume.log"), 0)
      << read(tmp / "resume.log");
  const std::string log = read(tmp / "resume.log");
  EXPECT_NE(log.find("resumed from runs/" + model + "/step_000000004 (step 4)"), std::string::npos)
      << log;

  // (b) Today's straight run: equal at step 4 to the legacy checkpoint, and at step 8 to the
  // resumed one.
  std::string straight = args;
  const std::string no_saves = "--log.save_every 0";
  ASSERT_NE(straight.find(no_saves), std::string::npos) << straight;
  straight.replace(straight.find(no_saves), no_saves.size(), "--log.save_every 4");
  ASSERT_EQ(run_strata(tmp, straight + " --run.dir runs/straight", tmp / "straight.log"), 0)
      << read(tmp / "straight.log");
  expect_identical(tmp / "runs/straight/step_000000004",
                   kFixture / "runs" / model / "step_000000004",
                   model + " step 4, today vs 1f9f33f");
  expect_identical(tmp / "runs" / model / "step_000000008", tmp / "runs/straight/step_000000008",
                   model + " step 8, resumed legacy vs today's straight run");
  fs::remove_all(tmp);
}

INSTANTIATE_TEST_SUITE_P(Models, LegacyCheckpoint, ::testing::Values("decoder", "bert", "t5"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace strata::train
