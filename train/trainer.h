#pragma once
// The training loop, one for every model (train/task.h: the decoder LM, BERT, T5): data from
// prepared shards, gradient accumulation, AdamW/AdamWScale with global-norm clipping, a schedule
// driven by a budget clock, periodic evaluation on the held-out split, JSONL metrics, crash-safe
// checkpoints and exact resume. The same (options, seed) gives the same numbers; a resumed run
// equals the straight one bit for bit (tests/train/trainer_test.cpp). Under MPI the same loop runs
// in any DP x TP x PP layout with the single-process numbers up to f32 summation order
// (tests/parallel/train_parallel_mpitest.cpp; docs/parallelism.md, "Training in parallel").
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/option_names.h"
#include "optim/clock.h"
#include "parallel/pipeline_schedule.h"
#include "train/task.h"
#include "train/training_method.h"

namespace strata::parallel {
class Topology;
struct Layout;
}  // namespace strata::parallel

namespace strata::train {

// The DP x TP x PP layout of a run (docs/parallelism.md, "Training in parallel"). The product
// must equal the number of MPI ranks; one process is DP1 x TP1 x PP1.
struct ParallelOptions {
  int dp = 0;  // 0: inferred from the world size
  int tp = 1;
  int pp = 1;
  parallel::ScheduleKind schedule = parallel::ScheduleKind::OneFOneB;  // under pp > 1
  // Micro-batches per step under pp > 1 (0: grad_accum); when set it replaces grad_accum, so a
  // step is micro_batches x micro_batch sequences either way.
  int64_t micro_batches = 0;
  double timeout_s = 300;  // a rank waiting longer than this in a collective aborts the job

  template <class V>
  void visit_options(V& v) {
    v("parallel.dp", dp, "data-parallel replicas (0: the number of ranks / (tp * pp))");
    v("parallel.tp", tp,
      "tensor-parallel ranks per layer (heads, d_ff and the vocabulary must divide)");
    v("parallel.pp", pp,
      "pipeline stages (at most the model's blocks; T5 counts encoder + decoder blocks)");
    v("parallel.schedule", schedule, "pipeline schedule", parallel::schedule_kind_names());
    v("parallel.micro_batches", micro_batches,
      "micro-batches per step under pp > 1 (0: data.grad_accum)");
    v("parallel.timeout", timeout_s,
      "seconds a rank waits in a collective before the job aborts naming it");
  }
};

enum class OptimizerKind { AdamW, AdamWScale, Lion, SophiaG, Adafactor };
inline const OptionNames<OptimizerKind>& optimizer_names() {
  static const OptionNames<OptimizerKind> names{{"adamw", OptimizerKind::AdamW},
                                                {"adamwscale", OptimizerKind::AdamWScale},
                                                {"lion", OptimizerKind::Lion},
                                                {"sophiag", OptimizerKind::SophiaG},
                                                {"adafactor", OptimizerKind::Adafactor}};
  return names;
}

// The budget units: optimizer steps, trained tokens, wall seconds, reference seconds (RST, from a
// `strata calibrate` table) and analytic FLOPs (train/budget_costs.h).
inline const OptionNames<optim::ClockKind>& budget_unit_names() {
  static const OptionNames<optim::ClockKind> names{{"steps", optim::ClockKind::steps},
                                                   {"tokens", optim::ClockKind::tokens},
                                                   {"seconds", optim::ClockKind::seconds},
                                                   {"rst", optim::ClockKind::reference_seconds},
                                                   {"flops", optim::ClockKind::flops}};
  return names;
}

// Every option of `strata train` but the model's (ModelSpec) and the data preparation's
// (launch/): declared once, in visit_options, with these initial values as the defaults.
struct TrainOptions {
  // Run.
  std::string run_dir;          // empty: runs/<preset> (filled in by launch/)
  std::string resume = "auto";  // auto: newest good checkpoint in run_dir; none; or a step_ dir
  uint64_t seed = 1234;
  int threads = 0;  // 0: all cores
  // cpu, cuda (under mpirun: the node-local rank's GPU) or cuda:N. The model, optimizer state
  // and batches live there; checkpoints do not depend on it (saved from host copies, loaded onto
  // the run's device). A GPU needs a build with -DSTRATA_CUDA=ON.
  std::string device = "cpu";
  std::string config_text;  // stored in checkpoints

