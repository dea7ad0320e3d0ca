// Pipeline parallelism over MPI: one process per stage (PP = the world size: 2, and 4
// oversubscribed), GPipe and 1F1B over 4 micro-batches, for the decoder LM, BERT and T5. Each rank
// checks its stage's loss, gradients and parameters after 3 AdamW steps against the whole model
// run in the same process (pipeline_parity.h): within 1e-5 in f32 and 1e-11 in f64, and bitwise
// where no weight is tied across stages.
#include <gtest/gtest.h>
#include <mpi.h>

#include <memory>
#include <string>

#include "parallel/topology.h"
#include "tests/parallel/pipeline_cases.h"

namespace strata::parallel::testing {
namespace {

class PipelineEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    int world = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    topo_ = std::make_unique<Topology>(Topology::create(Layout{1, 1, world}));
    topo_->set_timeout(std::chrono::seconds(120));
  }
  void TearDown() override { topo_.reset(); }
  static Topology& topo() { return *topo_; }

 private:
  static inline std::unique_ptr<Topology> topo_;
};
const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new PipelineEnvironment);

Communicator& pp() {
  return PipelineEnvironment::topo().pp();
}

int stages() {
  return pp().size();
}

CaseOptions opts(ScheduleKind kind, DType dtype = DType::f32) {
  CaseOptions o;
  o.kind = kind;
  o.dtype = dtype;
  return o;
}

models::DecoderConfig decoder_config(bool tied = false) {
  models::DecoderConfig c = models::testing::tiny_config(tied);
  c.n_layers = std::max(2, stages());
  return c;
}

TEST(PipelineMpi, EveryRankIsAStage) {
  const Topology& t = PipelineEnvironment::topo();
  EXPECT_EQ(t.layout().pp, t.world_size());
  EXPECT_EQ(pp().rank(), t.world_rank());
  EXPECT_EQ(t.is_first_stage(), pp().rank() == 0);
  EXPECT_EQ(t.is_last_stage(), pp().rank() == stages() - 1);
}

TEST(PipelineMpi, DecoderGPipeAndOneFOneB) {
  for (ScheduleKind k : {ScheduleKind::GPipe, ScheduleKind::OneFOneB}) {
    check_decoder(pp(), decoder_config(), opts(k));
    check_decoder(pp(), decoder_config(), opts(k, DType::f64));
  }
}

TEST(PipelineMpi, DecoderTiedEmbeddings) {
  check_decoder(pp(), decoder_config(true), opts(ScheduleKind::OneFOneB));
}

TEST(PipelineMpi, BertGPipeAndOneFOneB) {
  for (ScheduleKind k : {ScheduleKind::GPipe, ScheduleKind::OneFOneB})
    check_bert(pp(), bert_config(std::max(2, stages())), opts(k));
  check_bert(pp(), bert_config(std::max(2, stages())), opts(ScheduleKind::OneFOneB, DType::f64));
}

TEST(PipelineMpi, T5GPipeAndOneFOneB) {
  // 2 + 2 blocks: PP2 puts the encoder on stage 0 and the decoder on stage 1; PP4 gives each
  // stage one block, so two decoder stages receive the memory.
  for (ScheduleKind k : {ScheduleKind::GPipe, ScheduleKind::OneFOneB})
    check_t5(pp(), t5_config(2, 2), opts(k));
  check_t5(pp(), t5_config(2, 2), opts(ScheduleKind::OneFOneB, DType::f64));
}

// Pipeline and tensor parallelism together (4 ranks: TP2 x PP2): each stage's blocks, embedding
// and head are split over its tp group, the activations travel between the stages of one tp rank.
TEST(PipelineMpi, DecoderWithTensorParallelStages) {
  if (stages() != 4) GTEST_SKIP() << "needs 4 ranks";
  Topology topo = Topology::create(Layout{1, 2, 2});
  topo.set_timeout(std::chrono::seconds(120));
  for (bool tied : {false, true}) {
    CaseOptions o = opts(ScheduleKind::OneFOneB);
    o.tp = &topo.tp();
    models::DecoderConfig cfg = models::testing::tiny_config(tied);
    cfg.n_layers = 2;
    check_decoder(topo.pp(), cfg, o);
  }
}

TEST(PipelineMpi, MoreStagesThanLayersIsAnError) {
  models::DecoderConfig cfg = models::testing::tiny_config();
  cfg.n_layers = stages() - 1;
  if (cfg.n_layers == 0) cfg.n_layers = 1;
  try {
    models::DecoderStage stage(cfg, 1, models::StageLayout::balanced(cfg.n_layers, stages()),
                               pp().rank());
    FAIL() << "no error for " << stages() << " stages over " << cfg.n_layers << " layers";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("every stage needs at least one block"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace strata::parallel::testing
