#pragma once
// The training loop, one for every model (train/task.h: the decoder LM, BERT, T5): data from
// prepared shards, gradient accumulation, AdamW/AdamWScale with global-norm clipping, a schedule
// driven by a budget clock, periodic evaluation on the held-out split, JSONL metrics, crash-safe
// checkpoints and exact resume. The same (options, seed) gives the same numbers; a resumed run
// equals the straight one bit for bit (tests/train/trainer_test.cpp). Under MPI the same loop runs
// in any DP x TP x PP layout with the single-process numbers up to f32 summation order
// (tests/parallel/train_parallel_mpitest.cpp; docs/parallelism.md, "Training in parallel").
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "train/task.h"

namespace strata::parallel {
class Topology;
}

namespace strata::train {

// The DP x TP x PP layout of a run (docs/parallelism.md, "Training in parallel"). The product
// must equal the number of MPI ranks; one process is DP1 x TP1 x PP1.
struct ParallelOptions {
  int dp = 0;  // 0: inferred from the world size
  int tp = 1;
  int pp = 1;
  std::string schedule = "1f1b";  // gpipe | 1f1b (pp > 1)
  // Micro-batches per step under pp > 1 (0: grad_accum); when set it replaces grad_accum, so a
  // step is micro_batches x micro_batch sequences either way.
  int64_t micro_batches = 0;
  double timeout_s = 300;  // a rank waiting longer than this in a collective aborts the job
};

struct TrainOptions {
  // Run.
  std::string run_dir = "runs/decoder";
  std::string resume = "auto";  // auto: newest good checkpoint in run_dir; none; or a step_ dir
  uint64_t seed = 1234;
  int threads = 0;  // 0: all cores
  // cpu, cuda (under mpirun: the node-local rank's GPU) or cuda:N. The model, optimizer state
  // and batches live there; checkpoints do not depend on it (saved from host copies, loaded onto
  // the run's device). A GPU needs a build with -DSTRATA_CUDA=ON.
  std::string device = "cpu";
  std::string config_text;  // stored in checkpoints

  // Data (directories written by `strata prepare`).
  std::string train_data;
  std::string valid_data;
  std::string tokenizer;
  int64_t micro_batch = 16;
  int64_t grad_accum = 1;

  // Model and objective (objective.seq_len is the sample length).
  ModelSpec model;
  ObjectiveSpec objective;

  // Optimisation.
  std::string optimizer = "adamw";  // adamw | adamwscale
  double lr = 1e-3, weight_decay = 0.1, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, clip = 1.0;
  std::string schedule = "cosine";  // a name optim::make_schedule knows
  int64_t warmup_steps = 50;
  double final_lr = 1e-5;

  // Budget: the schedule fully decays exactly at its end.
  std::string budget_unit = "steps";  // steps | tokens | seconds
  double budget = 500;

  // Observability and checkpoints.
  int64_t log_every = 25;
  int64_t eval_every = 250;  // 0: only at the end
  int64_t eval_batches = 8;
  int64_t save_every = 250;  // 0: only at the end
  int keep_last = 3;
  double peak_gflops = 0;  // per run, for MFU; 0: measured at start-up
  std::string sample_prompt = "The ";
  int64_t sample_tokens = 64;
  // Stop (after saving) once this process has run this many steps: an interrupted run, for tests.
  int64_t stop_after = 0;

  ParallelOptions parallel;
};

struct TrainResult {
  int64_t step = 0;            // steps completed in total (including before a resume)
  int64_t resumed_from = 0;    // the checkpoint step this process started from (0: fresh)
  std::vector<double> losses;  // training loss of each step this process ran
  double valid_loss = 0, valid_accuracy = 0;
  std::string sample;  // what Task::sample printed at the end
};

// Trains in the layout of options.parallel: one process, or this rank's part of an MPI job (MPI
// initialised by the caller, parallel::MpiEnv). Every rank returns the same losses; only world
// rank 0 writes `log` and metrics.jsonl.
TrainResult train(const TrainOptions& options, std::ostream& log);
// The same on a given topology (options.parallel's dp/tp/pp are ignored): tests run a
// one-process reference with parallel::Topology::single() inside an MPI job.
TrainResult train(const TrainOptions& options, std::ostream& log,
                  const parallel::Topology& topology);

// A trained model rebuilt from a checkpoint written by train(): the task with its weights (eval
// mode), the tokenizer the run used, and the step.
struct LoadedTask {
  std::unique_ptr<data::Tokenizer> tokenizer;
  std::unique_ptr<Task> task;
  int64_t step = 0;
};
LoadedTask load_trained(const std::string& checkpoint_dir);

}  // namespace strata::train