  // Data (directories written by `strata prepare`; empty: derived by launch/ from the data dir).
  std::string train_data;
  std::string valid_data;
  std::string tokenizer;
  int64_t micro_batch = 16;
  int64_t grad_accum = 1;

  // Model and objective (objective.seq_len is the sample length).
  ModelSpec model;
  ObjectiveSpec objective;

  // Optimisation.
  OptimizerKind optimizer = OptimizerKind::AdamW;
  double lr = 2e-3, weight_decay = 0.1, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, clip = 1.0;
  // Lion, Sophia-G and Adafactor (docs/optim.md): only the options of the chosen optimizer apply.
  bool rms_scale = false;           // lion, sophiag: NTNG T5's lr * max(1e-3, RMS(p))
  double rho = 0.04;                // sophiag: clipping threshold
  int64_t hessian_every = 10;       // sophiag: k, steps between Hessian passes
  double hessian_batch_tokens = 0;  // sophiag: B of the clip (0: the tokens of one step)
  bool relative_step = true;        // adafactor: HF's relative_step (then optim.lr is unused)
  bool scale_parameter = true;      // adafactor: scale the step by max(1e-3, RMS(p))
  bool warmup_init = false;         // adafactor: relative step min(1e-6 t, 1/sqrt(t))
  bool adafactor_momentum = false;  // adafactor: HF beta1 = optim.beta1 (false: None)
  std::string schedule = "cosine";  // a name optim::make_schedule knows
  int64_t warmup_steps = 30;
  double final_lr = 2e-5;

  // Budget: the schedule fully decays exactly at its end.
  optim::ClockKind budget_unit = optim::ClockKind::steps;
  double budget = 300;
  std::string rst_table;  // budget.unit rst: the reference costs `strata calibrate` wrote

  // Observability and checkpoints.
  int64_t log_every = 10;
  int64_t eval_every = 100;  // 0: only at the end
  int64_t eval_batches = 8;
  int64_t save_every = 100;  // 0: only at the end
  int keep_last = 3;
  double peak_gflops = 0;  // per run, for MFU; 0: measured at start-up
  // No trailing space: an INI value cannot keep one (Boost trims it), so --dump-config could not
  // reproduce it.
  std::string sample_prompt = "The";
  int64_t sample_tokens = 48;
  // Stop (after saving) once this process has run this many steps: an interrupted run, for tests.
  int64_t stop_after = 0;

  ParallelOptions parallel;

