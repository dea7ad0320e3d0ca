#pragma once
// A Task is a model together with the objective it trains on, seen from the trainer: it turns a
// data::Batch into a loss, counts evaluation hits, names its FLOPs, and writes (and rebuilds
// itself from) the model description a checkpoint stores. The trainer (train/trainer.h) is the
// same loop for every task; one file per model family implements this interface:
//   decoder  causal LM (models/decoder_lm.h)          train/decoder_task.cpp
//   bert     crammed BERT MLM (models/bert.h)         train/bert_task.cpp
//   t5       T5 v1.1 span corruption (models/t5.h)    train/t5_task.cpp
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "data/objectives.h"
#include "data/tokenizer.h"
#include "models/bert.h"
#include "models/decoder_lm.h"
#include "models/t5.h"
#include "parallel/communicator.h"
#include "parallel/pipeline_stage_compute.h"
#include "train/checkpoint.h"

namespace strata::train {

// What to build. Only the config of `type` is read.
struct ModelSpec {
  std::string type = "decoder";  // decoder | bert | t5
  models::DecoderConfig decoder;
  models::BertConfig bert;
  models::T5Config t5;
};

struct ObjectiveSpec {
  int64_t seq_len = 128;          // decoder and BERT: tokens per row; T5: encoder input length
  double mlm_probability = 0.15;  // BERT: tokens selected for prediction
  double noise_density = 0.15;    // T5: fraction of tokens corrupted
  double mean_span = 3.0;         // T5: mean noise span length

  template <class V>
  void visit_options(V& v) {
    v("data.seq_len", seq_len,
      "tokens per sample (T5: encoder input length; the targets follow from the noise density)");
    v("objective.mlm_probability", mlm_probability,
      "bert: fraction of tokens selected for prediction (80% [MASK], 10% random, 10% kept)");
    v("objective.noise_density", noise_density, "t5: fraction of tokens corrupted");
    v("objective.mean_span", mean_span, "t5: mean length of a corrupted span");
  }
};

// Evaluation totals over some batches.
struct EvalCounts {
  double loss_sum = 0;  // sum over batches of the batch's mean loss
  int64_t batches = 0;
  int64_t correct = 0, counted = 0;  // argmax hits among the positions that carry a loss
  double loss() const { return batches ? loss_sum / double(batches) : 0.0; }
  double accuracy() const { return counted ? double(correct) / double(counted) : 0.0; }
};

// Where a task sits in a parallel job (the trainer derives it from parallel::Topology). The
// default is one process holding the whole model.
struct TaskPlacement {
  parallel::Communicator* tp = nullptr;  // tensor-parallel group (null or size 1: none)
  int pp_stages = 1;                     // pipeline: this task builds stage pp_stage of pp_stages
  int pp_stage = 0;                      //   (blocks balanced, models::StageLayout::balanced)
  bool pipelined() const { return pp_stages > 1; }
};

struct SampleOptions {
  std::string prompt = "The";  // the decoder continues it; T5 and BERT show a validation row
  int64_t max_new_tokens = 48;
  // Decoder sampling (T5 decodes greedily): argmax, or temperature / top-k / nucleus sampling.
  bool greedy = false;
  double temperature = 0.8;
  int64_t top_k = 40;
  double top_p = 1.0;
  uint64_t seed = 0;
  // A decoder's context (model.max_seq) holds the prompt and the new tokens: asking for more
  // is cut to fit (the sample at the end of training), or an error naming the most that fit
  // (`strata generate`, where the user asked for a number).
  bool clip_to_context = true;
};

class Task {
 public:
  virtual ~Task() = default;

  virtual std::string_view kind() const = 0;  // "decoder", "bert", "t5"
  virtual models::Module& module() = 0;
  virtual std::shared_ptr<const data::Objective> objective() const = 0;

  // Keys the model's dropout masks (Philox step counter).
  virtual void set_step(uint64_t step) = 0;
  // The rows of every batch given to this task are rows first, first + stride, ... of the batch
  // one process would see (a data-parallel rank's rows), so dropout draws one process's masks.
  virtual void set_batch_rows(int64_t first, int64_t stride) = 0;
  // Mean loss of one batch, with autograd history.
  virtual Tensor loss(const data::Batch& batch) = 0;
  // Adds one batch's loss and hits to `counts` (caller holds NoGradGuard and eval mode).
  virtual void evaluate(const data::Batch& batch, EvalCounts& counts) = 0;

