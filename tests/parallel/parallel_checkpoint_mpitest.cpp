// Checkpoints of parallel runs (train/parallel_checkpoint.h) on 2 and 4 ranks: tensors saved
// sharded in one layout (TP, DP x TP, DP) read back exactly in others (one process, TP with the
// other split dims, every rank whole); the file equals the one-process writer's (datasets,
// shapes, dtypes, bytes, checksums, manifest); a one-process checkpoint loads sharded; a rank
// failing before the rename leaves the previous checkpoint the newest good one; replicas that
// differ, layouts that disagree and missing slices are errors on every rank; a corrupt dataset
// is found by the shared-out verification. Then a tensor-parallel DecoderLM saved sharded loads
// bit for bit into the one-process model and into pipeline stages, and pipeline stages (with a
// tied embedding on two stages) save a checkpoint equal to the one-process model's.
#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <thread>

#include "core/error.h"
#include "core/io/hdf5_file.h"
#include "core/ops.h"
#include "models/decoder_lm.h"
#include "models/pipeline_stage_decoder.h"
#include "models/test_util.h"
#include "parallel/mpi_communicator.h"
#include "parallel/topology.h"
#include "train/checkpoint.h"
#include "train/checkpoint_space.h"
#include "train/parallel_checkpoint.h"

namespace strata::train {
namespace {

namespace fs = std::filesystem;
using models::Sharding;
using models::testing::bitwise_equal;

parallel::Communicator& world() {
  static std::unique_ptr<parallel::MpiCommunicator> w = [] {
    auto c = parallel::MpiCommunicator::world("world");
    c->set_timeout(std::chrono::seconds(120));
    return c;
  }();
  return *w;
}
int rank() {
  return world().rank();
}
int size() {
  return world().size();
}

// One run directory shared by all ranks (rank 0 names it), removed afterwards.
class ParallelCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    long long pid = ::getpid();
    MPI_Bcast(&pid, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
    run_ = fs::temp_directory_path() / ("strata_pckpt_" + std::string(info->name()) + "_" +
                                        std::to_string(pid) + "_np" + std::to_string(size()));
    if (rank() == 0) fs::remove_all(run_);
    MPI_Barrier(MPI_COMM_WORLD);
  }
  void TearDown() override {
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank() == 0) fs::remove_all(run_);
  }
  fs::path run_;
};

// ---- synthetic tensors --------------------------------------------------------------------------

// The global tensors of a checkpoint: row- and column-split, replicated, 3-d, scalar, empty; f32,
// f64, bf16, i64; optimizer states shaped like their parameters.
CheckpointState global_state() {
  CheckpointState s;
  s.model["a.row"] = randn({8, 8}, RandomKey{11});
  s.model["b.col"] = randn({4, 12}, RandomKey{12});
  s.model["c.rep"] = randn({5}, RandomKey{13});
  s.model["d.f64"] = randn({3, 4, 8}, RandomKey{14}, DType::f64);
  s.model["e.f64"] = randn({8, 4}, RandomKey{15}, DType::f64);
  s.model["f.scalar"] = from_vector<double>({2.5}, {});
  s.model["g.bf16"] = randn({4, 8}, RandomKey{16}).to(DType::bf16);
  s.model["h.i64"] = from_vector<int64_t>({1, -2, 3, int64_t(1) << 40}, {4});
  s.model["i.empty"] = Tensor::empty({0, 4}, DType::f32);
  s.optim["a.row"]["exp_avg"] = randn({8, 8}, RandomKey{21});
  s.optim["a.row"]["exp_avg_sq"] = abs(randn({8, 8}, RandomKey{22}));
  s.optim["b.col"]["exp_avg"] = randn({4, 12}, RandomKey{23});
  s.optim["d.f64"]["exp_avg"] = randn({3, 4, 8}, RandomKey{24}, DType::f64);
  s.ints["samples_consumed"] = 4096;
  s.ints["seed"] = 7;
  s.doubles["clock_seconds"] = 12.25;
  s.strings["config"] = "[model]\nd_model = 8\n";
  return s;
}

// Split dim per parameter (-1: replicated); optimizer states follow their parameter. Plan A is
// the saving layout's, plan B splits every splittable tensor along another dim.
using Plan = std::map<std::string, int64_t>;
const Plan kPlanA = {{"a.row", 0},     {"b.col", 1},  {"c.rep", -1}, {"d.f64", 2},  {"e.f64", 0},
                     {"f.scalar", -1}, {"g.bf16", 1}, {"h.i64", -1}, {"i.empty", 1}};
