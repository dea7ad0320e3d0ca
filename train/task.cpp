#include "train/task.h"

#include <algorithm>
#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/ops.h"
#include "core/random/philox.h"
#include "train/task_factories.h"

namespace strata::train {

Tensor batch_ids(const std::vector<int32_t>& values, int64_t rows, int64_t cols) {
  std::vector<int64_t> wide(values.begin(), values.end());
  return from_vector(wide, {rows, cols});
}

int64_t loss_positions(const data::Batch& b) {
  return int64_t(
      std::count_if(b.targets.begin(), b.targets.end(), [](int32_t t) { return t != -100; }));
}

Tensor sample_labels(const Tensor& logits, const Tensor& targets, const RandomKey& key,
                     const std::vector<uint64_t>& row_ids) {
  NoGradGuard no_grad;
  const int64_t V = logits.shape().back();
  const int64_t n = targets.numel();
  const int64_t rows = int64_t(row_ids.size());
  STRATA_CHECK(V > 0 && logits.numel() == n * V && rows > 0 && n % rows == 0,
               "sample_labels: logits ", shape_str(logits.shape()), " do not match targets ",
               shape_str(targets.shape()), " of ", rows, " rows");
  const int64_t L = n / rows;
  const std::vector<double> l =
      logits.detach().to(Device::cpu()).to(DType::f64).to_vector<double>();
  const std::vector<int64_t> t = targets.to(Device::cpu()).to(DType::i64).to_vector<int64_t>();
  const Philox rng(key.seed, key.stream, key.step);
  std::vector<int64_t> out(size_t(n), -100);
  for (int64_t i = 0; i < n; ++i) {
    if (t[size_t(i)] == -100) continue;
    const double* row = l.data() + i * V;
    const double mx = *std::max_element(row, row + V);
    double total = 0;
    for (int64_t v = 0; v < V; ++v) total += std::exp(row[v] - mx);
    const uint64_t index =
        key.index_offset + row_ids[size_t(i / L)] * uint64_t(L) + uint64_t(i % L);
    const double target = rng.uniform_f64(index) * total;
    double c = 0;
    int64_t pick = V - 1;  // rounding can leave the last bucket's edge below target
    for (int64_t v = 0; v < V; ++v) {
      c += std::exp(row[v] - mx);
      if (c > target) {
        pick = v;
        break;
      }
    }
    out[size_t(i)] = pick;
  }
  return from_vector(out, targets.shape());
}

std::vector<uint64_t> loss_position_ids(const data::Batch& b) {
  std::vector<uint64_t> out;
  for (int64_t r = 0; r < b.rows; ++r)
    for (int64_t c = 0; c < b.target_len; ++c)
      if (b.targets[size_t(r * b.target_len + c)] != -100)
        out.push_back(b.global_index[size_t(r)] * uint64_t(b.target_len) + uint64_t(c));
  return out;
}

void Task::set_label_sampling(std::optional<RandomKey> key) {
  STRATA_CHECK(!key, "train: the ", kind(),
               " task has no sampled-label loss, which Sophia-G's Hessian pass needs; train it "
               "with optim.name = lion, adamw, adamwscale or adafactor");
}

void fail_pipelined(std::string_view kind, std::string_view what) {
  STRATA_FAIL("train: the ", kind, " task holds one pipeline stage, so it cannot ", what,
              "; the trainer runs stages through the pipeline executor");
}

void Task::set_stage_batches(const std::vector<data::Batch>&) {
  STRATA_FAIL("train: the ", kind(), " task was not built as a pipeline stage");
}

int64_t state_int(const CheckpointState& s, const std::string& key) {
  auto it = s.ints.find(key);
  STRATA_CHECK(it != s.ints.end(), "checkpoint: the trainer state has no integer '", key,
               "' (written by an older or different Strata?)");
  return it->second;
}

double state_double(const CheckpointState& s, const std::string& key) {
  auto it = s.doubles.find(key);
  STRATA_CHECK(it != s.doubles.end(), "checkpoint: the trainer state has no number '", key,
               "' (written by an older or different Strata?)");
  return it->second;
}

void write_objective_spec(const ObjectiveSpec& o, CheckpointState& s) {
  s.ints["objective.seq_len"] = o.seq_len;
  s.doubles["objective.mlm_probability"] = o.mlm_probability;
  s.doubles["objective.noise_density"] = o.noise_density;
  s.doubles["objective.mean_span"] = o.mean_span;
}

void write_precision(const models::Precision& p, CheckpointState& s) {
  s.strings["model.precision"] = p.name();
}

models::Precision read_precision(const CheckpointState& s) {
  auto it = s.strings.find("model.precision");
  if (it == s.strings.end()) return models::Precision::f32();
  return models::Precision::parse(it->second, "checkpoint: model.precision");
}

ObjectiveSpec read_objective_spec(const CheckpointState& s) {
  ObjectiveSpec o;
  o.seq_len = state_int(s, "objective.seq_len");
  o.mlm_probability = state_double(s, "objective.mlm_probability");
  o.noise_density = state_double(s, "objective.noise_density");
  o.mean_span = state_double(s, "objective.mean_span");
  return o;
}

std::string decode_ids(const data::Tokenizer& tokenizer, const std::vector<int64_t>& ids) {
  std::vector<int32_t> narrow;
  for (int64_t id : ids)
    if (id >= 0) narrow.push_back(int32_t(id));
  return tokenizer.decode(narrow);
}

std::unique_ptr<Task> make_task(const ModelSpec& model, const ObjectiveSpec& objective,
                                const data::Tokenizer& tokenizer, uint64_t seed,
                                const TaskPlacement& placement) {
  if (model.type == "decoder")
    return make_decoder_task(model.decoder, objective, tokenizer, seed, placement);
  if (model.type == "bert")
    return make_bert_task(model.bert, objective, tokenizer, seed, placement);
  if (model.type == "t5") return make_t5_task(model.t5, objective, tokenizer, seed, placement);
  STRATA_FAIL("train: unknown model type '", model.type, "'; valid: decoder, bert, t5");
}

std::unique_ptr<Task> make_task(const CheckpointState& s, const data::Tokenizer& tokenizer) {
  auto it = s.strings.find("model");
  STRATA_CHECK(it != s.strings.end(),
               "checkpoint: the trainer state does not say which model it holds (no 'model')");
  const ObjectiveSpec objective = read_objective_spec(s);
  const auto seed = uint64_t(state_int(s, "seed"));
  std::unique_ptr<Task> task;
  if (it->second == "decoder") {
    task = make_decoder_task(read_decoder_config(s), objective, tokenizer, seed);
  } else if (it->second == "bert") {
    task = make_bert_task(read_bert_config(s), objective, tokenizer, seed);
  } else if (it->second == "t5") {
    task = make_t5_task(read_t5_config(s), objective, tokenizer, seed);
  } else {
    STRATA_FAIL("checkpoint: unknown model '", it->second,
                "'; this Strata knows decoder, bert, t5");
  }
  NoGradGuard no_grad;
  models::Module& m = task->module();
  for (const auto& [name, p] : m.named_parameters()) {
    auto t = s.model.find(name);
    STRATA_CHECK(t != s.model.end(), "checkpoint: no parameter '", name, "' for its ", it->second,
                 " model");
    m.load_parameter(name, t->second);
  }
  m.eval();
  return task;
}

}  // namespace strata::train
