// The parallel checkpoint API in one process (a LocalCommunicator world, as Topology::single()
// gives): the file equals save_checkpoint's, a one-process checkpoint is read slice by slice for
// any layout, and the failure paths. The multi-rank cases are in
// tests/parallel/parallel_checkpoint_mpitest.cpp.
#include "train/parallel_checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <functional>

#include "core/error.h"
#include "core/io/hdf5_file.h"
#include "core/ops.h"
#include "parallel/local_communicator.h"

namespace strata::train {
namespace {

namespace fs = std::filesystem;
using models::Sharding;

class ParallelCheckpointLocalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    run_ = fs::temp_directory_path() /
           ("strata_pckpt1_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(run_);
  }
  void TearDown() override { fs::remove_all(run_); }
  fs::path run_;
  parallel::LocalCommunicator world_{"world"};
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

CheckpointState global_state() {
  CheckpointState s;
  s.model["w.f32"] = randn({4, 6}, RandomKey{1});
  s.model["w.f64"] = randn({2, 3, 4}, RandomKey{2}, DType::f64);
  s.model["w.bf16"] = randn({6}, RandomKey{3}).to(DType::bf16);
  s.model["w.b8"] = from_vector<bool>({true, false, true, true}, {4});
  s.model["w.scalar"] = from_vector<float>({-0.0f}, {});
  s.model["w.empty"] = Tensor::empty({0, 3}, DType::f32);
  s.optim["w.f32"]["exp_avg"] = randn({4, 6}, RandomKey{4});
  s.optim["w.f32"]["exp_avg_sq"] = abs(randn({4, 6}, RandomKey{5}));
  s.ints["samples_consumed"] = 99;
  s.doubles["clock_seconds"] = 0.5;
  s.strings["config"] = "[train]\nlr = 1e-3\n";
  return s;
}

ShardedCheckpointState replicated(const CheckpointState& g) {
  ShardedCheckpointState s;
  for (const auto& [name, t] : g.model) s.model[name] = {t, Sharding::replicated(t.shape())};
  for (const auto& [name, states] : g.optim)
    for (const auto& [state, t] : states)
      s.optim[name][state] = {t, Sharding::replicated(t.shape())};
  s.ints = g.ints;
  s.doubles = g.doubles;
  s.strings = g.strings;
  return s;
}

TEST_F(ParallelCheckpointLocalTest, FileEqualsTheOneProcessWriters) {
  const CheckpointState g = global_state();
  const fs::path a = save_sharded_checkpoint(run_ / "a", 4, replicated(g), world_);
  const fs::path b = save_checkpoint(run_ / "b", 4, g, 0);
  const io::H5File fa = io::H5File::open((a / "state.h5").string(), io::H5File::Mode::Read);
  const io::H5File fb = io::H5File::open((b / "state.h5").string(), io::H5File::Mode::Read);
  EXPECT_EQ(fa.attr_string("/train", "manifest"), fb.attr_string("/train", "manifest"));
  EXPECT_EQ(fa.attr_string("/train", "attrs_checksum"), fb.attr_string("/train", "attrs_checksum"));
  std::istringstream manifest(fb.attr_string("/train", "manifest"));
  std::string kind, path;
  while (manifest >> kind >> path) {
    if (kind != "tensor") continue;
    EXPECT_EQ(fa.attr_string(path, "checksum"), fb.attr_string(path, "checksum")) << path;
    EXPECT_EQ(fa.shape_of(path), fb.shape_of(path)) << path;
    EXPECT_EQ(fa.dtype_of(path), fb.dtype_of(path)) << path;
  }
  const CheckpointState l = load_checkpoint(a);
  for (const auto& [name, t] : g.model) EXPECT_TRUE(same_bytes(l.model.at(name), t)) << name;
  EXPECT_EQ(l.ints.at("step"), 4);
}

// A single process may ask for any slice (it is what one rank of a larger layout does).
TEST_F(ParallelCheckpointLocalTest, ReadsTheRequestedSlices) {
  const CheckpointState g = global_state();
  const fs::path dir = save_checkpoint(run_, 2, g, 0);
  ShardRequest r;
  r.model["w.f32"] = Sharding::split({4, 6}, 1, 2, 3, "test");     // columns 4..5
  r.model["w.f64"] = Sharding::split({2, 3, 4}, 2, 1, 2, "test");  // last dim, upper half
  r.model["w.b8"] = Sharding::split({4}, 0, 1, 2, "test");
  r.model["w.scalar"] = Sharding::replicated({});
  r.optim["w.f32"]["exp_avg_sq"] = Sharding::split({4, 6}, 0, 0, 2, "test");
  const CheckpointState l = load_sharded_checkpoint(dir, r, world_);
  EXPECT_EQ(l.model.size(), 4u);
  for (const auto& [name, sh] : r.model)
    EXPECT_TRUE(same_bytes(l.model.at(name), sh.local_slice(g.model.at(name)))) << name;
  EXPECT_TRUE(same_bytes(l.optim.at("w.f32").at("exp_avg_sq"),
                         g.optim.at("w.f32").at("exp_avg_sq").narrow(0, 0, 2)));
  EXPECT_EQ(l.strings.at("config"), g.strings.at("config"));
  EXPECT_EQ(l.ints.at("step"), 2);

  ShardRequest missing;
  missing.model["nope"] = Sharding::replicated({2});
  EXPECT_NE(error_of([&] {
              load_sharded_checkpoint(dir, missing, world_);
            }).find("no dataset /model/nope"),
            std::string::npos);
  ShardRequest wrong_shape;
  wrong_shape.model["w.f32"] = Sharding::split({4, 8}, 1, 0, 2, "test");
  EXPECT_NE(error_of([&] {
              load_sharded_checkpoint(dir, wrong_shape, world_);
            }).find("/model/w.f32 has the global shape [4, 6] but this model has [4, 8]"),
            std::string::npos);
}

TEST_F(ParallelCheckpointLocalTest, BadInputIsAnErrorBeforeAnythingIsWritten) {
  const CheckpointState g = global_state();
  ShardedCheckpointState split = replicated(g);
  split.model["w.f32"] = {g.model.at("w.f32").narrow(0, 0, 2),
                          Sharding::split({4, 6}, 0, 0, 2, "t")};
  EXPECT_NE(error_of([&] { save_sharded_checkpoint(run_, 1, split, world_); })
                .find("slice 1 of 2 of /model/w.f32 (f32 [4, 6] split 2 ways along dim 0) is "
                      "held by no rank"),
            std::string::npos);
  ShardedCheckpointState bad_name = replicated(g);
  bad_name.model["a/b"] = {zeros({1}), Sharding::replicated({1})};
  EXPECT_NE(error_of([&] {
              save_sharded_checkpoint(run_, 1, bad_name, world_);
            }).find("parameter name 'a/b' contains '/'"),
            std::string::npos);
  ShardedCheckpointState reserved = replicated(g);
  reserved.strings["manifest"] = "x";
  EXPECT_NE(error_of([&] {
              save_sharded_checkpoint(run_, 1, reserved, world_);
            }).find("trainer-state key 'manifest' is reserved"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(run_));
}

TEST_F(ParallelCheckpointLocalTest, FailureBeforeTheRenameKeepsThePreviousCheckpoint) {
  const ShardedCheckpointState s = replicated(global_state());
  save_sharded_checkpoint(run_, 1, s, world_);
  ParallelSaveOptions opt;
  opt.fault_injection = [](std::string_view p) {
    if (p == "sealed") STRATA_FAIL("injected at ", p);
  };
  EXPECT_NE(error_of([&] {
              save_sharded_checkpoint(run_, 2, s, world_, opt);
            }).find("injected at sealed"),
            std::string::npos);
  // The partial checkpoint is removed, complete as it was (docs/checkpoints.md, "Guarantees").
  EXPECT_FALSE(fs::exists(run_ / ".tmp-step_000000002"));
  EXPECT_FALSE(fs::exists(run_ / "step_000000002"));
  EXPECT_EQ(find_latest_checkpoint(run_, world_), run_ / "step_000000001");
  ParallelSaveOptions keep1;
  keep1.keep_last = 1;
  save_sharded_checkpoint(run_, 3, s, world_, keep1);
  EXPECT_FALSE(fs::exists(run_ / ".tmp-step_000000002"));
  EXPECT_FALSE(fs::exists(run_ / "step_000000001"));
  EXPECT_EQ(find_latest_checkpoint(run_, world_), run_ / "step_000000003");
}

}  // namespace
}  // namespace strata::train