  template <class V>
  void visit_options(V& v) {
    v("run.dir", run_dir, "run directory: checkpoints and metrics.jsonl (empty: runs/<preset>)");
    v("run.resume", resume,
      "auto (newest good checkpoint in run.dir), none, or a checkpoint directory");
    v("run.seed", seed, "seed of initialisation, data order, masking and dropout");
    v("run.threads", threads, "threads (0: all cores)");
    v("run.device", device,
      "cpu, cuda (under mpirun: one GPU per node-local rank) or cuda:N; a GPU needs a build "
      "with -DSTRATA_CUDA=ON");
    v("data.tokenizer", tokenizer,
      "tokenizer file (empty: <data dir>/tokenizer.model, the data dir being "
      "runs/data/<style>-<vocab>)");
    v("data.train", train_data, "prepared training shards (empty: <data dir>/train)");
    v("data.valid", valid_data, "prepared validation shards (empty: <data dir>/valid)");
    v("data.micro_batch", micro_batch, "sequences per forward/backward");
    v("data.grad_accum", grad_accum, "micro-batches per optimizer step");
    objective.visit_options(v);
    v("optim.name", optimizer,
      "optimizer (adamwscale: nanoT5's AdamW with per-tensor RMS scaling; lion; sophiag; "
      "adafactor: docs/optim.md)",
      optimizer_names());
    v("optim.lr", lr, "peak learning rate");
    v("optim.weight_decay", weight_decay, "decoupled weight decay (not on norms and biases)");
    v("optim.beta1", beta1, "Adam beta1");
    v("optim.beta2", beta2, "Adam beta2");
    v("optim.eps", eps, "Adam epsilon");
    v("optim.clip", clip, "global gradient-norm clip (0: off)");
    v("optim.rms_scale", rms_scale,
      "lion, sophiag: scale the lr by max(1e-3, RMS(param)) (No Train No Gain's T5 variant)");
    v("optim.rho", rho, "sophiag: clipping threshold rho (reference 0.04; NTNG T5 0.01)");
    v("optim.hessian_every", hessian_every, "sophiag: steps between Hessian passes (k)");
    v("optim.hessian_batch_tokens", hessian_batch_tokens,
      "sophiag: B in the clip rho*B*h (0: the tokens of one optimizer step; the authors' code "
      "default is 5120)");
    v("optim.relative_step", relative_step,
      "adafactor: step min(1e-2, 1/sqrt(t)) instead of optim.lr and its schedule");
    v("optim.scale_parameter", scale_parameter, "adafactor: scale the step by max(1e-3, RMS)");
    v("optim.warmup_init", warmup_init,
      "adafactor: relative step min(1e-6*t, 1/sqrt(t)) (needs optim.relative_step)");
    v("optim.adafactor_momentum", adafactor_momentum,
      "adafactor: first moment with beta1 = optim.beta1 (HF's beta1; false: none)");
    v("optim.schedule", schedule, "cosine, legacy, budget-one-cycle, cosine-budget or constant");
    v("optim.warmup_steps", warmup_steps, "linear warmup steps");
    v("optim.final_lr", final_lr, "learning rate at the end of the budget");
    v("budget.unit", budget_unit, "what the budget counts", budget_unit_names());
    v("budget.amount", budget, "budget in budget.unit; the schedule fully decays at its end");
    v("budget.rst_table", rst_table,
      "budget.unit rst: reference costs per token and update, written by `strata calibrate`");
    v("log.every", log_every, "steps between progress lines");
    v("log.eval_every", eval_every, "steps between validation passes (0: at the end only)");
    v("log.eval_batches", eval_batches, "validation batches per pass");
    v("log.save_every", save_every, "steps between checkpoints (0: at the end only)");
    v("log.keep_last", keep_last, "checkpoints kept");
    v("log.peak_gflops", peak_gflops, "peak GFLOP/s for MFU (0: measure at start-up)");
    v("log.sample_prompt", sample_prompt, "decoder: prompt of the sample printed at the end");
    v("log.sample_tokens", sample_tokens,
      "tokens of that sample (0: no sample; T5 and BERT show a validation row instead)");
    v("log.stop_after", stop_after,
      "stop (after saving) once this process ran this many steps: for tests");
    parallel.visit_options(v);
  }
};

struct TrainResult {
  int64_t step = 0;            // steps completed in total (including before a resume)
  int64_t resumed_from = 0;    // the checkpoint step this process started from (0: fresh)
  std::vector<double> losses;  // training loss of each step this process ran
  double valid_loss = 0, valid_accuracy = 0;                // of the last evaluation
  std::vector<std::pair<int64_t, EvalCounts>> evaluations;  // (step, counts) of each evaluation
  double final_lr =
      0;  // the schedule's lr when the run stopped (its end value once the budget is spent)
  int stopped_by_signal = 0;  // the signal that stopped the run (it saved its step first); 0: none
  std::string sample;         // what Task::sample printed at the end
};

// Where a run's training batches come from. counter() is what a checkpoint stores; the run's
// setup reopens the source at it on resume.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual data::Batch next() = 0;
  virtual uint64_t counter() const = 0;
  virtual std::string describe() const = 0;  // for the run header: "120 training samples (causal)"
};

class Trainer;

// What a run trains besides the task, given by its setup: train() below for pre-training,
// finetune_classifier() (train/finetune.h) for classification.
struct TrainingData {
  // This rank's training batches from a counter (0 for a fresh run, the checkpoint's on resume).
  std::function<std::unique_ptr<BatchSource>(uint64_t counter)> open;
  // One validation pass; every rank calls it and gets the whole job's counts.
  std::function<EvalCounts()> validate;
  std::string accuracy_name = "token accuracy";  // what EvalCounts::accuracy() counts, for the log
  // Checkpoints carry the tokenizer's fingerprint, checked on resume. Empty: the run writes no
  // checkpoints and cannot resume (fine-tuning).
  std::string tokenizer_fingerprint;
  // Called at the end of setup(), on every rank: reports what the run is measured against.
  std::function<void(Trainer&)> after_setup;
};