const Plan kPlanB = {{"a.row", 1},     {"b.col", 0},  {"c.rep", -1}, {"d.f64", 1},   {"e.f64", 1},
                     {"f.scalar", -1}, {"g.bf16", 0}, {"h.i64", 0},  {"i.empty", -1}};

// Where a tensor of `shape` lies for tensor-parallel rank tp_rank of tp under `dim`.
Sharding sharding_of(const Shape& shape, int64_t dim, int tp, int tp_rank) {
  if (dim < 0 || tp == 1) return Sharding::replicated(shape);
  return Sharding::split(shape, dim, tp_rank, tp, "test");
}

// This rank's share of `g` when the world is DP (size / tp) x TP (tp), TP fastest.
ShardedCheckpointState shard(const CheckpointState& g, const Plan& plan, int tp) {
  const int tp_rank = rank() % tp;
  ShardedCheckpointState s;
  for (const auto& [name, t] : g.model) {
    const Sharding sh = sharding_of(t.shape(), plan.at(name), tp, tp_rank);
    s.model[name] = {sh.local_slice(t), sh};  // a view: column slices are not contiguous
  }
  for (const auto& [name, states] : g.optim)
    for (const auto& [state, t] : states) {
      const Sharding sh = sharding_of(t.shape(), plan.at(name), tp, tp_rank);
      s.optim[name][state] = {sh.local_slice(t), sh};
    }
  s.ints = g.ints;
  s.doubles = g.doubles;
  s.strings = g.strings;
  return s;
}

ShardRequest request(const CheckpointState& g, const Plan& plan, int tp) {
  const int tp_rank = rank() % tp;
  ShardRequest r;
  for (const auto& [name, t] : g.model)
    r.model[name] = sharding_of(t.shape(), plan.at(name), tp, tp_rank);
  for (const auto& [name, states] : g.optim)
    for (const auto& [state, t] : states)
      r.optim[name][state] = sharding_of(t.shape(), plan.at(name), tp, tp_rank);
  return r;
}

// Every requested slice equals the global tensor's, bit for bit; the trainer state is complete.
void expect_slices(const CheckpointState& got, const CheckpointState& g, const ShardRequest& r,
                   const std::string& what) {
  EXPECT_EQ(got.model.size(), r.model.size()) << what;
  for (const auto& [name, sh] : r.model) {
    ASSERT_TRUE(got.model.count(name)) << what << " " << name;
    EXPECT_TRUE(bitwise_equal(got.model.at(name), sh.local_slice(g.model.at(name))))
        << what << " /model/" << name << " rank " << rank();
  }
  for (const auto& [name, states] : r.optim)
    for (const auto& [state, sh] : states) {
      ASSERT_TRUE(got.optim.count(name) && got.optim.at(name).count(state)) << what << name;
      EXPECT_TRUE(
          bitwise_equal(got.optim.at(name).at(state), sh.local_slice(g.optim.at(name).at(state))))
          << what << " /optim/" << name << "/" << state << " rank " << rank();
    }
  EXPECT_EQ(got.ints.at("samples_consumed"), 4096) << what;
  EXPECT_EQ(got.doubles.at("clock_seconds"), 12.25) << what;
  EXPECT_EQ(got.strings.at("config"), g.strings.at("config")) << what;
}

void expect_whole(const CheckpointState& got, const CheckpointState& g, const std::string& what) {
  expect_slices(got, g, request(g, kPlanA, 1), what);
}

