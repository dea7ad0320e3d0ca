// The Trainer's phases (train/trainer.h). What a run trains comes from its setup:
// train/pretrain.cpp for pre-training, train/finetune.cpp for classification.
#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <ostream>

#include "core/device_select.h"
#include "core/fma_peak.h"
#include "core/ops.h"
#include "core/runtime.h"
#include "optim/clock.h"
#include "optim/schedule.h"
#include "parallel/topology.h"
#include "train/budget_costs.h"
#include "train/methods/sophia_hessian.h"
#include "train/metrics.h"
#include "train/optimizer_factory.h"
#include "train/parallel_step.h"
#include "train/step_path.h"
#include "train/stop_signals.h"
#include "train/trainer_state.h"

namespace strata::train {

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

namespace {

// The nominal step axis of the schedule: exact for a step budget, derived for tokens, and a
// fixed nominal length for wall time, reference time and FLOPs (the schedule then follows the
// fraction of the budget used).
double nominal_steps(const TrainOptions& o, int64_t tokens_per_step) {
  if (o.budget_unit == optim::ClockKind::steps) return o.budget;
  if (o.budget_unit == optim::ClockKind::tokens)
    return std::ceil(o.budget / double(tokens_per_step));
  return 1000;
}

optim::BudgetSchedule make_budget_schedule(const TrainOptions& o, int64_t tokens_per_step) {
  optim::ScheduleConfig sc;
  sc.name = o.schedule;
  sc.base_lr = o.lr;
  sc.warmup_steps = double(o.warmup_steps);
  sc.total_steps = nominal_steps(o, tokens_per_step);
  sc.final_lr = o.final_lr;
  sc.floor = o.final_lr / o.lr;
  return optim::BudgetSchedule(optim::make_schedule(sc), o.budget_unit, o.budget);
}

}  // namespace

int64_t micro_batches_per_step(const TrainOptions& o, const parallel::Layout& layout) {
  STRATA_CHECK(o.micro_batch > 0 && o.grad_accum > 0,
               "train: data.micro_batch and data.grad_accum must be positive, got ", o.micro_batch,
               " and ", o.grad_accum);
  STRATA_CHECK(o.micro_batch % layout.dp == 0, "train: data.micro_batch ", o.micro_batch,
               " does not divide over the ", layout.dp, " data-parallel ranks of ", layout.str(),
               "; make it a multiple of dp");
  if (layout.pp > 1 && o.parallel.micro_batches > 0) {
    STRATA_CHECK(o.grad_accum == 1 || o.grad_accum == o.parallel.micro_batches,
                 "train: parallel.micro_batches ", o.parallel.micro_batches,
                 " and data.grad_accum ", o.grad_accum,
                 " both set the micro-batches of a step; set one of them");
    return o.parallel.micro_batches;
  }
  return o.grad_accum;
}

// Everything setup() builds. Held behind a pointer: the clock's time source points into it.
struct Trainer::State {
  State(const TrainOptions& o, int64_t tokens_per_step)
      : schedule(make_budget_schedule(o, tokens_per_step)),
        total_steps(nominal_steps(o, tokens_per_step)) {}

  std::ostream quiet{nullptr};  // the log of every rank but world rank 0 (failbit: writes nothing)
  std::ostream* log = &quiet;
  bool parallel_job = false, rank0 = false, on_gpu = false;
  int64_t accum = 1;
  std::unique_ptr<optim::Optimizer> opt;
  optim::BudgetSchedule schedule;
  double total_steps;
  // A parallel job's ranks must agree on the wall time (a seconds budget's schedule follows it):
  // their clocks read a time that world rank 0 broadcasts once per step.
  bool shared_clock = false;
  double shared_now = 0;
  SteadyClock::time_point wall_origin = SteadyClock::now();
  optim::Clock clock;
  std::unique_ptr<BatchSource> batches;
  std::unique_ptr<StepPath> path;
  std::optional<ReferenceCosts> costs;  // a reference-time budget's

