// The trainer in every DP x TP x PP layout the world size allows gives the single-process run's
// numbers: the decoder LM, BERT and T5 (tiny configs, byte / unigram tokenizers on a generated
// corpus) train a few steps in each layout, and the losses, the validation loss and the final
// checkpoint's parameters and optimizer moments (read back from the parallel HDF5 file every
// layout writes) are compared with a one-process run made by world rank 0 in the same job
// (parallel::Topology::single()). Resuming in the same layout is bit-exact; a checkpoint written
// in one layout resumes in another (CrossLayoutResume, two ctest launches sharing a directory).
//
// Run on 2 ranks (DP2, TP2, PP2 GPipe and 1F1B), 4 (DP2xTP2, TP2xPP2, DP2xPP2) and 8 (DP2xTP2xPP2,
// oversubscribed), 5 steps each. Rank 0 prints one "equivalence" line per case with the measured
// differences (docs/parallelism.md quotes them).
#include <gtest/gtest.h>
#include <mpi.h>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/ops.h"
#include "data/prepare.h"
#include "data/tokenizer.h"
#include "parallel/topology.h"
#include "tests/train/task_corpus.h"
#include "train/checkpoint.h"
#include "train/trainer.h"
#include "train/training_method.h"

namespace strata::train {
namespace {

namespace fs = std::filesystem;

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int world_size() {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}
void barrier() {
  MPI_Barrier(MPI_COMM_WORLD);
}
std::string broadcast(std::string s) {
  int n = int(s.size());
  MPI_Bcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD);
  s.resize(size_t(n));
  MPI_Bcast(s.data(), n, MPI_CHAR, 0, MPI_COMM_WORLD);
  return s;
}

// A generated corpus with a byte tokenizer (decoder) and bert- and t5-style unigram tokenizers,
// prepared by world rank 0 in a directory every rank then reads.
struct Corpus {
  fs::path root;
  Corpus() {
    std::string dir;
    if (world_rank() == 0) {
      dir = (fs::temp_directory_path() / ("strata_train_mpitest_" + std::to_string(::getpid())))
                .string();
      build(dir);
    }
    root = broadcast(dir);
    barrier();
  }
  ~Corpus() {
    barrier();
    if (world_rank() == 0) fs::remove_all(root);
  }

  static void build(const fs::path& root) {
    fixtures::write_task_text(root);
    {
      std::ofstream tok(root / "bytes.tok", std::ios::binary);
      tok << data::byte_tokenizer_file();
    }
    fixtures::prepare_task_shards(root, *data::load_tokenizer((root / "bytes.tok").string()),
                                  "bytes");
    for (const std::string style : {"bert", "t5"})
      fixtures::prepare_task_shards(root, *fixtures::train_task_tokenizer(root, style), style);
  }

  // `steps` steps of 2 micro-batches of 4 sequences, evaluation and a checkpoint at the end.
  // Dropout 0.1: every layout draws the one-process masks (a dp rank's rows keep their place
  // in the micro-batch in the dropout key, RandomKey::row_first / row_stride).
  TrainOptions options(const std::string& type, const std::string& run, int steps) const {
    TrainOptions o;
    const std::string tok = type == "decoder" ? "bytes" : type;
    o.run_dir = (root / "runs" / run).string();
    o.resume = "none";
    o.tokenizer = (root / (tok + ".tok")).string();
    o.train_data = (root / (tok + "-train")).string();
    o.valid_data = (root / (tok + "-valid")).string();
    o.objective.seq_len = 32;
    o.micro_batch = 4;
    o.grad_accum = 2;
    o.model.type = type;
    if (type == "decoder") {
      auto& c = o.model.decoder;
      c.d_model = 32, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.d_ff = 64;
      c.dropout = 0.1;
      o.lr = 3e-3;
    } else if (type == "bert") {
      o.model.bert = models::bert_preset("bert-tiny");
      o.model.bert.vocab = 0;
      o.model.bert.dropout = 0.1;
      o.lr = 1e-3, o.beta2 = 0.98, o.eps = 1e-12, o.weight_decay = 0.01, o.clip = 0.5;
      o.schedule = "budget-one-cycle";
    } else {
      o.model.t5 = models::t5_preset("t5-tiny");
      o.model.t5.vocab = 0;
      o.model.t5.dropout = 0.1;
      o.optimizer = OptimizerKind::AdamWScale;
      o.lr = 1e-2, o.beta2 = 0.999, o.eps = 1e-6, o.weight_decay = 0;
    }
    o.warmup_steps = 2;
    o.budget = steps;
    o.log_every = 1;
    o.eval_every = 0;
    o.eval_batches = 2;
    o.save_every = 0;
    o.peak_gflops = 1;
    o.sample_tokens = 0;
    o.threads = 1;
    return o;
  }
};

// Built in the global environment's SetUp and removed in its TearDown, both inside
// RUN_ALL_TESTS, while MPI is up.
std::unique_ptr<Corpus> the_corpus;
class CorpusEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { the_corpus = std::make_unique<Corpus>(); }
  void TearDown() override { the_corpus.reset(); }
};
const auto* const corpus_environment =
    ::testing::AddGlobalTestEnvironment(new CorpusEnvironment);  // gtest owns it