// The two files hold the same datasets with the same shapes, dtypes, bytes, checksums and bf16
// tags, and /train the same manifest and attribute checksum.
void expect_same_file(const fs::path& a_dir, const fs::path& b_dir) {
  const io::H5File a = io::H5File::open((a_dir / "state.h5").string(), io::H5File::Mode::Read);
  const io::H5File b = io::H5File::open((b_dir / "state.h5").string(), io::H5File::Mode::Read);
  for (const char* key : {"manifest", "attrs_checksum", "checksum"})
    EXPECT_EQ(a.attr_string("/train", key), b.attr_string("/train", key)) << key;
  for (const char* group : {"/", "/model", "/optim"}) {
    EXPECT_EQ(a.exists(group), b.exists(group)) << group;
    if (a.exists(group) && b.exists(group)) {
      EXPECT_EQ(a.list(group), b.list(group)) << group;
    }
  }
  std::istringstream manifest(b.attr_string("/train", "manifest"));
  std::string kind, path;
  int tensors = 0;
  while (manifest >> kind >> path) {
    if (kind != "tensor") continue;
    ++tensors;
    EXPECT_EQ(a.shape_of(path), b.shape_of(path)) << path;
    EXPECT_EQ(a.dtype_of(path), b.dtype_of(path)) << path;
    EXPECT_EQ(a.attr_string(path, "checksum"), b.attr_string(path, "checksum")) << path;
    EXPECT_EQ(a.has_attr(path, "strata_dtype"), b.has_attr(path, "strata_dtype")) << path;
    EXPECT_TRUE(bitwise_equal(a.read(path), b.read(path))) << path;
  }
  EXPECT_GT(tensors, 0);
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// ---- layouts ------------------------------------------------------------------------------------

// Saved at TP = world size (TP2 on 2 ranks, TP4 on 4), DP2 x TP2 (4 ranks) and DP = world size
// (every tensor replicated: rank 0 writes everything); each read back as one process, as
// TP = world size and TP2 with the other split dims, and whole on every rank.
TEST_F(ParallelCheckpointTest, SavedInOneLayoutReadsExactlyInOthers) {
  const CheckpointState g = global_state();
  // The one-process writer's file for the same tensors, the reference for the file contents.
  const fs::path reference = run_ / "reference";
  if (rank() == 0) save_checkpoint(reference, 3, g, 0);
  MPI_Barrier(MPI_COMM_WORLD);

  std::vector<int> tps = {size(), 1};
  if (size() == 4) tps.push_back(2);
  for (int tp : tps) {
    const std::string what = "saved at DP" + std::to_string(size() / tp) + " x TP" +
                             std::to_string(tp) + " on " + std::to_string(size()) + " ranks";
    const fs::path run = run_ / ("tp" + std::to_string(tp));
    const fs::path dir = save_sharded_checkpoint(run, 3, shard(g, kPlanA, tp), world());
    EXPECT_EQ(dir, run / "step_000000003") << what;
    EXPECT_TRUE(fs::exists(dir / "DONE")) << what;

    // One process (the plain reader, on every rank).
    EXPECT_NO_THROW(verify_checkpoint(dir)) << what;
    const CheckpointState whole = load_checkpoint(dir);
    expect_whole(whole, g, what + ", load_checkpoint");
    EXPECT_EQ(whole.ints.at("step"), 3);
    if (rank() == 0) expect_same_file(dir, reference / "step_000000003");

    // Other layouts.
    for (int read_tp : {size(), 2, 1})
      for (const Plan* plan : {&kPlanA, &kPlanB}) {
        const ShardRequest r = request(g, *plan, read_tp);
        const CheckpointState got = load_sharded_checkpoint(dir, r, world());
        expect_slices(got, g, r,
                      what + ", read at TP" + std::to_string(read_tp) +
                          (plan == &kPlanA ? " (same splits)" : " (other splits)"));
      }
  }
}

TEST_F(ParallelCheckpointTest, OneProcessCheckpointLoadsInAnyLayout) {
  const CheckpointState g = global_state();
  if (rank() == 0) save_checkpoint(run_, 5, g, 0);
  MPI_Barrier(MPI_COMM_WORLD);
  const auto latest = find_latest_checkpoint(run_, world());
  ASSERT_TRUE(latest.has_value());
  for (const Plan* plan : {&kPlanA, &kPlanB}) {
    const ShardRequest r = request(g, *plan, size());
    expect_slices(load_sharded_checkpoint(*latest, r, world(), false), g, r, "one-process file");
  }
}

// ---- failures -----------------------------------------------------------------------------------

// A rank that throws after the data is written, or after rank 0 has sealed the temporary
// directory (DONE written, just before the rename), makes the save fail on every rank, removes the
// partial checkpoint and leaves the previous checkpoint the newest good one.
TEST_F(ParallelCheckpointTest, RankFailingBeforeRenameLeavesPreviousCheckpoint) {
  const CheckpointState g = global_state();
  const ShardedCheckpointState s = shard(g, kPlanA, size());
  ParallelSaveOptions keep2;
  keep2.keep_last = 2;
  save_sharded_checkpoint(run_, 1, s, world(), keep2);
  for (const char* point : {"written", "sealed"}) {
    ParallelSaveOptions opt;
    opt.keep_last = 2;
    opt.fault_injection = [&](std::string_view p) {
      if (p == point && rank() == size() - 1) STRATA_FAIL("injected fault at ", p);
    };
    const std::string err = error_of([&] { save_sharded_checkpoint(run_, 2, s, world(), opt); });
    EXPECT_NE(err.find(std::string("injected fault at ") + point), std::string::npos)
        << point << ": " << err;
    EXPECT_FALSE(fs::exists(run_ / "step_000000002")) << point;
    // The partial checkpoint is removed, however far the save got.
    EXPECT_FALSE(fs::exists(run_ / ".tmp-step_000000002")) << point;
    std::string warnings;
    EXPECT_EQ(find_latest_checkpoint(run_, world(), &warnings), run_ / "step_000000001") << point;
    EXPECT_EQ(warnings, "") << point;
    EXPECT_EQ(find_latest_checkpoint(run_, &warnings), run_ / "step_000000001") << point;
    MPI_Barrier(MPI_COMM_WORLD);
  }
  save_sharded_checkpoint(run_, 3, s, world(), keep2);
  EXPECT_FALSE(fs::exists(run_ / ".tmp-step_000000002"));
  EXPECT_EQ(find_latest_checkpoint(run_, world()), run_ / "step_000000003");
  expect_whole(load_checkpoint(run_ / "step_000000003"), g, "after the failed saves");
}

// A checkpoint larger than the free space (the figure injected on every rank) is refused on
// every rank before anything is written; the previous checkpoint stays the newest good one.
TEST_F(ParallelCheckpointTest, NoSpaceIsAnErrorOnEveryRankAndKeepsThePreviousCheckpoint) {
  const CheckpointState g = global_state();
  const ShardedCheckpointState s = shard(g, kPlanA, size());
  save_sharded_checkpoint(run_, 1, s, world());
  detail::set_space_probe_for_tests(
      {[](const fs::path&) { return std::optional<uint64_t>(1000); }, true});
  const std::string err = error_of([&] { save_sharded_checkpoint(run_, 2, s, world()); });
  detail::set_space_probe_for_tests({});
  EXPECT_NE(err.find("not enough space in '" + run_.string() + "'"), std::string::npos) << err;
  EXPECT_NE(err.find("and 1000 bytes are available"), std::string::npos) << err;
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_FALSE(fs::exists(run_ / ".tmp-step_000000002"));
  EXPECT_FALSE(fs::exists(run_ / "step_000000002"));
  EXPECT_EQ(find_latest_checkpoint(run_, world()), run_ / "step_000000001");
}

// Retention in a parallel job counts only checkpoints that verify: after a corrupt newest one
// made the resume fall back, the next save keeps the good one it fell back to.
TEST_F(ParallelCheckpointTest, RetentionKeepsTheCheckpointAResumeFellBackTo) {
  const CheckpointState g = global_state();
  const ShardedCheckpointState s = shard(g, kPlanA, size());
  ParallelSaveOptions keep2;
  keep2.keep_last = 2;
  save_sharded_checkpoint(run_, 1, s, world(), keep2);
  const fs::path bad = save_sharded_checkpoint(run_, 2, s, world(), keep2);
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank() == 0) {  // later than the save, so the file's times differ from the saved ones
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    io::H5File f = io::H5File::open((bad / "state.h5").string(), io::H5File::Mode::ReadWrite);
    f.write_slab("/model/e.f64", zeros({1, 4}, DType::f64), {3, 0});
  }
  MPI_Barrier(MPI_COMM_WORLD);
  std::string warnings;
  EXPECT_EQ(find_latest_checkpoint(run_, world(), &warnings), run_ / "step_000000001");
  save_sharded_checkpoint(run_, 3, s, world(), keep2);
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_TRUE(fs::exists(run_ / "step_000000001"));  // good: counted, with the new one
  EXPECT_TRUE(fs::exists(bad));                      // corrupt: kept, not counted
  EXPECT_TRUE(fs::exists(run_ / "step_000000003"));
  EXPECT_EQ(find_latest_checkpoint(run_, world()), run_ / "step_000000003");
}

