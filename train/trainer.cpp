#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <optional>
#include <ostream>

#include "core/device_select.h"
#include "core/fma_peak.h"
#include "core/ops.h"
#include "data/loader.h"
#include "data/shards.h"
#include "data/tokenizer.h"
#include "data/unigram_baseline.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/clock.h"
#include "optim/schedule.h"
#include "parallel/grad_reducer.h"
#include "parallel/pipeline_executor.h"
#include "parallel/topology.h"
#include "train/checkpoint.h"
#include "train/metrics.h"
#include "train/parallel_agreement.h"
#include "train/parallel_grad_norm.h"
#include "train/parallel_step.h"
#include "train/trainer_state.h"

namespace strata::train {

namespace fs = std::filesystem;

namespace {

std::unique_ptr<optim::Optimizer> make_optimizer(const TrainOptions& o, const models::Module& model,
                                                 parallel::Communicator& tp) {
  std::vector<optim::NamedParam> named;
  for (const auto& [name, p] : model.named_parameters()) named.push_back({name, p});
  const optim::Hyper hyper{o.lr, o.weight_decay, o.beta1, o.beta2, o.eps};
  auto groups = optim::make_param_groups(named, hyper);
  switch (o.optimizer) {
    case OptimizerKind::AdamW:
      return std::make_unique<optim::AdamW>(std::move(groups));
    case OptimizerKind::AdamWScale:
      if (tp.size() > 1) return std::make_unique<ShardedAdamWScale>(std::move(groups), model, tp);
      return std::make_unique<optim::AdamWScale>(std::move(groups));
  }
  STRATA_FAIL("train: optimizer ", int(o.optimizer), " has no implementation");
}

// The nominal step axis of the schedule: exact for a step budget, derived for tokens, and a
// fixed nominal length for wall time (the schedule then follows the fraction of time used).
double nominal_steps(const TrainOptions& o, int64_t tokens_per_step) {
  if (o.budget_unit == optim::ClockKind::steps) return o.budget;
  if (o.budget_unit == optim::ClockKind::tokens)
    return std::ceil(o.budget / double(tokens_per_step));
  return 1000;
}

// Mean loss and accuracy over the first `batches` validation batches (fixed order).
EvalCounts evaluate(Task& task, const data::SampleSource& samples, const data::Permutation& order,
                    const data::LoaderOptions& lo, int64_t batches) {
  NoGradGuard no_grad;
  models::EvalModeGuard eval_mode(task.module());
  EvalCounts counts;
  for (int64_t b = 0; b < batches; ++b)
    task.evaluate(
        data::build_batch(samples, *task.objective(), order, lo, uint64_t(b * lo.global_batch)),
        counts);
  return counts;
}

}  // namespace

LoadedTask load_trained(const std::string& dir) {
  const CheckpointState s = load_checkpoint(dir);
  LoadedTask out;
  auto path = s.strings.find("tokenizer_path");
  STRATA_CHECK(path != s.strings.end(), "load: ", dir,
               " has no tokenizer_path; was it written by `strata train`?");
  out.tokenizer = data::load_tokenizer(path->second);
  auto fp = s.strings.find("tokenizer_fingerprint");
  STRATA_CHECK(fp != s.strings.end() && fp->second == out.tokenizer->fingerprint(), "load: ", dir,
               " was trained with a different tokenizer than the one now at ", path->second);
  out.task = make_task(s, *out.tokenizer);
  out.step = s.ints.at("step");
  return out;
}

TrainResult train(const TrainOptions& o, std::ostream& log) {
  // run.device is checked first, so a bad one is named before any collective starts. GPU runs
  // build their groups over NCCL (CUDA tensors over NCCL, host scalars still over MPI).
  const Device device = resolve_device(o.device, "run.device");
  const parallel::Layout layout{o.parallel.dp, o.parallel.tp, o.parallel.pp};
  const parallel::Topology topology = parallel::Topology::create(
      layout, device.is_cpu() ? parallel::CommBackend::Mpi : parallel::CommBackend::Nccl);
  return train(o, log, topology);
}

TrainResult train(const TrainOptions& o, std::ostream& log_all, const parallel::Topology& topo) {
  const bool parallel_job = topo.world_size() > 1;
  const parallel::Layout& layout = topo.layout();
  const int dp = layout.dp, pp = layout.pp;
  // Only world rank 0 speaks; the others write to a stream without a buffer (failbit set).
  std::ostream quiet(nullptr);
  std::ostream& log = topo.world_rank() == 0 ? log_all : quiet;
  if (parallel_job)
    for (parallel::Communicator* c : {&topo.world(), &topo.tp(), &topo.dp(), &topo.pp()})
      c->set_timeout(std::chrono::milliseconds(int64_t(o.parallel.timeout_s * 1e3)));

  // The device first, so a run that cannot have it fails before reading anything. In a parallel
  // job the topology has picked each rank's GPU (node-local rank) and set up NCCL for it.
  Device device;
  auto pick_device = [&] {
    device = resolve_device(o.device, "run.device", topo.local_rank());
    if (!parallel_job || device.is_cpu()) return;
    STRATA_CHECK(topo.backend() == parallel::CommBackend::Nccl, "run.device = ", o.device,
                 ": a parallel job on GPUs needs its topology made with the NCCL backend");
    STRATA_CHECK(o.device == "cuda" || device == topo.device(), "run.device = ", o.device,
                 ": under mpirun each rank takes the GPU of its node-local rank (",
                 topo.device().str(), " here); set run.device = cuda");
    device = topo.device();
  };
  if (parallel_job)
    detail::on_all_ranks(topo.world(), "train.device", pick_device);
  else
    pick_device();
  const bool on_gpu = !device.is_cpu();

  if (o.threads > 0) Runtime::get().set_num_threads(o.threads);
  STRATA_CHECK(o.micro_batch > 0 && o.grad_accum > 0,
               "train: data.micro_batch and data.grad_accum must be positive, got ", o.micro_batch,
               " and ", o.grad_accum);
  STRATA_CHECK(o.micro_batch % dp == 0, "train: data.micro_batch ", o.micro_batch,
               " does not divide over the ", dp, " data-parallel ranks of ", layout.str(),
               "; make it a multiple of dp");
  // Micro-batches per step: grad_accum, or under pipeline parallelism parallel.micro_batches.
  int64_t accum = o.grad_accum;
  if (pp > 1 && o.parallel.micro_batches > 0) {
    STRATA_CHECK(o.grad_accum == 1 || o.grad_accum == o.parallel.micro_batches,
                 "train: parallel.micro_batches ", o.parallel.micro_batches,
                 " and data.grad_accum ", o.grad_accum,
                 " both set the micro-batches of a step; set one of them");
    accum = o.parallel.micro_batches;
  }

  // Everything a rank can fail at alone (a missing file on one node) fails every rank alike.
  std::unique_ptr<data::Tokenizer> tokenizer;
  std::shared_ptr<data::ShardedDataset> train_docs, valid_docs;
  std::unique_ptr<Task> task;
  auto setup = [&] {
    tokenizer = data::load_tokenizer(o.tokenizer);
    train_docs = std::make_shared<data::ShardedDataset>(o.train_data);
    valid_docs = std::make_shared<data::ShardedDataset>(o.valid_data);
    train_docs->require_tokenizer(tokenizer->fingerprint());
    valid_docs->require_tokenizer(tokenizer->fingerprint());
    TaskPlacement placement;
    placement.tp = &topo.tp();
    placement.pp_stages = pp;
    placement.pp_stage = topo.coords().pp;
    try {
      task = make_task(o.model, o.objective, *tokenizer, o.seed, placement);
    } catch (const Error& e) {
      if (!parallel_job) throw;
      STRATA_FAIL(e.what(), " (parallel layout ", layout.str(), " on ", topo.world_size(),
                  " ranks)");
    }
  };
  if (parallel_job)
    detail::on_all_ranks(topo.world(), "train.setup", setup);
  else
    setup();
  const std::string fingerprint = tokenizer->fingerprint();

  models::Module& model = task->module();
  model.train();
  // Before the optimizer exists, so its state is created on the same device.
  if (on_gpu) model.to(device);
  auto opt = make_optimizer(o, model, topo.tp());
  const auto objective = task->objective();
  const int64_t tokens_per_step = o.micro_batch * accum * task->tokens_per_row();
  optim::ScheduleConfig sc;
  sc.name = o.schedule;
  sc.base_lr = o.lr;
  sc.warmup_steps = double(o.warmup_steps);
  sc.total_steps = nominal_steps(o, tokens_per_step);
  sc.final_lr = o.final_lr;
  sc.floor = o.final_lr / o.lr;
  const optim::BudgetSchedule schedule(optim::make_schedule(sc), o.budget_unit, o.budget);
  // A parallel job's ranks must agree on the wall time (the schedule follows it): their clocks
  // read a time that world rank 0 broadcasts once per step.
  const auto wall_origin = std::chrono::steady_clock::now();
  auto wall_now = [wall_origin] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_origin).count();
  };
  double shared_now = 0;
  auto share_time = [&] {
    Tensor t = from_vector<double>({wall_now()}, {1});
    topo.world().broadcast(t, 0, "world.clock");
    shared_now = t.item<double>();
  };
  const bool shared_clock = parallel_job && o.budget_unit == optim::ClockKind::seconds;
  optim::Clock clock = shared_clock
                           ? optim::Clock(o.budget_unit, [&shared_now] { return shared_now; })
                           : optim::Clock(o.budget_unit);

  TrainResult result;
  uint64_t counter = 0;
  STRATA_CHECK(!o.run_dir.empty(), "train: run.dir is empty; name the run directory");
  const fs::path run_dir = o.run_dir;
  if (const auto from = resume_source(o.resume, run_dir, topo)) {
    const CheckpointState s = load_training_checkpoint(*from, model, *opt, clock, fingerprint,
                                                       task->kind(), topo, o.resume == "auto");
    counter = uint64_t(s.ints.at("loader_counter"));
    result.resumed_from = s.ints.at("step");
    log << "resumed from " << from->string() << " (step " << result.resumed_from << ")\n";
  }
  int64_t step = result.resumed_from;

  // Data: rank r of the dp group builds rows r, r + dp, ... of each micro-batch.
  data::LoaderOptions lo;
  lo.seed = o.seed;
  lo.global_batch = o.micro_batch;
  lo.dp_rank = topo.coords().dp;
  lo.dp_size = dp;
  data::Loader loader(train_docs, objective, lo, counter);
  task->set_batch_rows(lo.dp_rank, lo.dp_size);
  data::LoaderOptions vlo = lo;
  vlo.shuffle = false;
  const data::SampleSource valid_samples(valid_docs, objective->layout());
  const data::Permutation valid_order(uint64_t(valid_samples.size()), o.seed, false);

  // Parallel machinery: the dp gradient reducer and the pipeline executor.
  std::unique_ptr<parallel::GradReducer> reducer;
  if (dp > 1)
    reducer = std::make_unique<parallel::GradReducer>(model.named_parameters(), topo.dp());
  std::unique_ptr<parallel::PipelineExecutor> executor;
  std::vector<Tensor> tied_replicas;
  if (pp > 1) {
    executor = std::make_unique<parallel::PipelineExecutor>(
        topo.pp(), parallel::PipelineSchedule(o.parallel.schedule, pp, accum));
    if (topo.is_last_stage()) tied_replicas = task->stage()->tied_parameters();
  }

  // Other processes can only make a measured peak too low, never too high, so the peak is the
  // largest measurement so far: taken at start-up and again at every evaluation. A parallel job
  // counts rank 0's measurement once per rank.
  const bool rank0 = topo.world_rank() == 0;
  // On a GPU the peak is the device's nominal dense figure for the model's compute dtype
  // (optim::nominal_peak_tflops; 0, so MFU unknown, for a GPU the table lacks).
  FmaPeak cpu_peak;  // the last CPU measurement, for the log
  auto measure_peak = [&] {
    if (!rank0) return 0.0;
    if (on_gpu) {
      const DType compute = model.precision().compute_dtype(model.dtype());
      return nominal_peak_tflops(device, compute) * 1e3 * topo.world_size();
    }
    cpu_peak = measure_fma_peak(false);
    return cpu_peak.gflops() * topo.world_size();
  };
  double peak = o.peak_gflops > 0 ? o.peak_gflops : measure_peak();
  auto remeasure_peak = [&] {
    if (o.peak_gflops <= 0) peak = std::max(peak, measure_peak());
  };
  const double flops_per_token = task->flops_per_row() / double(task->tokens_per_row());
  std::optional<MetricsLog> metrics;
  if (rank0) metrics.emplace((run_dir / "metrics.jsonl").string());
  auto write_metrics = [&](const std::string& kind, const std::map<std::string, double>& values) {
    if (metrics) metrics->write(kind, values);
  };
  log << task->describe() << "; " << flops_per_token / 1e6 << " MFLOP/token; "
      << loader.num_samples() << " training samples (" << objective->name() << "); budget "
      << o.budget << " " << optim::clock_kind_name(o.budget_unit) << "; "
      << Runtime::get().describe() << "; peak " << peak << " GFLOP/s";
  if (!on_gpu && o.peak_gflops <= 0)
    log << " (f32 FMA with " << cpu_peak.widest() << "; per process zmm " << cpu_peak.zmm_gflops
        << ", ymm " << cpu_peak.ymm_gflops << ")";
  log << "\n";
  if (on_gpu)
    log << "device: " << device.str() << " (" << device_name(device) << ")"
        << (peak > 0 ? std::string()
                     : "; no nominal peak for this GPU, so MFU is not reported (set "
                       "log.peak_gflops)")
        << "\n";
  if (parallel_job)
    log << "parallel: " << layout.str() << " on " << topo.world_size() << " ranks"
        << (pp > 1 ? std::string("; ") + parallel::schedule_name(o.parallel.schedule) +
                         " schedule, " + std::to_string(accum) +
                         (accum == 1 ? " micro-batch" : " micro-batches") + " per step"
                   : std::string())
        << "\n";
  if (rank0) {
    const double unigram =
        data::unigram_cross_entropy(*train_docs, *valid_docs, tokenizer->vocab_size());
    log << "reference: a unigram model scores " << unigram
        << " nats/token on the validation split; a uniform guess "
        << std::log(tokenizer->vocab_size()) << "\n";
    write_metrics("baseline", {{"unigram_loss", unigram},
                               {"uniform_loss", std::log(double(tokenizer->vocab_size()))}});
  }

  // On a GPU the loss and gradient norm of each step stay on the device until a log step, a
  // save or the end reads them all back at once (one host sync), which is also when the
  // finiteness checks run: a diverged run still stops before any checkpoint is written.
  struct Pending {
    int64_t step = 0;
    Tensor loss, grad_norm;  // one-element f64 tensors on the device
  };
  std::vector<Pending> pending;
  double last_loss = 0, last_grad_norm = 0;
  auto check_finite = [&](double loss, double grad_norm, int64_t at) {
    STRATA_CHECK(std::isfinite(loss), "train: the loss became ", loss, " at step ", at,
                 "; stopping without saving, so the last good checkpoint in ", run_dir.string(),
                 " stays intact (lower --optim.lr or raise --optim.warmup_steps)");
    STRATA_CHECK(std::isfinite(grad_norm), "train: the gradient norm became ", grad_norm,
                 " at step ", at, "; stopping without saving, so the last good checkpoint in ",
                 run_dir.string(), " stays intact");
  };
  auto flush_pending = [&] {
    if (pending.empty()) return;
    std::vector<Tensor> parts;
    for (const Pending& p : pending) {
      parts.push_back(p.loss);
      parts.push_back(p.grad_norm);
    }
    const std::vector<double> v = cat(parts, 0).to(Device::cpu()).to_vector<double>();
    for (size_t i = 0; i < pending.size(); ++i) {
      last_loss = v[2 * i];
      last_grad_norm = v[2 * i + 1];
      check_finite(last_loss, last_grad_norm, pending[i].step);
      result.losses.push_back(last_loss);
    }
    pending.clear();
  };

  auto save = [&]() {
    flush_pending();
    const fs::path dir = save_training_checkpoint(
        run_dir, step, model, *opt,
        trainer_state(*task, *opt, clock, loader.counter(), o, fingerprint), o.keep_last, topo);
    log << "saved " << dir.string() << "\n";
  };
  auto evaluate_now = [&] {
    return parallel_job
               ? evaluate_parallel(*task, valid_samples, valid_order, vlo, o.eval_batches, topo)
               : evaluate(*task, valid_samples, valid_order, vlo, o.eval_batches);
  };

  if (shared_clock) share_time();
  opt->set_lr(schedule.lr(clock));
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t first_step = step;
  const double first_fraction = schedule.fraction(clock);  // of the budget, at start or resume
  auto window_start = t0;
  int64_t window_tokens = 0;
  while (!schedule.done(clock)) {
    if (o.stop_after > 0 && step - first_step >= o.stop_after) break;
    task->set_step(uint64_t(step));
    double step_loss = 0;
    Tensor device_loss;  // on a GPU: the step's loss, read back later
    if (!parallel_job && on_gpu) {
      for (int64_t m = 0; m < accum; ++m) {
        Tensor loss = task->loss(loader.next());
        Tensor lv = loss.detach().to(DType::f64);
        if (accum > 1) lv = lv * (1.0 / double(accum));
        device_loss = m == 0 ? lv : device_loss + lv;
        (accum > 1 ? loss * (1.0 / double(accum)) : loss).backward();
      }
    } else if (!parallel_job) {
      for (int64_t m = 0; m < accum; ++m) {
        Tensor loss = task->loss(loader.next());
        const double lv = loss.item<double>();
        step_loss += lv / double(accum);
        (accum > 1 ? loss * (1.0 / double(accum)) : loss).backward();
      }
    } else {
      std::vector<data::Batch> batches;
      for (int64_t m = 0; m < accum; ++m) batches.push_back(loader.next());
      // This rank's share of each micro-batch's loss positions (1 without data parallelism).
      const std::vector<double> share =
          dp > 1 ? loss_shares(batches, topo.dp()) : std::vector<double>(size_t(accum), 1.0);
      if (executor) {
        task->set_stage_batches(batches);
        std::vector<double> scale;
        for (double s : share) scale.push_back(double(dp) * s);
        ScaledLossStage stage(*task->stage(), scale, topo.is_last_stage());
        if (reducer) reducer->set_sync(false);  // reduce once, after the whole schedule
        const double mean = executor->run(dp > 1 ? stage : *task->stage()).loss;
        if (reducer) reducer->set_sync(true);
        step_loss = mean / double(dp);
      } else {
        for (int64_t m = 0; m < accum; ++m) {
          auto no_sync =
              reducer && m + 1 < accum ? reducer->no_sync() : parallel::GradReducer::NoSync();
          Tensor loss = task->loss(batches[size_t(m)]);
          step_loss += loss.item<double>() * share[size_t(m)] / double(accum);
          const double scale = double(dp) * share[size_t(m)] / double(accum);
          (scale != 1.0 ? loss * scale : loss).backward();
        }
      }
      if (reducer) {
        reducer->finish();
        if (executor) resync_tied_gradients(*task->stage(), topo.pp());
      }
      if (dp > 1) {
        Tensor l = from_vector<double>({step_loss}, {1});
        topo.dp().all_reduce(l, parallel::ReduceOp::Sum, "dp.loss");
        step_loss = l.item<double>();
      }
    }
    // clip <= 0 turns clipping off; the norm is still measured for the log and the NaN check.
    double grad_norm = 0;
    if (device_loss.defined()) {
      Tensor norm = optim::clip_grad_norm_tensor(opt->params(), o.clip);
      if (norm.device() != device) norm = norm.to(device);  // no gradients at all: a host 0
      pending.push_back({step + 1, device_loss, norm});
    } else {
      STRATA_CHECK(std::isfinite(step_loss), "train: the loss became ", step_loss, " at step ",
                   step + 1, "; stopping without saving, so the last good checkpoint in ",
                   run_dir.string(),
                   " stays intact (lower --optim.lr or raise --optim.warmup_steps)");
      if (parallel_job)
        grad_norm = clip_parallel_grad_norm(model, tied_replicas, topo, o.clip);
      else
        grad_norm =
            o.clip > 0 ? optim::clip_grad_norm(*opt, o.clip) : optim::grad_norm(opt->params());
      check_finite(step_loss, grad_norm, step + 1);
    }
    const double lr = opt->lr();
    opt->step();
    opt->zero_grad();
    if (shared_clock) share_time();
    clock.advance(tokens_per_step);
    opt->set_lr(schedule.lr(clock));
    ++step;
    window_tokens += tokens_per_step;
    if (!device_loss.defined()) {
      result.losses.push_back(step_loss);
      last_loss = step_loss;
      last_grad_norm = grad_norm;
    }

    const bool last = schedule.done(clock);
    if (step % o.log_every == 0 || last) {
      flush_pending();  // before the clock is read: the window then ends when the GPU is done
      step_loss = last_loss;
      grad_norm = last_grad_norm;
      const auto now = std::chrono::steady_clock::now();
      const double secs = std::chrono::duration<double>(now - window_start).count();
      const double tok_s = double(window_tokens) / std::max(secs, 1e-9);
      const double mfu = peak > 0 ? tok_s * flops_per_token / (peak * 1e9) : 0.0;
      const double frac = schedule.fraction(clock);
      const double elapsed = std::chrono::duration<double>(now - t0).count();
      const double done_here = frac - first_fraction;
      const double eta = done_here > 0 ? elapsed * (1 - frac) / done_here : 0;
      // The allocator of the training device: GPU memory on a GPU.
      const auto mem = Runtime::get().memory_stats(device);
      char mfu_text[32] = "-";
      if (peak > 0) std::snprintf(mfu_text, sizeof mfu_text, "%.1f%%", 100 * mfu);
      char line[256];
      std::snprintf(line, sizeof line,
                    "step %6lld/%.0f  loss %.4f  lr %.2e  gnorm %.3f  %.0f tok/s  MFU %s  peak "
                    "%s  ETA %s\n",
                    (long long)step, sc.total_steps, step_loss, lr, grad_norm, tok_s, mfu_text,
                    format_bytes(double(mem.peak_bytes)).c_str(), format_duration(eta).c_str());
      log << line << std::flush;
      std::map<std::string, double> values{{"step", double(step)},
                                           {"loss", step_loss},
                                           {"lr", lr},
                                           {"grad_norm", grad_norm},
                                           {"tokens_per_s", tok_s},
                                           {"peak_bytes", double(mem.peak_bytes)},
                                           {"tokens", double(clock.state().tokens)}};
      if (peak > 0) values["mfu"] = mfu;
      if (on_gpu) values["reserved_bytes"] = double(mem.reserved_bytes);
      write_metrics("train", values);
      window_start = now;
      window_tokens = 0;
    }
    if (last || (o.eval_every > 0 && step % o.eval_every == 0)) {
      remeasure_peak();
      const EvalCounts e = evaluate_now();
      result.valid_loss = e.loss();
      result.valid_accuracy = e.accuracy();
      log << "eval   step " << step << "  validation loss " << e.loss() << "  token accuracy "
          << e.accuracy() << "\n";
      std::map<std::string, double> values{
          {"step", double(step)}, {"loss", e.loss()}, {"accuracy", e.accuracy()}};
      write_metrics("eval", values);
    }
    if (last || (o.save_every > 0 && step % o.save_every == 0)) save();
  }
  if (o.stop_after > 0 && step - first_step >= o.stop_after && !schedule.done(clock)) save();
  flush_pending();
  result.step = step;

  if (o.sample_tokens > 0 && pp == 1) {
    // Generation is a few small steps with host-side decoding between them: it runs on a CPU
    // copy of the trained model (the run is over, so the model is moved rather than copied).
    if (on_gpu) model.to(Device::cpu());
    SampleOptions so;
    so.prompt = o.sample_prompt;
    so.max_new_tokens = o.sample_tokens;
    so.seed = o.seed;
    result.sample = task->sample(
        *tokenizer, data::build_batch(valid_samples, *objective, valid_order, vlo, 0), so);
    log << "sample: " << result.sample << "\n";
  } else if (o.sample_tokens > 0) {
    // Sampling runs the whole model, which no stage holds (and may not fit one process).
    log << "sample: skipped under pipeline parallelism (no rank holds the whole model); run "
           "`strata generate --checkpoint "
        << (run_dir / checkpoint_dir_name(step)).string() << " --prompt ...` on the checkpoint\n";
  }
  return result;
}

}  // namespace strata::train