  // Input tokens per batch row (what tokens/s and a token budget count) and the training FLOPs
  // (forward + backward, PaLM convention) of one row.
  virtual int64_t tokens_per_row() const = 0;
  virtual double flops_per_row() const = 0;
  // One line: parameter counts and shapes, for the run log.
  virtual std::string describe() const = 0;

  // What the model does at the end of a run, as text: the decoder continues the prompt, T5
  // fills the spans of the first validation row, BERT predicts its masked tokens.
  virtual std::string sample(const data::Tokenizer& tokenizer, const data::Batch& valid_batch,
                             const SampleOptions& options) = 0;
  // `strata generate`: the decoder continues `prompt`; T5 decodes greedily from it as encoder
  // input. BERT has no generation and throws saying so.
  virtual std::string generate(const data::Tokenizer& tokenizer, std::string_view prompt,
                               const SampleOptions& options) = 0;

  // Sophia-G's Gauss-Newton-Bartlett pass (optim/sophia.h, train/methods/sophia_hessian.h): while
  // a key is set, loss() takes its cross-entropy against labels drawn from the model's own
  // softmax (sample_labels, no gradient through the draw) at every position that carries a loss,
  // instead of the batch's targets; std::nullopt restores the targets. Through loss(), the
  // step path's data-parallel weighting and reduction apply unchanged. Tasks without it throw
  // naming the fix.
  virtual void set_label_sampling(std::optional<RandomKey> key);
  // Pipeline parallelism (a task made with placement.pipelined()): the task holds only its stage,
  // which the trainer runs through parallel::PipelineExecutor; loss, evaluate, sample and
  // generate then throw. Null for a whole model.
  virtual parallel::StageCompute* stage() { return nullptr; }
  // The micro-batches of one step (or the one batch of an evaluation), the same on every stage.
  virtual void set_stage_batches(const std::vector<data::Batch>& batches);
  // After the last stage's forward-only pass over one batch in eval mode: adds that batch's argmax
  // hits and counted positions to `counts` (nothing on other stages or for a whole model).
  virtual void add_stage_hits(EvalCounts& counts) const = 0;

  // Writes "model" (the kind), "model.*" (the config) and "objective.*" into a checkpoint's
  // trainer state; make_task(state, ...) rebuilds the same task from them.
  virtual void save_spec(CheckpointState& state) const = 0;
};

// A fresh task, initialised from `seed`. A model vocab of 0 takes the tokenizer's; the tokenizer
// must have what the objective needs (BERT: [MASK]/[CLS]/[SEP]; T5: sentinels), or this throws
// naming the tokenizer style to use. `placement` splits it over a parallel job: every parameter
// keeps its name and its slice of the single-process initialisation.
std::unique_ptr<Task> make_task(const ModelSpec& model, const ObjectiveSpec& objective,
                                const data::Tokenizer& tokenizer, uint64_t seed,
                                const TaskPlacement& placement = {});

// The task a checkpoint was trained with, its weights loaded, in eval mode.
std::unique_ptr<Task> make_task(const CheckpointState& state, const data::Tokenizer& tokenizer);

// Batch vectors as tensors.
Tensor batch_ids(const std::vector<int32_t>& values, int64_t rows, int64_t cols);
// Target positions that carry a loss (not the ignore index -100): what a batch's mean loss
// divides by, for every task.
int64_t loss_positions(const data::Batch& batch);
// Labels drawn from softmax(logits) at each position of logits [rows, L, V] whose target
// (targets [rows, L]) is not -100 (-100 elsewhere), as an i64 tensor of targets' shape on the
// CPU. Position (r, c) draws by inverse CDF (in f64, vocabulary order) with the uniform
// Philox(key.seed, key.stream, key.step).uniform_f64(key.index_offset + row_ids[r] * L + c):
// with the rows' global sample indices as row_ids, a pure function of the key and the data, the
// same in any data-parallel layout and after a resume.
Tensor sample_labels(const Tensor& logits, const Tensor& targets, const RandomKey& key,
                     const std::vector<uint64_t>& row_ids);
// Each loss position's global place, global_index[r] * target_len + c, for the positions whose
// target is not -100 in row-major order (BERT's masked positions as its MLM head orders them).
std::vector<uint64_t> loss_position_ids(const data::Batch& batch);

}  // namespace strata::train