// The training loop, one for every task and layout, in explicit phases: setup (device, optimizer,
// schedule, resume, batches, metrics), then per step `step`, and `log`, `evaluate` and `save`
// when due. One step path (train/step_path.h) serves CPU and GPU, one process and DP x TP x PP.
// Training methods (train/training_method.h) plug in at the step's hook points; they are added
// before run() and their state goes into every checkpoint.
class Trainer {
 public:
  // `device` is the run's (resolved by the caller); the task is moved there by setup().
  Trainer(const TrainOptions& options, std::ostream& log, const parallel::Topology& topology,
          Device device, Task& task, TrainingData data);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  void add_method(std::unique_ptr<TrainingMethod> method);
  // setup, then steps until the budget ends (or log.stop_after), evaluating, logging and saving
  // as due; saves at the end.
  TrainResult run();

  // The phases. setup() runs once, first; the others read what it built.
  void setup();
  void step();  // one optimizer step, hooks included
  EvalCounts evaluate();
  void save();
  void log_progress();

  int64_t steps_done() const { return step_; }
  bool budget_done() const;
  // Whether a stop signal arrived on any rank (train/stop_signals.h): one small all-reduce (MAX)
  // over the world in a parallel job, so every rank stops at the same step. Returns the signal.
  int stop_requested();
  // World rank 0's run log (a silent stream on the other ranks) and metrics.jsonl, after setup().
  std::ostream& log();
  void write_metrics(const std::string& kind, const std::map<std::string, double>& values);

 private:
  struct State;
  StepContext context();
  void flush_pending();
  void share_time();

  const TrainOptions& o_;
  std::ostream& log_;
  const parallel::Topology& topo_;
  Device device_;
  Task& task_;
  TrainingData data_;
  std::vector<std::unique_ptr<TrainingMethod>> methods_;
  std::unique_ptr<State> s_;
  int64_t step_ = 0;
  int64_t saved_step_ = -1;  // the step of the last checkpoint this run wrote
  TrainResult result_;
};

// The optimizer of `options` over the model's parameters, split by the no-decay rule (tp: the
// group the RMS-scaled updates measure whole-tensor RMS over). `tokens_per_step` is Sophia's B
// when optim.hessian_batch_tokens is 0; 0 there too takes the Sophia authors' default 5120.
// Defined in train/optimizer_factory.cpp.
std::unique_ptr<optim::Optimizer> make_optimizer(const TrainOptions& options,
                                                 const models::Module& model,
                                                 parallel::Communicator& tp,
                                                 int64_t tokens_per_step = 0);

// Micro-batches per optimizer step (data.grad_accum, or parallel.micro_batches under pipeline
// parallelism); throws naming the option when the batch options do not fit the layout.
int64_t micro_batches_per_step(const TrainOptions& options, const parallel::Layout& layout);

// Pre-training: trains the task of `options` on its prepared shards in the layout of
// options.parallel: one process, or this rank's part of an MPI job (MPI initialised by the
// caller, parallel::MpiEnv). Every rank returns the same losses; only world rank 0 writes `log`
// and metrics.jsonl. `methods` are added to the Trainer in order.
TrainResult train(const TrainOptions& options, std::ostream& log,
                  std::vector<std::unique_ptr<TrainingMethod>> methods = {});
// The same on a given topology (options.parallel's dp/tp/pp are ignored): tests run a
// one-process reference with parallel::Topology::single() inside an MPI job.
TrainResult train(const TrainOptions& options, std::ostream& log,
                  const parallel::Topology& topology,
                  std::vector<std::unique_ptr<TrainingMethod>> methods = {});

// A trained model rebuilt from a checkpoint written by train(): the task with its weights (eval
// mode), the tokenizer the run used, and the step.
struct LoadedTask {
  std::unique_ptr<data::Tokenizer> tokenizer;
  std::unique_ptr<Task> task;
  int64_t step = 0;
};
LoadedTask load_trained(const std::string& checkpoint_dir);

}  // namespace strata::train
