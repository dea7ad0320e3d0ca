#include "train/trainer_state.h"

#include <algorithm>
#include <string>

#include "core/autograd/grad_mode.h"
#include "core/ops.h"
#include "train/checkpoint.h"
#include "train/parallel_checkpoint.h"

namespace strata::train {

namespace fs = std::filesystem;

namespace {

bool one_process(const parallel::Topology& t) {
  return t.world_size() == 1;
}

// "<param>/<state>" keys of Optimizer::state() as (param, state).
std::pair<std::string, std::string> split_state_key(const std::string& key) {
  const auto slash = key.rfind('/');
  return {key.substr(0, slash), key.substr(slash + 1)};
}

// Each parameter's own step count (Optimizer::param_steps) under "optimizer_step.<param>";
// a checkpoint without them (written before per-parameter counts) gives every parameter the
// global count, which is what every parameter then had.
constexpr const char* kParamStepPrefix = "optimizer_step.";

std::map<std::string, int64_t> read_param_steps(const CheckpointState& s) {
  std::map<std::string, int64_t> out;
  const std::string prefix = kParamStepPrefix;
  for (auto it = s.ints.lower_bound(prefix); it != s.ints.end() && it->first.starts_with(prefix);
       ++it)
    out[it->first.substr(prefix.size())] = it->second;
  return out;
}

// Under pipeline parallelism each stage's optimizer counts only its own parameters, and world
// rank 0 writes the trainer state: the stages' "optimizer_step.*" entries are gathered over the
// pp group (as text, one i64 per character) so every rank's state holds the whole model's.
void gather_stage_param_steps(CheckpointState& state, parallel::Communicator& pp) {
  std::string text;
  const std::string prefix = kParamStepPrefix;
  for (auto it = state.ints.lower_bound(prefix);
       it != state.ints.end() && it->first.starts_with(prefix); ++it)
    text += it->first + "=" + std::to_string(it->second) + "\n";
  const Tensor len =
      pp.all_gather(from_vector<int64_t>({int64_t(text.size())}, {1}), 0, "pp.optimizer_steps.len");
  int64_t longest = 0;
  for (int64_t n : len.to_vector<int64_t>()) longest = std::max(longest, n);
  std::vector<int64_t> chars(size_t(longest), 0);
  for (size_t i = 0; i < text.size(); ++i) chars[i] = int64_t(static_cast<unsigned char>(text[i]));
  const std::vector<int64_t> all =
      pp.all_gather(from_vector<int64_t>(chars, {longest}), 0, "pp.optimizer_steps")
          .to_vector<int64_t>();
  std::string line;
  for (int64_t c : all) {
    if (c == 0) continue;  // padding
    if (c != '\n') {
      line += char(c);
      continue;
    }
    const size_t eq = line.rfind('=');
    state.ints[line.substr(0, eq)] = std::stoll(line.substr(eq + 1));
    line.clear();
  }
}

// How a state tensor is laid out over tensor parallelism: as its parameter when it has the
// parameter's (local) shape, else (Adafactor's factored moments, refused under tp > 1)
// replicated with its own shape.
models::Sharding state_sharding(const models::Module& model, const std::string& param,
                                const Tensor& t) {
  const models::Sharding& ps = model.sharding(param);
  if (t.shape() == ps.local_shape()) return ps;
  STRATA_CHECK(ps.is_replicated(), "checkpoint: optimizer state of '", param, "' has shape ",
               shape_str(t.shape()),
               ", not its sharded parameter's; such state cannot be "
               "split over tensor parallelism");
  return models::Sharding::replicated(t.shape());
}

void check_fits(const CheckpointState& s, const std::string& fingerprint,
                std::string_view expected_kind, const fs::path& dir) {
  auto fp = s.strings.find("tokenizer_fingerprint");
  STRATA_CHECK(fp != s.strings.end() && fp->second == fingerprint, "resume from ", dir.string(),
               ": the checkpoint was trained with tokenizer '",
               fp == s.strings.end() ? "?" : fp->second, "' but this run uses '", fingerprint,
               "'; use the same --data.tokenizer or start a new run_dir");
  auto kind = s.strings.find("model");
  STRATA_CHECK(kind != s.strings.end() && kind->second == expected_kind, "resume from ",
               dir.string(), ": the checkpoint holds a ",
               kind == s.strings.end() ? "?" : kind->second, " model but this run trains a ",
               expected_kind, "; use a new run.dir");
}

}  // namespace

CheckpointState trainer_state(Task& task, const optim::Optimizer& opt, const optim::Clock& clock,
                              uint64_t loader_counter, const TrainOptions& o,
                              const std::string& fingerprint) {
  CheckpointState s;
  const optim::ClockState c = clock.state();
  s.ints["optimizer_steps"] = opt.step_count();
  for (const auto& [param, t] : opt.param_steps()) s.ints[kParamStepPrefix + param] = t;
  s.ints["clock_steps"] = c.steps;
  s.ints["tokens_consumed"] = c.tokens;
  s.ints["loader_counter"] = int64_t(loader_counter);
  s.ints["samples_consumed"] = int64_t(loader_counter);
  s.ints["seed"] = int64_t(o.seed);
  s.doubles["clock_seconds"] = c.seconds;
  s.doubles["clock_reference_seconds"] = c.reference_seconds;
  s.doubles["clock_flops"] = c.flops;
  s.strings["config"] = o.config_text;
  s.strings["tokenizer_fingerprint"] = fingerprint;
  s.strings["tokenizer_path"] = o.tokenizer;
  task.save_spec(s);
  return s;
}

fs::path save_training_checkpoint(const fs::path& run_dir, int64_t step, models::Module& model,
                                  const optim::Optimizer& opt, CheckpointState state, int keep_last,
                                  const parallel::Topology& topology) {
  if (one_process(topology)) {
    for (const auto& [name, p] : model.named_parameters()) state.model[name] = p.detach();
    for (const auto& [key, t] : opt.state()) {
      const auto [param, name] = split_state_key(key);
      state.optim[param][name] = t.detach();
    }
    return save_checkpoint(run_dir, step, state, keep_last);
  }
  if (topology.layout().pp > 1) gather_stage_param_steps(state, topology.pp());
  ShardedCheckpointState s;
  s.model = sharded_parameters(model);
  for (const auto& [key, t] : opt.state()) {
    const auto [param, name] = split_state_key(key);
    s.optim[param][name] = {t.detach(), state_sharding(model, param, t)};
  }
  s.strings = std::move(state.strings);
  s.ints = std::move(state.ints);
  s.doubles = std::move(state.doubles);
  ParallelSaveOptions so;
  so.keep_last = keep_last;
  return save_sharded_checkpoint(run_dir, step, s, topology.world(), so);
}

std::optional<fs::path> resume_source(const std::string& resume, const fs::path& run_dir,
                                      const parallel::Topology& topology) {
  if (resume == "none" || resume.empty()) return std::nullopt;
  if (resume != "auto") return fs::path(resume);
  if (one_process(topology)) return find_latest_checkpoint(run_dir);
  return find_latest_checkpoint(run_dir, topology.world());
}

CheckpointState load_training_checkpoint(const fs::path& dir, models::Module& model,
                                         optim::Optimizer& opt, optim::Clock& clock,
                                         const std::string& fingerprint,
                                         std::string_view expected_kind,
                                         const parallel::Topology& topology, bool verified) {
  CheckpointState s;
  if (one_process(topology)) {
    s = load_checkpoint(dir);
  } else {
    ShardRequest request;
    request.model = parameter_shardings(model);
    for (const auto& [key, t] : opt.state()) {
      const auto [param, name] = split_state_key(key);
      request.optim[param][name] = state_sharding(model, param, t);
    }
    s = load_sharded_checkpoint(dir, request, topology.world(), !verified);
  }
  check_fits(s, fingerprint, expected_kind, dir);
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
  opt.load_state(state, s.ints.at("optimizer_steps"), read_param_steps(s));
  optim::ClockState c;
  c.steps = s.ints.at("clock_steps");
  c.tokens = s.ints.at("tokens_consumed");
  c.seconds = s.doubles.at("clock_seconds");
  c.reference_seconds = s.doubles.at("clock_reference_seconds");
  // Checkpoints written before FLOP budgets existed count none.
  const auto flops = s.doubles.find("clock_flops");
  c.flops = flops == s.doubles.end() ? 0.0 : flops->second;
  clock.load_state(c);
  return s;
}

}  // namespace strata::train
