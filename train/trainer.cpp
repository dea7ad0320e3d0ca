#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <ostream>

#include "core/fma_peak.h"
#include "core/ops.h"
#include "data/loader.h"
#include "data/shards.h"
#include "data/tokenizer.h"
#include "models/generate.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/clock.h"
#include "optim/schedule.h"
#include "train/checkpoint.h"
#include "train/metrics.h"

namespace strata::train {

namespace fs = std::filesystem;

namespace {

Tensor to_ids(const std::vector<int32_t>& v, int64_t rows, int64_t cols) {
  std::vector<int64_t> w(v.begin(), v.end());
  return from_vector(w, {rows, cols});
}

std::unique_ptr<optim::Optimizer> make_optimizer(const TrainOptions& o,
                                                 const models::DecoderLM& model) {
  std::vector<optim::NamedParam> named;
  for (const auto& [name, p] : model.named_parameters()) named.push_back({name, p});
  const optim::Hyper hyper{o.lr, o.weight_decay, o.beta1, o.beta2, o.eps};
  auto groups = optim::make_param_groups(named, hyper);
  if (o.optimizer == "adamw") return std::make_unique<optim::AdamW>(std::move(groups));
  if (o.optimizer == "adamwscale") return std::make_unique<optim::AdamWScale>(std::move(groups));
  STRATA_FAIL("train: unknown optimizer '", o.optimizer, "'; valid: adamw, adamwscale");
}

// The nominal step axis of the schedule: exact for a step budget, derived for tokens, and a
// fixed nominal length for wall time (the schedule then follows the fraction of time used).
double nominal_steps(const TrainOptions& o, int64_t tokens_per_step) {
  if (o.budget_unit == "steps") return o.budget;
  if (o.budget_unit == "tokens") return std::ceil(o.budget / double(tokens_per_step));
  return 1000;
}

struct Eval {
  double loss = 0, accuracy = 0;
};

// Mean loss and next-token accuracy over the first `batches` validation batches (fixed order).
Eval evaluate(models::DecoderLM& model, const data::SampleSource& samples,
              const data::Objective& objective, const data::Permutation& order,
              const data::LoaderOptions& lo, int64_t batches) {
  NoGradGuard no_grad;
  models::EvalModeGuard eval_mode(model);
  Eval e;
  int64_t counted = 0;
  for (int64_t b = 0; b < batches; ++b) {
    const data::Batch batch =
        data::build_batch(samples, objective, order, lo, uint64_t(b * lo.global_batch));
    Tensor ids = to_ids(batch.inputs, batch.rows, batch.input_len);
    Tensor targets = to_ids(batch.targets, batch.rows, batch.target_len);
    Tensor logits = model.forward(ids);
    e.loss += cross_entropy(logits, targets).item<double>();
    Tensor valid = ne(targets, scalar_tensor(-100, DType::i64));
    Tensor hits = logical_and(eq(argmax(logits, -1), targets), valid);
    e.accuracy += double(sum(hits).item<int64_t>());
    counted += sum(valid).item<int64_t>();
  }
  e.loss /= double(batches);
  e.accuracy /= double(std::max<int64_t>(counted, 1));
  return e;
}

CheckpointState snapshot(const models::DecoderLM& model, const optim::Optimizer& opt,
                         const optim::Clock& clock, uint64_t loader_counter, const TrainOptions& o,
                         const std::string& fingerprint) {
  CheckpointState s;
  for (const auto& [name, p] : model.named_parameters()) s.model[name] = p.detach();
  for (const auto& [key, t] : opt.state()) {
    const auto slash = key.rfind('/');
    s.optim[key.substr(0, slash)][key.substr(slash + 1)] = t.detach();
  }
  const optim::ClockState c = clock.state();
  s.ints["optimizer_steps"] = opt.step_count();
  s.ints["clock_steps"] = c.steps;
  s.ints["tokens_consumed"] = c.tokens;
  s.ints["loader_counter"] = int64_t(loader_counter);
  s.ints["samples_consumed"] = int64_t(loader_counter);
  s.ints["seed"] = int64_t(o.seed);
  s.doubles["clock_seconds"] = c.seconds;
  s.doubles["clock_reference_seconds"] = c.reference_seconds;
  s.strings["config"] = o.config_text;
  s.strings["tokenizer_fingerprint"] = fingerprint;
  s.strings["model"] = "decoder";
  s.strings["tokenizer_path"] = o.tokenizer;
  const models::DecoderConfig& m = model.config();
  s.ints["model.vocab"] = m.vocab;
  s.ints["model.d_model"] = m.d_model;
  s.ints["model.n_layers"] = m.n_layers;
  s.ints["model.n_heads"] = m.n_heads;
  s.ints["model.n_kv_heads"] = m.n_kv_heads;
  s.ints["model.d_ff"] = m.d_ff;
  s.ints["model.max_seq"] = m.max_seq;
  s.ints["model.tie_embeddings"] = m.tie_embeddings;
  s.doubles["model.rope_base"] = m.rope_base;
  s.doubles["model.norm_eps"] = m.norm_eps;
  s.doubles["model.dropout"] = m.dropout;
  s.doubles["model.init_std"] = m.init_std;
  return s;
}

void restore(const CheckpointState& s, models::DecoderLM& model, optim::Optimizer& opt,
             optim::Clock& clock, const std::string& fingerprint, const fs::path& dir) {
  auto fp = s.strings.find("tokenizer_fingerprint");
  STRATA_CHECK(fp != s.strings.end() && fp->second == fingerprint, "resume from ", dir.string(),
               ": the checkpoint was trained with tokenizer '",
               fp == s.strings.end() ? "?" : fp->second, "' but this run uses '", fingerprint,
               "'; use the same --data.tokenizer or start a new run_dir");
  NoGradGuard no_grad;
  for (const auto& [name, p] : model.named_parameters()) {
    auto it = s.model.find(name);
    STRATA_CHECK(it != s.model.end(), "resume from ", dir.string(), ": no parameter '", name,
                 "' in the checkpoint (was it saved by a different model config?)");
    model.load_parameter(name, it->second);
  }
  std::map<std::string, Tensor> state;
  for (const auto& [param, entries] : s.optim)
    for (const auto& [k, t] : entries) state[param + "/" + k] = t;
  opt.load_state(state, s.ints.at("optimizer_steps"));
  optim::ClockState c;
  c.steps = s.ints.at("clock_steps");
  c.tokens = s.ints.at("tokens_consumed");
  c.seconds = s.doubles.at("clock_seconds");
  c.reference_seconds = s.doubles.at("clock_reference_seconds");
  clock.load_state(c);
}

}  // namespace

LoadedDecoder load_decoder(const std::string& dir) {
  const CheckpointState s = load_checkpoint(dir);
  auto it = s.strings.find("model");
  STRATA_CHECK(it != s.strings.end() && it->second == "decoder", "load_decoder: ", dir,
               " does not hold a decoder LM checkpoint written by `strata train`");
  models::DecoderConfig m;
  m.vocab = s.ints.at("model.vocab");
  m.d_model = s.ints.at("model.d_model");
  m.n_layers = s.ints.at("model.n_layers");
  m.n_heads = s.ints.at("model.n_heads");
  m.n_kv_heads = s.ints.at("model.n_kv_heads");
  m.d_ff = s.ints.at("model.d_ff");
  m.max_seq = s.ints.at("model.max_seq");
  m.tie_embeddings = s.ints.at("model.tie_embeddings") != 0;
  m.rope_base = s.doubles.at("model.rope_base");
  m.norm_eps = s.doubles.at("model.norm_eps");
  m.dropout = s.doubles.at("model.dropout");
  m.init_std = s.doubles.at("model.init_std");
  LoadedDecoder out;
  out.model = std::make_unique<models::DecoderLM>(m, uint64_t(s.ints.at("seed")));
  NoGradGuard no_grad;
  for (const auto& [name, p] : out.model->named_parameters())
    out.model->load_parameter(name, s.model.at(name));
  out.model->eval();
  out.tokenizer = s.strings.at("tokenizer_path");
  out.step = s.ints.at("step");
  return out;
}

TrainResult train_decoder(const TrainOptions& o, std::ostream& log) {
  if (o.threads > 0) Runtime::get().set_num_threads(o.threads);
  STRATA_CHECK(o.micro_batch > 0 && o.grad_accum > 0 && o.seq_len > 1,
               "train: micro_batch, grad_accum must be positive and seq_len > 1");
  const auto tokenizer = data::load_tokenizer(o.tokenizer);
  const std::string fingerprint = tokenizer->fingerprint();
  auto train_docs = std::make_shared<data::ShardedDataset>(o.train_data);
  auto valid_docs = std::make_shared<data::ShardedDataset>(o.valid_data);
  train_docs->require_tokenizer(fingerprint);
  valid_docs->require_tokenizer(fingerprint);

  models::DecoderConfig mc = o.model;
  if (mc.vocab == 0) mc.vocab = tokenizer->vocab_size();
  STRATA_CHECK(mc.vocab >= tokenizer->vocab_size(), "train: model.vocab ", mc.vocab,
               " is smaller than the tokenizer's ", tokenizer->vocab_size());
  if (mc.max_seq == 0) mc.max_seq = o.seq_len;
  models::DecoderLM model(mc, o.seed);
  model.train();
  auto opt = make_optimizer(o, model);

  auto objective = std::make_shared<data::CausalLm>(data::CausalLmOptions{o.seq_len, true},
                                                    tokenizer->special());
  const int64_t tokens_per_step = o.micro_batch * o.grad_accum * o.seq_len;
  optim::ScheduleConfig sc;
  sc.name = o.schedule;
  sc.base_lr = o.lr;
  sc.warmup_steps = double(o.warmup_steps);
  sc.total_steps = nominal_steps(o, tokens_per_step);
  sc.final_lr = o.final_lr;
  sc.floor = o.final_lr / o.lr;
  const optim::BudgetSchedule schedule(optim::make_schedule(sc),
                                       optim::parse_clock_kind(o.budget_unit), o.budget);
  optim::Clock clock(optim::parse_clock_kind(o.budget_unit));

  TrainResult result;
  uint64_t counter = 0;
  const fs::path run_dir = o.run_dir;
  std::optional<fs::path> from;
  if (o.resume == "auto") {
    from = find_latest_checkpoint(run_dir);
  } else if (o.resume != "none" && !o.resume.empty()) {
    from = fs::path(o.resume);
  }
  if (from) {
    const CheckpointState s = load_checkpoint(*from);
    restore(s, model, *opt, clock, fingerprint, *from);
    counter = uint64_t(s.ints.at("loader_counter"));
    result.resumed_from = s.ints.at("step");
    log << "resumed from " << from->string() << " (step " << result.resumed_from << ")\n";
  }
  int64_t step = result.resumed_from;

  data::LoaderOptions lo;
  lo.seed = o.seed;
  lo.global_batch = o.micro_batch;
  data::Loader loader(train_docs, objective, lo, counter);
  data::LoaderOptions vlo;
  vlo.seed = o.seed;
  vlo.global_batch = o.micro_batch;
  vlo.shuffle = false;
  const data::SampleSource valid_samples(valid_docs, objective->layout());
  const data::Permutation valid_order(uint64_t(valid_samples.size()), o.seed, false);

  // Other processes can only make a measured peak too low, never too high, so the peak is the
  // largest measurement so far: taken at start-up and again at every evaluation.
  double peak = o.peak_gflops > 0 ? o.peak_gflops : measure_fma_peak_gflops(false);
  auto remeasure_peak = [&] {
    if (o.peak_gflops <= 0) peak = std::max(peak, measure_fma_peak_gflops(false));
  };
  const double flops_per_token = model.flops_per_token(o.seq_len);
  MetricsLog metrics((run_dir / "metrics.jsonl").string());
  log << "decoder: " << model.num_parameters() << " parameters ("
      << model.num_non_embedding_parameters() << " without embeddings), " << flops_per_token / 1e6
      << " MFLOP/token; " << loader.num_samples() << " training samples of " << o.seq_len
      << " tokens; budget " << o.budget << " " << o.budget_unit << "; " << Runtime::get().describe()
      << "; peak " << peak << " GFLOP/s\n";

  auto save = [&]() {
    const fs::path dir = save_checkpoint(
        run_dir, step, snapshot(model, *opt, clock, loader.counter(), o, fingerprint), o.keep_last);
    log << "saved " << dir.string() << "\n";
  };

  opt->set_lr(schedule.lr(clock));
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t first_step = step;
  const double first_fraction = schedule.fraction(clock);  // of the budget, at start or resume
  auto window_start = t0;
  int64_t window_tokens = 0;
  while (!schedule.done(clock)) {
    if (o.stop_after > 0 && step - first_step >= o.stop_after) break;
    model.set_step(uint64_t(step));
    double step_loss = 0;
    for (int64_t m = 0; m < o.grad_accum; ++m) {
      const data::Batch batch = loader.next();
      Tensor ids = to_ids(batch.inputs, batch.rows, batch.input_len);
      Tensor targets = to_ids(batch.targets, batch.rows, batch.target_len);
      Tensor loss = model.loss(ids, targets);
      const double lv = loss.item<double>();
      STRATA_CHECK(std::isfinite(lv), "train: the loss became ", lv, " at step ", step + 1,
                   "; stopping without saving, so the last good checkpoint in ", run_dir.string(),
                   " stays intact (lower --optim.lr or raise --optim.warmup_steps)");
      step_loss += lv / double(o.grad_accum);
      (o.grad_accum > 1 ? loss * (1.0 / double(o.grad_accum)) : loss).backward();
    }
    // clip <= 0 turns clipping off; the norm is still measured for the log and the NaN check.
    const double grad_norm =
        o.clip > 0 ? optim::clip_grad_norm(*opt, o.clip) : optim::grad_norm(opt->params());
    STRATA_CHECK(std::isfinite(grad_norm), "train: the gradient norm became ", grad_norm,
                 " at step ", step + 1,
                 "; stopping without saving, so the last good checkpoint in ", run_dir.string(),
                 " stays intact");
    const double lr = opt->lr();
    opt->step();
    opt->zero_grad();
    clock.advance(tokens_per_step);
    opt->set_lr(schedule.lr(clock));
    ++step;
    window_tokens += tokens_per_step;
    result.losses.push_back(step_loss);

    const bool last = schedule.done(clock);
    if (step % o.log_every == 0 || last) {
      const auto now = std::chrono::steady_clock::now();
      const double secs = std::chrono::duration<double>(now - window_start).count();
      const double tok_s = double(window_tokens) / std::max(secs, 1e-9);
      const double mfu = peak > 0 ? tok_s * flops_per_token / (peak * 1e9) : 0.0;
      const double frac = schedule.fraction(clock);
      const double elapsed = std::chrono::duration<double>(now - t0).count();
      const double done_here = frac - first_fraction;
      const double eta = done_here > 0 ? elapsed * (1 - frac) / done_here : 0;
      const auto mem = Runtime::get().memory_stats();
      char line[256];
      std::snprintf(line, sizeof line,
                    "step %6lld/%.0f  loss %.4f  lr %.2e  gnorm %.3f  %.0f tok/s  MFU %.1f%%  peak "
                    "%s  ETA %s\n",
                    (long long)step, sc.total_steps, step_loss, lr, grad_norm, tok_s, 100 * mfu,
                    format_bytes(double(mem.peak_bytes)).c_str(), format_duration(eta).c_str());
      log << line << std::flush;
      metrics.write("train", {{"step", double(step)},
                              {"loss", step_loss},
                              {"lr", lr},
                              {"grad_norm", grad_norm},
                              {"tokens_per_s", tok_s},
                              {"mfu", mfu},
                              {"peak_bytes", double(mem.peak_bytes)},
                              {"tokens", double(clock.state().tokens)}});
      window_start = now;
      window_tokens = 0;
    }
    if (last || (o.eval_every > 0 && step % o.eval_every == 0)) {
      remeasure_peak();
      const Eval e = evaluate(model, valid_samples, *objective, valid_order, vlo, o.eval_batches);
      result.valid_loss = e.loss;
      result.valid_accuracy = e.accuracy;
      log << "eval   step " << step << "  validation loss " << e.loss << "  token accuracy "
          << e.accuracy << "\n";
      metrics.write("eval", {{"step", double(step)}, {"loss", e.loss}, {"accuracy", e.accuracy}});
    }
    if (last || (o.save_every > 0 && step % o.save_every == 0)) save();
  }
  if (o.stop_after > 0 && step - first_step >= o.stop_after && !schedule.done(clock)) save();
  result.step = step;

  if (o.sample_tokens > 0 && !o.sample_prompt.empty()) {
    std::vector<int32_t> p = tokenizer->encode(o.sample_prompt);
    if (!p.empty()) {
      models::GenerateOptions g;
      g.max_new_tokens = std::min<int64_t>(o.sample_tokens, mc.max_seq - int64_t(p.size()));
      g.greedy = false;
      g.temperature = 0.8;
      g.top_k = 40;
      g.seed = o.seed;
      Tensor out = models::generate(model, to_ids(p, 1, int64_t(p.size())), g);
      const auto ids = out.to_vector<int64_t>();
      std::vector<int32_t> tokens(ids.begin(), ids.end());
      result.sample = tokenizer->decode(tokens);
      log << "sample: " << result.sample << "\n";
    }
  }
  return result;
}

}  // namespace strata::train
