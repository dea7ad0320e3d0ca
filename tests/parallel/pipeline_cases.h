#pragma once
// The parity cases of each model: one rank of a pp group builds its stage and checks it against
// the whole model (pipeline_parity.h). Used by the in-process and the MPI tests alike.
#include <memory>
#include <optional>

#include "models/pipeline_stage_bert.h"
#include "models/pipeline_stage_decoder.h"
#include "models/pipeline_stage_t5.h"
#include "tests/parallel/pipeline_parity.h"

namespace strata::parallel::testing {

using models::testing::random_ids;

// Micro-batch i of a global batch: rows [i * b, (i + 1) * b).
inline Tensor rows_of(const Tensor& t, int64_t i, int64_t m) {
  const int64_t b = t.size(0) / m;
  return t.narrow(0, i * b, b).contiguous();
}

struct CaseOptions {
  ScheduleKind kind = ScheduleKind::OneFOneB;
  int64_t micro_batches = 4;
  int64_t micro_batch_rows = 2;
  int64_t seq_len = 8;
  DType dtype = DType::f32;
  int steps = 3;
  std::optional<models::StageLayout> layout;  // default: balanced
  // Tensor parallelism inside each stage (the reference stays one process).
  Communicator* tp = nullptr;
  Fault fault = Fault::None;
  // Where to put what failed instead of failing the test (for the tests of the check itself).
  std::vector<std::string>* failures = nullptr;
};

// Runs the case and reports what failed, as CaseOptions asks.
inline void finish(Communicator& pp, const PipelineSchedule& schedule, ParityCase& c,
                   const CaseOptions& o) {
  c.fault = o.fault;
  if (o.failures == nullptr) return run_parity(pp, schedule, c, o.dtype, o.steps);
  *o.failures = parity_failures(pp, schedule, c, o.dtype, o.steps);
}

inline void check_decoder(Communicator& pp, const models::DecoderConfig& cfg,
                          const CaseOptions& o) {
  const uint64_t seed = 7;
  const int p = pp.size();
  const int64_t m = o.micro_batches, B = m * o.micro_batch_rows, L = o.seq_len;
  const PipelineSchedule schedule(o.kind, p, m);
  const models::StageLayout layout =
      o.layout ? *o.layout : models::StageLayout::balanced(cfg.n_layers, p);
  models::DecoderConfig stage_cfg = cfg;
  stage_cfg.tp = o.tp;
  models::DecoderStage stage(stage_cfg, seed, layout, pp.rank());
  models::DecoderLM ref(cfg, seed), shadow(cfg, seed);
  std::vector<models::DecoderMicroBatch> mbs;

  ParityCase c;
  const bool tp = o.tp != nullptr && o.tp->size() > 1;
  c.what = case_name(cfg.tie_embeddings ? "decoder(tied)" : "decoder", schedule, o.dtype) +
           (tp ? " TP" + std::to_string(o.tp->size()) : "");
  c.stage = &stage;
  c.compute = &stage;
  c.ref = &ref;
  c.shadow = &shadow;
  c.micro_batches = m;
  // Tensor parallelism sums partial products in another order.
  c.bitwise = (!cfg.tie_embeddings || p == 1) && !tp;
  // Both orders' roundings (tensor parallelism and the tied replicas) reach the weights through
  // AdamW, whose m / sqrt(v) magnifies differences in gradient elements near zero.
  if (tp && cfg.tie_embeddings) c.param_tolerance = 1e-4;
  c.load_step = [&](int step) {
    const Tensor ids = random_ids(B, L, cfg.vocab, 100 + uint64_t(step));
    const Tensor targets = random_ids(B, L, cfg.vocab, 200 + uint64_t(step));
    mbs.clear();
    for (int64_t i = 0; i < m; ++i) mbs.push_back({rows_of(ids, i, m), rows_of(targets, i, m)});
    stage.set_micro_batches(mbs);
    stage.set_step(uint64_t(step));
    ref.set_step(uint64_t(step));
    shadow.set_step(uint64_t(step));
  };
  c.micro_batch_loss = [&](models::Module& model, int64_t i) {
    return static_cast<models::DecoderLM&>(model).loss(mbs[size_t(i)].ids, mbs[size_t(i)].targets);
  };
  finish(pp, schedule, c, o);
}

// Rows with a padded tail: row r keeps L - (r % 3) real tokens (as i64 0/1).
inline Tensor padded_tail_mask(int64_t B, int64_t L) {
  std::vector<int64_t> keep;
  for (int64_t r = 0; r < B; ++r)
    for (int64_t j = 0; j < L; ++j) keep.push_back(j < L - (r % 3) ? 1 : 0);
  return from_vector<int64_t>(keep, {B, L});
}

// Labels with -100 where `pick` (ids in [0, 4)) is not 0: about a quarter of the positions are
// predicted, a different number in every micro-batch.
inline Tensor sparse_labels(const Tensor& targets, const Tensor& pick) {
  auto t = targets.to(DType::i64).contiguous().to_vector<int64_t>();
  const auto p = pick.to(DType::i64).contiguous().to_vector<int64_t>();
  for (size_t i = 0; i < t.size(); ++i)
    if (p[i] != 0) t[i] = -100;
  return from_vector<int64_t>(t, targets.shape());
}

inline models::BertConfig bert_config(int64_t layers) {
  models::BertConfig c;
  c.vocab = 64;
  c.d_model = 32;
  c.n_layers = layers;
  c.n_heads = 2;
  c.d_ff = 64;
  c.max_seq = 16;
  return c;
}

inline void check_bert(Communicator& pp, const models::BertConfig& cfg, const CaseOptions& o) {
  const uint64_t seed = 11;
  const int p = pp.size();
  const int64_t m = o.micro_batches, B = m * o.micro_batch_rows, L = o.seq_len;
  const PipelineSchedule schedule(o.kind, p, m);
  const models::StageLayout layout =
      o.layout ? *o.layout : models::StageLayout::balanced(cfg.n_layers, p);
  models::BertStage stage(cfg, seed, layout, pp.rank());
  models::BertMLM ref(cfg, seed), shadow(cfg, seed);
  std::vector<models::BertMicroBatch> mbs;

  ParityCase c;
  c.what = case_name("bert", schedule, o.dtype);
  c.stage = &stage;
  c.compute = &stage;
  c.ref = &ref;
  c.shadow = &shadow;
  c.micro_batches = m;
  c.bitwise = p == 1;  // the MLM decoder is tied to the word embedding
  c.load_step = [&](int step) {
    // Ids include the pad id 0, whose lookups send the table no gradient.
    const Tensor ids = random_ids(B, L, cfg.vocab, 300 + uint64_t(step));
    const Tensor labels = sparse_labels(random_ids(B, L, cfg.vocab, 400 + uint64_t(step)),
                                        random_ids(B, L, 4, 500 + uint64_t(step)));
    const Tensor mask = ne(padded_tail_mask(B, L), scalar_tensor(0, DType::i64));
    mbs.clear();
    for (int64_t i = 0; i < m; ++i)
      mbs.push_back({rows_of(ids, i, m), rows_of(labels, i, m), rows_of(mask, i, m)});
    stage.set_micro_batches(mbs);
    stage.set_step(uint64_t(step));
    ref.set_step(uint64_t(step));
    shadow.set_step(uint64_t(step));
  };
  c.micro_batch_loss = [&](models::Module& model, int64_t i) {
    const models::BertMicroBatch& mb = mbs[size_t(i)];
    return static_cast<models::BertMLM&>(model).mlm_loss(mb.ids, mb.labels, mb.mask);
  };
  finish(pp, schedule, c, o);
}

inline models::T5Config t5_config(int64_t encoder_layers, int64_t decoder_layers) {
  models::T5Config c;
  c.vocab = 64;
  c.d_model = 32;
  c.d_kv = 8;
  c.n_heads = 4;
  c.d_ff = 64;
  c.n_layers = encoder_layers;
  c.n_decoder_layers = decoder_layers;
  c.relative_buckets = 8;
  c.relative_max_distance = 16;
  return c;
}

// Encoder inputs of seq_len tokens, decoder targets of seq_len - 2 (different lengths catch a
// mixed-up shape), an integer encoder mask with padded tails and -100 at the labels' tails.
inline void check_t5(Communicator& pp, const models::T5Config& cfg, const CaseOptions& o) {
  const uint64_t seed = 13;
  const int p = pp.size();
  const int64_t m = o.micro_batches, B = m * o.micro_batch_rows, Ls = o.seq_len, Lt = Ls - 2;
  const PipelineSchedule schedule(o.kind, p, m);
  const int64_t blocks = models::T5Stage::num_blocks(cfg);
  const models::StageLayout layout =
      o.layout ? *o.layout : models::StageLayout::balanced(blocks, p);
  models::T5Stage stage(cfg, seed, layout, pp.rank());
  models::T5Model ref(cfg, seed), shadow(cfg, seed);
  std::vector<models::T5MicroBatch> mbs;

  ParityCase c;
  c.what = case_name(cfg.share_position_bias ? "t5" : "t5(own bias)", schedule, o.dtype) + " " +
           layout.str();
  c.stage = &stage;
  c.compute = &stage;
  c.ref = &ref;
  c.shadow = &shadow;
  c.micro_batches = m;
  c.bitwise = true;
  c.load_step = [&](int step) {
    const Tensor ids = random_ids(B, Ls, cfg.vocab, 600 + uint64_t(step));
    const Tensor mask = padded_tail_mask(B, Ls);
    const Tensor labels = sparse_labels(random_ids(B, Lt, cfg.vocab, 700 + uint64_t(step)),
                                        eq(padded_tail_mask(B, Lt), scalar_tensor(0, DType::i64)));
    mbs.clear();
    for (int64_t i = 0; i < m; ++i)
      mbs.push_back({rows_of(ids, i, m), rows_of(labels, i, m), rows_of(mask, i, m)});
    stage.set_micro_batches(mbs);
    stage.set_step(uint64_t(step));
    ref.set_step(uint64_t(step));
    shadow.set_step(uint64_t(step));
  };
  c.micro_batch_loss = [&](models::Module& model, int64_t i) {
    const models::T5MicroBatch& mb = mbs[size_t(i)];
    return static_cast<models::T5Model&>(model).loss(mb.input_ids, mb.labels, mb.encoder_mask);
  };
  finish(pp, schedule, c, o);
}

}  // namespace strata::parallel::testing