const Corpus& corpus() {
  return *the_corpus;
}

struct LayoutCase {
  std::string name;
  int dp, tp, pp;
  std::string schedule = "1f1b";
};

// The layouts of the issue for this world size.
std::vector<LayoutCase> layouts() {
  const std::vector<LayoutCase> all = {
      {"DP2", 2, 1, 1},      {"TP2", 1, 2, 1},        {"PP2-gpipe", 1, 1, 2, "gpipe"},
      {"PP2-1f1b", 1, 1, 2}, {"DP2xTP2", 2, 2, 1},    {"TP2xPP2", 1, 2, 2},
      {"DP2xPP2", 2, 1, 2},  {"DP2xTP2xPP2", 2, 2, 2}};
  std::vector<LayoutCase> out;
  for (const auto& l : all)
    if (l.dp * l.tp * l.pp == world_size()) out.push_back(l);
  return out;
}

// Relative differences: per tensor ||a - b|| / ||b||, the largest over a checkpoint's tensors.
struct Diff {
  double params = 0, moments = 0;
  std::string worst_param;
};

double rel_norm(const Tensor& a, const Tensor& b) {
  const Tensor x = a.to(DType::f64), y = b.to(DType::f64);
  const double d = std::sqrt(sum(mul(sub(x, y), sub(x, y))).item<double>());
  const double n = std::sqrt(sum(mul(y, y)).item<double>());
  return n > 0 ? d / n : d;
}

Diff compare(const CheckpointState& got, const CheckpointState& want) {
  Diff d;
  EXPECT_EQ(got.model.size(), want.model.size());
  for (const auto& [name, t] : want.model) {
    auto it = got.model.find(name);
    if (it == got.model.end()) {
      ADD_FAILURE() << "parameter " << name << " missing";
      continue;
    }
    EXPECT_EQ(it->second.shape(), t.shape()) << name;
    if (it->second.shape() != t.shape()) continue;
    const double r = rel_norm(it->second, t);
    if (r > d.params) d.params = r, d.worst_param = name;
  }
  for (const auto& [param, states] : want.optim)
    for (const auto& [k, t] : states) {
      const Tensor& g = got.optim.at(param).at(k);
      if (g.shape() == t.shape()) d.moments = std::max(d.moments, rel_norm(g, t));
    }
  EXPECT_EQ(got.ints.at("loader_counter"), want.ints.at("loader_counter"));
  EXPECT_EQ(got.ints.at("tokens_consumed"), want.ints.at("tokens_consumed"));
  return d;
}

bool bitwise_equal(const CheckpointState& a, const CheckpointState& b) {
  auto same = [](const Tensor& x, const Tensor& y) {
    return x.shape() == y.shape() && x.dtype() == y.dtype() &&
           std::memcmp(x.contiguous().raw_data(), y.contiguous().raw_data(),
                       size_t(x.numel()) * x.element_size()) == 0;
  };
  if (a.model.size() != b.model.size()) return false;
  for (const auto& [n, t] : a.model)
    if (!b.model.count(n) || !same(t, b.model.at(n))) return false;
  for (const auto& [p, st] : a.optim)
    for (const auto& [k, t] : st)
      if (!same(t, b.optim.at(p).at(k))) return false;
  return true;
}

CheckpointState final_checkpoint(const TrainOptions& o, int64_t step) {
  return load_checkpoint(fs::path(o.run_dir) / checkpoint_dir_name(step));
}