TEST_F(ParallelCheckpointTest, DifferingReplicasAreAnErrorOnEveryRank) {
  const CheckpointState g = global_state();
  ShardedCheckpointState s = shard(g, kPlanA, 1);  // DP = world size: everything replicated
  if (rank() == size() - 1)
    s.model["c.rep"].local = s.model["c.rep"].local.clone().add_(full({5}, 1e-6, DType::f32));
  const std::string err = error_of([&] { save_sharded_checkpoint(run_, 1, s, world()); });
  EXPECT_NE(err.find("copies of a replicated slice differ"), std::string::npos) << err;
  EXPECT_NE(err.find("/model/c.rep on world ranks"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(run_ / "step_000000001"));
  // Opting out writes the lowest rank's copy.
  ParallelSaveOptions opt;
  opt.check_replicas = false;
  const fs::path dir = save_sharded_checkpoint(run_, 1, s, world(), opt);
  expect_whole(load_checkpoint(dir), g, "replica check off");
}

TEST_F(ParallelCheckpointTest, DisagreeingOrIncompleteLayoutsAreErrorsOnEveryRank) {
  const CheckpointState g = global_state();
  const int last = size() - 1;
  {
    ShardedCheckpointState s = shard(g, kPlanA, size());
    if (rank() == last) {  // another global shape for b.col
      const Sharding sh = Sharding::split({4, 16}, 1, last, size(), "test");
      s.model["b.col"] = {zeros(sh.local_shape()), sh};
    }
    const std::string err = error_of([&] { save_sharded_checkpoint(run_, 1, s, world()); });
    EXPECT_NE(err.find("ranks disagree about /model/b.col"), std::string::npos) << err;
  }
  {
    ShardedCheckpointState s = shard(g, kPlanA, size());
    if (rank() == last) s.model.erase("a.row");
    const std::string err = error_of([&] { save_sharded_checkpoint(run_, 1, s, world()); });
    EXPECT_NE(err.find("slice " + std::to_string(last) + " of " + std::to_string(size()) +
                       " of /model/a.row"),
              std::string::npos)
        << err;
  }
  {
    ShardedCheckpointState s = shard(g, kPlanA, size());
    if (rank() == last) s.model["a.row"].local = zeros({1, 8});  // not what its Sharding says
    const std::string err = error_of([&] { save_sharded_checkpoint(run_, 1, s, world()); });
    EXPECT_NE(err.find("/model/a.row has the local shape [1, 8]"), std::string::npos) << err;
    EXPECT_NE(err.find("[world rank " + std::to_string(last) + "]"), std::string::npos) << err;
  }
  // Found before anything was written.
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_FALSE(fs::exists(run_));
}

TEST_F(ParallelCheckpointTest, CorruptDatasetIsFoundBySharedVerification) {
  const CheckpointState g = global_state();
  const ShardedCheckpointState s = shard(g, kPlanA, size());
  save_sharded_checkpoint(run_, 1, s, world());
  const fs::path dir = save_sharded_checkpoint(run_, 2, s, world());
  if (rank() == 0) {  // a torn write: one row of e.f64 replaced, its checksum left as it was
    io::H5File f = io::H5File::open((dir / "state.h5").string(), io::H5File::Mode::ReadWrite);
    f.write_slab("/model/e.f64", zeros({1, 4}, DType::f64), {3, 0});
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const std::string want = "checksum mismatch in /model/e.f64";
  const std::string verify_err = error_of([&] { verify_checkpoint(dir, world()); });
  EXPECT_NE(verify_err.find(want), std::string::npos) << verify_err;
  const std::string load_err =
      error_of([&] { load_sharded_checkpoint(dir, request(g, kPlanB, size()), world()); });
  EXPECT_NE(load_err.find(want), std::string::npos) << load_err;
  std::string warnings;
  EXPECT_EQ(find_latest_checkpoint(run_, world(), &warnings), run_ / "step_000000001");
  EXPECT_NE(warnings.find("skipping checkpoint '" + dir.string() + "'"), std::string::npos)
      << warnings;
  EXPECT_NE(warnings.find(want), std::string::npos) << warnings;
}

// ---- models -------------------------------------------------------------------------------------

std::map<std::string, Tensor> parameters_of(const models::Module& m) {
  std::map<std::string, Tensor> out;
  for (const auto& [name, t] : m.named_parameters()) out[name] = t;
  return out;
}

void expect_model_equals(const std::map<std::string, Tensor>& got, const models::Module& want,
                         const std::string& what) {
  const auto params = want.named_parameters();
  EXPECT_EQ(got.size(), params.size()) << what;
  for (const auto& [name, t] : params) {
    ASSERT_TRUE(got.count(name)) << what << ": no " << name;
    EXPECT_TRUE(bitwise_equal(got.at(name), t)) << what << ": " << name << " rank " << rank();
  }
}

// Loads the slices `m` holds from `dir` into it.
void load_into(models::Module& m, const fs::path& dir) {
  const CheckpointState got = load_sharded_checkpoint(dir, {parameter_shardings(m), {}}, world());
  EXPECT_EQ(got.model.size(), m.named_parameters().size());
  for (const auto& [name, t] : got.model) m.load_parameter(name, t);
}

// A DecoderLM at TP2 (DP = world / 2; on 4 ranks DP2 x TP2), saved sharded with an optimizer
// state shaped like each parameter, is the one-process model built from the same seed, bit for
// bit; loading it back at TP2 and into PP2 stages (x TP2 on 4 ranks) restores every slice.
TEST_F(ParallelCheckpointTest, TensorParallelDecoderIsTheOneProcessModel) {
  parallel::Topology tp_topo = parallel::Topology::create({0, 2, 1});
  tp_topo.set_timeout(std::chrono::seconds(120));
  const int pp_tp = size() == 4 ? 2 : 1;
  parallel::Topology pp_topo = parallel::Topology::create({1, pp_tp, 2});
  pp_topo.set_timeout(std::chrono::seconds(120));
  for (bool tied : {false, true}) {
    const std::string what = tied ? "tied" : "untied";
    models::DecoderConfig cfg = models::testing::tiny_config(tied);
    const models::DecoderLM single(cfg, 1234);
    models::DecoderConfig tp_cfg = cfg;
    tp_cfg.tp = &tp_topo.tp();
    const models::DecoderLM tp_model(tp_cfg, 1234);

    ShardedCheckpointState s;
    s.model = sharded_parameters(tp_model);
    for (const auto& [name, st] : s.model)
      s.optim[name]["exp_avg"] = {affine(st.local.detach(), 0.5, 0.0), st.sharding};
    s.ints["seed"] = 1234;
    const fs::path dir = save_sharded_checkpoint(run_ / what, 3, s, world());

    const CheckpointState whole = load_checkpoint(dir);
    expect_model_equals(whole.model, single, what + ", load_checkpoint");
    for (const auto& [name, t] : single.named_parameters())
      EXPECT_TRUE(bitwise_equal(whole.optim.at(name).at("exp_avg"), affine(t.detach(), 0.5, 0.0)))
          << what << " exp_avg of " << name;

    models::DecoderLM tp_other(tp_cfg, 99);
    load_into(tp_other, dir);
    expect_model_equals(parameters_of(tp_other), tp_model, what + ", back at TP2");

    models::DecoderConfig pp_cfg = cfg;
    pp_cfg.tp = pp_tp > 1 ? &pp_topo.tp() : nullptr;
    const auto layout = models::StageLayout::balanced(cfg.n_layers, 2);
    const int stage_index = pp_topo.coords().pp;
    models::DecoderStage stage(pp_cfg, 99, layout, stage_index);
    load_into(stage, dir);
    const models::DecoderStage want(pp_cfg, 1234, layout, stage_index);
    expect_model_equals(parameters_of(stage), want, what + ", into PP2 stage");
  }
}

// PP2 stages (x TP2 on 4 ranks) save a checkpoint equal to the one-process model's: each stage
// passes its own parameters, and a tied embedding held by the first and the last stage is written
// once.
TEST_F(ParallelCheckpointTest, PipelineStagesSaveTheOneProcessModel) {
  const int pp_tp = size() == 4 ? 2 : 1;
  parallel::Topology pp_topo = parallel::Topology::create({1, pp_tp, 2});
  pp_topo.set_timeout(std::chrono::seconds(120));
  for (bool tied : {false, true}) {
    const std::string what = tied ? "tied" : "untied";
    models::DecoderConfig cfg = models::testing::tiny_config(tied);
    const models::DecoderLM single(cfg, 4321);
    models::DecoderConfig pp_cfg = cfg;
    pp_cfg.tp = pp_tp > 1 ? &pp_topo.tp() : nullptr;
    const models::DecoderStage stage(pp_cfg, 4321, models::StageLayout::balanced(cfg.n_layers, 2),
                                     pp_topo.coords().pp);
    ShardedCheckpointState s;
    s.model = sharded_parameters(stage);
    const fs::path dir = save_sharded_checkpoint(run_ / what, 1, s, world());
    expect_model_equals(load_checkpoint(dir).model, single, what + ", saved by PP2 stages");
    if (rank() == 0) {
      CheckpointState ref;
      ref.model = parameters_of(single);
      save_checkpoint(run_ / (what + "_reference"), 1, ref, 0);
      expect_same_file(dir, run_ / (what + "_reference") / "step_000000001");
    }
  }
}

}  // namespace
}  // namespace strata::train