  // Other processes can only make a measured peak too low, never too high, so the peak is the
  // largest measurement so far: at setup and again at every evaluation.
  double peak = 0;
  FmaPeak cpu_peak;  // the last CPU measurement, for the log
  double flops_per_token = 0;
  std::optional<MetricsLog> metrics;

  // Each step's loss and gradient norm stay on the run's device until a log step, a save or the
  // end reads them back at once (one host sync on a GPU; every step on the CPU, where it is
  // free). That is also when the finiteness checks run: a diverged run stops before any
  // checkpoint is written.
  struct Pending {
    int64_t step = 0;
    Tensor loss, grad_norm;  // one-element f64 tensors on the device
  };
  std::vector<Pending> pending;
  double last_loss = 0, last_grad_norm = 0, last_lr = 0;

  SteadyClock::time_point t0, window_start;
  int64_t first_step = 0, window_tokens = 0;
  double first_fraction = 0;  // of the budget, at start or resume
};

Trainer::Trainer(const TrainOptions& options, std::ostream& log, const parallel::Topology& topology,
                 Device device, Task& task, TrainingData data)
    : o_(options),
      log_(log),
      topo_(topology),
      device_(device),
      task_(task),
      data_(std::move(data)) {}

Trainer::~Trainer() = default;

void Trainer::add_method(std::unique_ptr<TrainingMethod> method) {
  STRATA_CHECK(!s_, "Trainer: add training methods before run() (", method->name(), ")");
  methods_.push_back(std::move(method));
}

bool Trainer::budget_done() const {
  return s_->schedule.done(s_->clock);
}

void Trainer::setup() {
  // Sophia-G's Hessian EMA needs its pass every optim.hessian_every steps, whatever the setup;
  // added last, so its pass runs on the rows the other methods selected.
  if (o_.optimizer == OptimizerKind::SophiaG)
    methods_.push_back(std::make_unique<SophiaHessian>(o_.hessian_every));
  const int64_t accum = micro_batches_per_step(o_, topo_.layout());
  const int64_t tokens_per_step = o_.micro_batch * accum * task_.tokens_per_row();
  s_ = std::make_unique<State>(o_, tokens_per_step);
  State& s = *s_;
  s.accum = accum;
  s.parallel_job = topo_.world_size() > 1;
  s.rank0 = topo_.world_rank() == 0;
  s.on_gpu = !device_.is_cpu();
  if (s.rank0) s.log = &log_;
  std::ostream& log = *s.log;

  models::Module& model = task_.module();
  model.train();
  // Before the optimizer exists, so its state is created on the same device.
  if (s.on_gpu) model.to(device_);
  s.opt = make_optimizer(o_, model, topo_.tp(), tokens_per_step);
  s.shared_clock = s.parallel_job && o_.budget_unit == optim::ClockKind::seconds;
  s.clock = s.shared_clock ? optim::Clock(o_.budget_unit, [&s] { return s.shared_now; })
                           : optim::Clock(o_.budget_unit);

  if (o_.budget_unit == optim::ClockKind::reference_seconds) {
    STRATA_CHECK(!o_.rst_table.empty(),
                 "budget.unit rst needs budget.rst_table: the reference costs of this model, "
                 "measured once with `strata calibrate` and the same model options");
    s.costs = ReferenceCosts::load(o_.rst_table);
    STRATA_CHECK(s.costs->model() == task_.describe(), "budget.rst_table ", o_.rst_table,
                 " was measured for '", s.costs->model(), "', but this run trains '",
                 task_.describe(), "'; run `strata calibrate` with this run's model options");
  }

  uint64_t counter = 0;
  if (!data_.tokenizer_fingerprint.empty()) {
    STRATA_CHECK(!o_.run_dir.empty(), "train: run.dir is empty; name the run directory");
    if (const auto from = resume_source(o_.resume, o_.run_dir, topo_)) {
      const CheckpointState c =
          load_training_checkpoint(*from, model, *s.opt, s.clock, data_.tokenizer_fingerprint,
                                   task_.kind(), topo_, o_.resume == "auto");
      counter = uint64_t(c.ints.at("loader_counter"));
      result_.resumed_from = c.ints.at("step");
      for (auto& m : methods_) m->load_state(c);
      log << "resumed from " << from->string() << " (step " << result_.resumed_from << ")\n";
    }
  }
  step_ = result_.resumed_from;
  s.batches = data_.open(counter);
  s.path = make_step_path(task_, *s.opt, topo_, device_, o_.parallel.schedule, accum);

  // On a GPU the peak is the device's nominal dense figure for the model's compute dtype
  // (0, so MFU unknown, for a GPU the table lacks). A parallel job counts rank 0's once per rank.
  auto measure_peak = [&] {
    if (!s.rank0) return 0.0;
    if (s.on_gpu)
      return nominal_peak_tflops(device_, model.precision().compute_dtype(model.dtype())) * 1e3 *
             topo_.world_size();
    s.cpu_peak = measure_fma_peak(false);
    return s.cpu_peak.gflops() * topo_.world_size();
  };
  s.peak = o_.peak_gflops > 0 ? o_.peak_gflops : measure_peak();
  s.flops_per_token = task_.flops_per_row() / double(task_.tokens_per_row());
  if (s.rank0 && !o_.run_dir.empty())
    s.metrics.emplace((fs::path(o_.run_dir) / "metrics.jsonl").string());

  log << task_.describe() << "; " << s.flops_per_token / 1e6 << " MFLOP/token; "
      << s.batches->describe() << "; budget " << o_.budget << " "
      << optim::clock_kind_name(o_.budget_unit) << "; " << Runtime::get().describe() << "; peak "
      << s.peak << " GFLOP/s";
  if (!s.on_gpu && o_.peak_gflops <= 0)
    log << " (f32 FMA with " << s.cpu_peak.widest() << "; per process zmm " << s.cpu_peak.zmm_gflops
        << ", ymm " << s.cpu_peak.ymm_gflops << ")";
  log << "\n";
  if (s.on_gpu)
    log << "device: " << device_.str() << " (" << device_name(device_) << ")"
        << (s.peak > 0 ? std::string()
                       : "; no nominal peak for this GPU, so MFU is not reported (set "
                         "log.peak_gflops)")
        << "\n";
  const int pp = topo_.layout().pp;
  if (s.parallel_job)
    log << "parallel: " << topo_.layout().str() << " on " << topo_.world_size() << " ranks"
        << (pp > 1 ? std::string("; ") + parallel::schedule_name(o_.parallel.schedule) +
                         " schedule, " + std::to_string(accum) +
                         (accum == 1 ? " micro-batch" : " micro-batches") + " per step"
                   : std::string())
        << "\n";
  for (const auto& m : methods_) log << "training method: " << m->name() << "\n";
  if (data_.after_setup) data_.after_setup(*this);

  if (s.shared_clock) share_time();
  s.opt->set_lr(s.schedule.lr(s.clock));
  s.t0 = s.window_start = SteadyClock::now();
  s.first_step = step_;
  s.first_fraction = s.schedule.fraction(s.clock);
}

void Trainer::share_time() {
  State& s = *s_;
  Tensor t = from_vector<double>(
      {std::chrono::duration<double>(SteadyClock::now() - s.wall_origin).count()}, {1});
  topo_.world().broadcast(t, 0, "world.clock");
  s.shared_now = t.item<double>();
}

StepContext Trainer::context() {
  StepContext c;
  c.step = step_;
  c.budget_fraction = s_->schedule.fraction(s_->clock);
  c.seed = o_.seed;
  c.task = &task_;
  c.optimizer = s_->opt.get();
  c.topology = &topo_;
  c.log = s_->log;
  c.path = s_->path.get();
  return c;
}

void Trainer::step() {
  State& s = *s_;
  task_.set_step(uint64_t(step_));
  StepContext ctx = context();
  for (auto& m : methods_) m->before_step(ctx);
  std::vector<data::Batch> batches;
  for (int64_t m = 0; m < s.accum; ++m) batches.push_back(s.batches->next());
  for (auto& m : methods_) m->on_batch(ctx, batches);

  const Tensor loss = s.path->forward_backward(batches);
  for (auto& m : methods_) m->after_backward(ctx);
  // clip <= 0 turns clipping off; the norm is still measured for the log and the NaN check.
  const Tensor norm = s.path->clip_gradients(o_.clip);
  s.pending.push_back({step_ + 1, loss, norm});
  s.last_lr = s.opt->lr();
  s.opt->step();
  s.opt->zero_grad();

  // Every stage of a pipeline holds the same rows; the data-parallel ranks hold 1/dp of them each,
  // or, once a method has selected rows, counts that the job adds up.
  int64_t tokens = 0;
  for (const data::Batch& b : batches) tokens += b.rows * b.input_len;
  if (topo_.layout().dp > 1 && methods_.empty()) {
    tokens *= topo_.layout().dp;
  } else if (topo_.layout().dp > 1) {
    Tensor t = from_vector<int64_t>({tokens}, {1});
    topo_.dp().all_reduce(t, parallel::ReduceOp::Sum, "dp.trained_tokens");
    tokens = t.item<int64_t>();
  }
  StepCharge charge{tokens, tokens, tokens, 1, 0};
  for (auto& m : methods_) m->on_clock(ctx, charge);
  const double rst = s.costs ? reference_seconds(charge, *s.costs) : 0.0;
  if (s.shared_clock) share_time();
  s.clock.advance(charge.trained_tokens, rst, step_flops(charge, s.flops_per_token));
  s.opt->set_lr(s.schedule.lr(s.clock));
  ++step_;
  s.window_tokens += charge.trained_tokens;
  if (!s.on_gpu) flush_pending();
}

void Trainer::flush_pending() {
  State& s = *s_;
  if (s.pending.empty()) return;
  std::vector<Tensor> parts;
  for (const State::Pending& p : s.pending) {
    parts.push_back(p.loss);
    parts.push_back(p.grad_norm);
  }
  const std::vector<double> v = cat(parts, 0).to(Device::cpu()).to_vector<double>();
  for (size_t i = 0; i < s.pending.size(); ++i) {
    const double loss = v[2 * i], grad_norm = v[2 * i + 1];
    const int64_t at = s.pending[i].step;
    STRATA_CHECK(std::isfinite(loss), "train: the loss became ", loss, " at step ", at,
                 "; stopping without saving, so the last good checkpoint in ", o_.run_dir,
                 " stays intact (lower --optim.lr or raise --optim.warmup_steps)");
    STRATA_CHECK(std::isfinite(grad_norm), "train: the gradient norm became ", grad_norm,
                 " at step ", at, "; stopping without saving, so the last good checkpoint in ",
                 o_.run_dir, " stays intact");
    s.last_loss = loss;
    s.last_grad_norm = grad_norm;
    result_.losses.push_back(loss);
  }
  s.pending.clear();
}

void Trainer::log_progress() {
  State& s = *s_;
  flush_pending();  // before the clock is read: the window then ends when the GPU is done
  const auto now = SteadyClock::now();
  const double secs = std::chrono::duration<double>(now - s.window_start).count();
  const double tok_s = double(s.window_tokens) / std::max(secs, 1e-9);
  const double mfu = s.peak > 0 ? tok_s * s.flops_per_token / (s.peak * 1e9) : 0.0;
  const double frac = s.schedule.fraction(s.clock);
  const double elapsed = std::chrono::duration<double>(now - s.t0).count();
  const double done_here = frac - s.first_fraction;
  const double eta = done_here > 0 ? elapsed * (1 - frac) / done_here : 0;
  // The allocator of the training device: GPU memory on a GPU.
  const auto mem = Runtime::get().memory_stats(device_);
  char mfu_text[32] = "-";
  if (s.peak > 0) std::snprintf(mfu_text, sizeof mfu_text, "%.1f%%", 100 * mfu);
  char line[256];
  std::snprintf(line, sizeof line,
                "step %6lld/%.0f  loss %.4f  lr %.2e  gnorm %.3f  %.0f tok/s  MFU %s  peak %s  "
                "ETA %s\n",
                (long long)step_, s.total_steps, s.last_loss, s.last_lr, s.last_grad_norm, tok_s,
                mfu_text, format_bytes(double(mem.peak_bytes)).c_str(),
                format_duration(eta).c_str());
  *s.log << line << std::flush;
  std::map<std::string, double> values{{"step", double(step_)},
                                       {"loss", s.last_loss},
                                       {"lr", s.last_lr},
                                       {"grad_norm", s.last_grad_norm},
                                       {"tokens_per_s", tok_s},
                                       {"peak_bytes", double(mem.peak_bytes)},
                                       {"tokens", double(s.clock.state().tokens)}};
  if (s.peak > 0) values["mfu"] = mfu;
  if (s.on_gpu) values["reserved_bytes"] = double(mem.reserved_bytes);
  write_metrics("train", values);
  s.window_start = now;
  s.window_tokens = 0;
}

EvalCounts Trainer::evaluate() {
  State& s = *s_;
  if (o_.peak_gflops <= 0 && s.rank0 && !s.on_gpu) {
    s.cpu_peak = measure_fma_peak(false);
    s.peak = std::max(s.peak, s.cpu_peak.gflops() * topo_.world_size());
  }
  const EvalCounts e = data_.validate();
  result_.valid_loss = e.loss();
  result_.valid_accuracy = e.accuracy();
  result_.evaluations.emplace_back(step_, e);
  *s.log << "eval   step " << step_ << "  validation loss " << e.loss() << "  "
         << data_.accuracy_name << " " << e.accuracy() << "\n";
  write_metrics("eval", {{"step", double(step_)}, {"loss", e.loss()}, {"accuracy", e.accuracy()}});
  return e;
}

void Trainer::save() {
  State& s = *s_;
  flush_pending();
  if (data_.tokenizer_fingerprint.empty()) return;
  CheckpointState state =
      trainer_state(task_, *s.opt, s.clock, s.batches->counter(), o_, data_.tokenizer_fingerprint);
  for (const auto& m : methods_) m->save_state(state);
  const fs::path dir = save_training_checkpoint(o_.run_dir, step_, task_.module(), *s.opt, state,
                                                o_.keep_last, topo_);
  saved_step_ = step_;
  *s.log << "saved " << dir.string() << "\n";
}

int Trainer::stop_requested() {
  int signal = StopSignals::received();
  if (topo_.world_size() > 1) {
    Tensor t = from_vector<int64_t>({signal}, {1});
    topo_.world().all_reduce(t, parallel::ReduceOp::Max, "world.stop_signal");
    signal = int(t.item<int64_t>());
  }
  return signal;
}

void Trainer::write_metrics(const std::string& kind, const std::map<std::string, double>& values) {
  if (s_ && s_->metrics) s_->metrics->write(kind, values);
}

std::ostream& Trainer::log() {
  return *s_->log;
}

TrainResult Trainer::run() {
  setup();
  const int64_t first = step_;
  auto due = [this](int64_t every) { return every > 0 && step_ % every == 0; };
  while (!budget_done()) {
    if (o_.stop_after > 0 && step_ - first >= o_.stop_after) break;
    if (const int signal = stop_requested()) {
      result_.stopped_by_signal = signal;
      *s_->log << "stopping at step " << step_ << " on signal " << signal << " ("
               << strsignal(signal) << "): saving, then exiting with " << kExitSavedRequeue
               << " (requeue me)\n";
      break;
    }
    step();
    const bool last = budget_done();
    if (last || due(o_.log_every)) log_progress();
    if (last || due(o_.eval_every)) evaluate();
    if (last || due(o_.save_every)) save();
  }
  const bool interrupted =
      result_.stopped_by_signal || (o_.stop_after > 0 && step_ - first >= o_.stop_after);
  if (interrupted && !budget_done() && saved_step_ != step_) save();
  flush_pending();
  result_.step = step_;
  result_.final_lr = s_->opt->lr();
  return result_;
}

}  // namespace strata::train