// The one-process run, made by world rank 0 only (the others wait).
struct Reference {
  TrainResult result;
  CheckpointState checkpoint;
};
Reference reference(const TrainOptions& o) {
  Reference ref;
  if (world_rank() == 0) {
    std::ostringstream log;
    ref.result = train(o, log, parallel::Topology::single());
    ref.checkpoint = final_checkpoint(o, ref.result.step);
  }
  barrier();
  return ref;
}

TrainOptions with_layout(TrainOptions o, const LayoutCase& l) {
  o.parallel.dp = l.dp;
  o.parallel.tp = l.tp;
  o.parallel.pp = l.pp;
  o.parallel.schedule = parallel::parse_schedule_kind(l.schedule);
  o.parallel.timeout_s = 120;
  return o;
}

// f32 training against one process: the losses within 1e-5 relative, and after the last step
// every parameter within 1e-5 of the single-process one (relative L2 norm per tensor). Adam's
// moments are compared too (reported, and held to 1e-3: exp_avg_sq of near-zero gradients carries
// the summation-order noise squared).
// A training method that selects rows by their global sample index (every third dropped), so every
// layout trains on the rows one process trains on, split unevenly over the data-parallel ranks.
class DropEveryThirdSample final : public TrainingMethod {
 public:
  std::string_view name() const override { return "drop_third"; }
  void on_batch(StepContext&, std::vector<data::Batch>& micro_batches) override {
    for (data::Batch& b : micro_batches) {
      std::vector<int64_t> keep;
      for (int64_t r = 0; r < b.rows; ++r)
        if (b.global_index[size_t(r)] % 3 != 0) keep.push_back(r);
      b = select_rows(b, keep);
    }
  }
};
using MethodFactory = std::function<std::vector<std::unique_ptr<TrainingMethod>>()>;
// Another optimizer (or option) than the type's default: named in the run directories.
struct Variant {
  std::string name;
  std::function<void(TrainOptions&)> apply;
  bool pipeline = true;  // false: layouts with pp > 1 are skipped (the variant refuses them)
  bool tensor = true;    // false: layouts with tp > 1 are skipped
};

void check_equivalence(const std::string& type, const MethodFactory& methods = {},
                       const Variant& variant = {}) {
  const int steps = 5;
  const std::string tag =
      std::string(methods ? "-methods" : "") + (variant.name.empty() ? "" : "-" + variant.name);
  TrainOptions base =
      corpus().options(type, type + tag + "-ref-np" + std::to_string(world_size()), steps);
  if (variant.apply) variant.apply(base);
  // Dropout masks are keyed by a row's place in the one-process micro-batch (first + k * dp on a
  // data-parallel rank); once a method has dropped rows that place is not strided any more, so
  // layout-independent dropout under row selection needs per-row keys (issue 18). Until then the
  // selection is checked without dropout.
  if (methods) base.model.decoder.dropout = 0;
  Reference ref;
  if (world_rank() == 0) {
    std::ostringstream log;
    ref.result = train(base, log, parallel::Topology::single(),
                       methods ? methods() : std::vector<std::unique_ptr<TrainingMethod>>{});
    ref.checkpoint = final_checkpoint(base, ref.result.step);
  }
  barrier();
  for (const LayoutCase& l : layouts()) {
    if ((l.pp > 1 && !variant.pipeline) || (l.tp > 1 && !variant.tensor)) continue;
    SCOPED_TRACE(type + tag + " " + l.name);
    TrainOptions o = with_layout(base, l);
    o.run_dir = (corpus().root / "runs" / (type + tag + "-" + l.name)).string();
    std::ostringstream log;
    const TrainResult r =
        train(o, log, methods ? methods() : std::vector<std::unique_ptr<TrainingMethod>>{});
    ASSERT_EQ(r.step, steps) << log.str();
    ASSERT_EQ(r.losses.size(), size_t(steps));
    barrier();
    if (world_rank() != 0) continue;
    double loss_rel = 0;
    for (int i = 0; i < steps; ++i)
      loss_rel = std::max(loss_rel, std::abs(r.losses[size_t(i)] - ref.result.losses[size_t(i)]) /
                                        std::abs(ref.result.losses[size_t(i)]));
    const double valid_rel =
        std::abs(r.valid_loss - ref.result.valid_loss) / std::abs(ref.result.valid_loss);
    const Diff d = compare(final_checkpoint(o, steps), ref.checkpoint);
    std::printf(
        "equivalence %-7s%s %-12s %d steps: losses %.2e, validation loss %.2e, parameters "
        "%.2e (%s), Adam moments %.2e, token accuracy %.6f (one process %.6f)\n",
        type.c_str(), tag.c_str(), l.name.c_str(), steps, loss_rel, valid_rel, d.params,
        d.worst_param.c_str(), d.moments, r.valid_accuracy, ref.result.valid_accuracy);
    std::fflush(stdout);
    EXPECT_LE(loss_rel, 1e-5) << log.str();
    EXPECT_LE(valid_rel, 1e-5);
    EXPECT_LE(d.params, 1e-5) << "worst: " << d.worst_param;
    EXPECT_LE(d.moments, 1e-3);
    // Token accuracy in every layout, pipelines included (the last stage counts the hits).
    EXPECT_GT(ref.result.valid_accuracy, 0.0);
    EXPECT_NEAR(r.valid_accuracy, ref.result.valid_accuracy, 1e-12);
    if (l.dp == 1 && l.tp == 1) {
      // Pipeline parallelism alone does not reorder a sum (the tied BERT table aside).
      EXPECT_LE(loss_rel, 1e-12);
    }
  }
}

TEST(TrainEquivalence, Decoder) {
  check_equivalence("decoder");
}
// A method that selects rows: the loss shares and the trained-token count follow the rows kept
// (without dropout: see check_equivalence).
TEST(TrainEquivalence, DecoderWithRowSelection) {
  check_equivalence("decoder", [] {
    std::vector<std::unique_ptr<TrainingMethod>> m;
    m.push_back(std::make_unique<DropEveryThirdSample>());
    return m;
  });
}
TEST(TrainEquivalence, Bert) {
  check_equivalence("bert");
}
// Lion and Sophia-G (RMS-scaled, so tensor parallelism must take the whole tensor's RMS). Sophia's
// Hessian pass (every 2 steps here) runs through the step path, so its gradients are reduced as
// the step's, and its labels are drawn by global sample index (under pipelines by the last stage).
TEST(TrainEquivalence, DecoderLion) {
  check_equivalence("decoder", {}, {"lion", [](TrainOptions& o) {
                                      o.optimizer = OptimizerKind::Lion;
                                      o.lr = 0.15, o.beta2 = 0.99,
                                      o.rms_scale = true;  // lr_eff ~ 3e-3
                                    }});
}
Variant sophia(double lr, bool pipeline) {
  return {"sophiag",
          [lr](TrainOptions& o) {
            o.optimizer = OptimizerKind::SophiaG;
            o.lr = lr, o.beta1 = 0.965, o.beta2 = 0.99, o.rms_scale = true;
            o.hessian_every = 2, o.rho = 0.04;
          },
          pipeline};
}
TEST(TrainEquivalence, DecoderSophia) {
  check_equivalence("decoder", {}, sophia(0.15, true));
}
// BERT draws at its masked positions (its MLM head's logits, gathered under tensor parallelism),
// T5 at its targets with the decoder still reading the true labels; under pipelines their last
// stages draw.
TEST(TrainEquivalence, BertSophia) {
  check_equivalence("bert", {}, sophia(0.05, true));
}
// Adafactor (HF defaults: relative step, parameter scale) on T5, which nanoT5 compares it on; its
// factored moments are per whole tensor, so tensor parallelism is refused.
TEST(TrainEquivalence, T5Adafactor) {
  check_equivalence(
      "t5", {},
      {"adafactor", [](TrainOptions& o) { o.optimizer = OptimizerKind::Adafactor; }, true, false});
}
TEST(TrainEquivalence, T5Sophia) {
  check_equivalence("t5", {}, sophia(0.02, true));
}
TEST(TrainEquivalence, T5) {
  check_equivalence("t5");
}

// Stopping after 3 steps and resuming in the same layout gives the straight run's numbers bit
// for bit: checkpoint contents, and the losses of the resumed steps.
TEST(SameLayoutResume, BitExact) {
  if (world_size() == 8) GTEST_SKIP() << "covered on 2 and 4 ranks";
  const std::vector<LayoutCase> ls = layouts();
  ASSERT_FALSE(ls.empty());
  const LayoutCase& l = world_size() == 4 ? ls[0] : ls.back();  // np4: DP2xTP2; np2: PP2 1F1B
  const std::string type = world_size() == 4 ? "bert" : "t5";
  TrainOptions straight = with_layout(corpus().options(type, "resume-straight-" + l.name, 6), l);
  TrainOptions cut = with_layout(corpus().options(type, "resume-cut-" + l.name, 6), l);
  std::ostringstream log;
  const TrainResult a = train(straight, log);
  cut.stop_after = 3;
  const TrainResult b1 = train(cut, log);
  ASSERT_EQ(b1.step, 3);
  cut.stop_after = 0;
  cut.resume = "auto";
  const TrainResult b2 = train(cut, log);
  ASSERT_EQ(b2.resumed_from, 3);
  ASSERT_EQ(b2.step, 6);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(a.losses[size_t(3 + i)], b2.losses[size_t(i)]) << i;
  barrier();
  if (world_rank() == 0) {
    EXPECT_TRUE(bitwise_equal(final_checkpoint(straight, 6), final_checkpoint(cut, 6)))
        << type << " " << l.name;
    std::printf("same-layout resume %s %s: bitwise equal\n", type.c_str(), l.name.c_str());
  }
}

// Cross-layout resume (decoder): mpi_train_resume_save (4 ranks) trains DP2 x TP2 for 3 of 6
// steps and saves into $STRATA_RESUME_DIR, then world rank 0 resumes that checkpoint in one
// process; mpi_train_resume_pp2 (2 ranks) resumes it at PP2. Both finish the 6 steps and must
// equal the uninterrupted one-process run within the equivalence tolerance.
fs::path resume_dir() {
  const char* d = std::getenv("STRATA_RESUME_DIR");
  return d ? fs::path(d) : fs::path();
}

void expect_resumed_equals_straight(const TrainOptions& resumed, const TrainResult& r,
                                    const std::string& what) {
  TrainOptions straight = corpus().options("decoder", "cross-straight-" + what, 6);
  straight.parallel = {};
  const Reference ref = reference(straight);
  if (world_rank() != 0) return;
  ASSERT_EQ(r.step, 6);
  double loss_rel = 0;
  for (size_t i = 0; i < r.losses.size(); ++i)
    loss_rel = std::max(loss_rel, std::abs(r.losses[i] - ref.result.losses[3 + i]) /
                                      std::abs(ref.result.losses[3 + i]));
  const Diff d = compare(final_checkpoint(resumed, 6), ref.checkpoint);
  std::printf(
      "cross-layout resume DP2xTP2 -> %s: losses %.2e, parameters %.2e (%s), Adam "
      "moments %.2e\n",
      what.c_str(), loss_rel, d.params, d.worst_param.c_str(), d.moments);
  std::fflush(stdout);
  EXPECT_LE(loss_rel, 1e-5);
  EXPECT_LE(d.params, 1e-5) << d.worst_param;
}

TEST(CrossLayoutResume, SaveAtDp2Tp2ThenResumeInOneProcess) {
  if (resume_dir().empty() || world_size() != 4) GTEST_SKIP() << "run by mpi_train_resume_save";
  TrainOptions o = with_layout(corpus().options("decoder", "unused", 6), {"DP2xTP2", 2, 2, 1});
  o.run_dir = resume_dir().string();
  o.stop_after = 3;
  std::ostringstream log;
  if (world_rank() == 0) fs::remove_all(o.run_dir);
  barrier();
  ASSERT_EQ(train(o, log).step, 3) << log.str();
  barrier();
  TrainOptions resumed = corpus().options("decoder", "cross-resumed-single", 6);
  resumed.resume = (resume_dir() / checkpoint_dir_name(3)).string();
  TrainResult r;
  if (world_rank() == 0) r = train(resumed, log, parallel::Topology::single());
  barrier();
  expect_resumed_equals_straight(resumed, r, "one process");
}

TEST(CrossLayoutResume, ResumeAtPp2) {
  if (resume_dir().empty() || world_size() != 2) GTEST_SKIP() << "run by mpi_train_resume_pp2";
  TrainOptions o =
      with_layout(corpus().options("decoder", "cross-resumed-pp2", 6), {"PP2", 1, 1, 2});
  o.resume = (resume_dir() / checkpoint_dir_name(3)).string();
  std::ostringstream log;
  const TrainResult r = train(o, log);
  ASSERT_EQ(r.resumed_from, 3) << log.str();
  expect_resumed_equals_straight(o, r, "PP2");
}

}  // namespace
}  // namespace strata::train
