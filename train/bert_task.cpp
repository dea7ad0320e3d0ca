// Crammed BERT on the masked-LM objective; the loss and the hits are taken at the selected
// positions only (sparse prediction).
#include <sstream>

#include "core/ops.h"
#include "models/pipeline_stage_bert.h"
#include "parallel/tp_mappings.h"
#include "train/model_task.h"

namespace strata::train {

namespace {

class BertTask final : public ModelTask<models::BertMLM, models::BertStage, data::MaskedLm> {
 public:
  BertTask(const models::BertConfig& cfg, const ObjectiveSpec& spec,
           const data::Tokenizer& tokenizer, uint64_t seed, const TaskPlacement& placement)
      : ModelTask(
            spec,
            std::make_shared<data::MaskedLm>(
                data::MaskedLmOptions{spec.seq_len, spec.mlm_probability, 0.8, 0.5},
                tokenizer.special(), tokenizer.vocab_size()),
            placement, cfg.n_layers,
            [&](const models::StageLayout& layout, int stage) {
              return std::make_unique<models::BertStage>(cfg, seed, layout, stage);
            },
            [&] { return std::make_unique<models::BertMLM>(cfg, seed); }),
        cfg_(cfg) {}

  std::string_view kind() const override { return "bert"; }
  void set_stage_batches(const std::vector<data::Batch>& batches) override {
    std::vector<models::BertMicroBatch> mb;
    for (const data::Batch& b : batches) {
      const Tensor ids = batch_ids(b.inputs, b.rows, b.input_len);
      mb.push_back({ids, batch_ids(b.targets, b.rows, b.target_len), padding_mask(b, ids)});
      // Sophia's pass: the last stage draws at the masked positions, keyed as loss() does.
      if (sampling_)
        mb.back().relabel = [key = *sampling_, places = loss_position_ids(b)](
                                const Tensor& logits, const Tensor& targets) {
          const int64_t m = targets.numel();
          STRATA_CHECK(m == int64_t(places.size()), "bert: the MLM head predicts ", m,
                       " positions but the batch has ", places.size(), " masked ones");
          return sample_labels(logits, targets.reshape({m, 1}), key, places)
              .reshape({m})
              .to(logits.device());
        };
    }
    stage_->set_micro_batches(std::move(mb));
  }

  Tensor loss(const data::Batch& b) override {
    const Tensor ids = batch_ids(b.inputs, b.rows, b.input_len);
    const Tensor targets = batch_ids(b.targets, b.rows, b.target_len);
    if (!sampling_) return model().mlm_loss(ids, targets, padding_mask(b, ids));
    // Sophia's pass: draw from the vocabulary distribution at the masked positions (not from
    // the hidden states, NTNG's slip, ALGORITHMS.md 3.6), over the whole vocabulary (gathered
    // under tensor parallelism, with its gradient), keyed by each position's global place.
    const models::MLMOutput out = model().mlm(ids, targets, padding_mask(b, ids));
    const std::vector<uint64_t> places = loss_position_ids(b);
    STRATA_CHECK(out.targets.numel() == int64_t(places.size()), "bert: the MLM head predicts ",
                 out.targets.numel(), " positions but the batch has ", places.size(),
                 " masked ones");
    const bool split = cfg_.tp != nullptr && cfg_.tp->size() > 1;
    const Tensor logits =
        split ? parallel::gather_from_tp(out.logits, *cfg_.tp, "tp.sophia.mlm_logits") : out.logits;
    const Tensor sampled =
        sample_labels(logits, out.targets.reshape({out.targets.numel(), 1}), *sampling_, places);
    return cross_entropy(logits, sampled.reshape({out.targets.numel()}).to(logits.device()));
  }

  // Whole model: loss() draws; pipeline stage: set_stage_batches hands the draw to the last stage.
  void set_label_sampling(std::optional<RandomKey> key) override { sampling_ = key; }

  void evaluate(const data::Batch& b, EvalCounts& c) override {
    const Tensor ids = batch_ids(b.inputs, b.rows, b.input_len);
    const models::MLMOutput out =
        model().mlm(ids, batch_ids(b.targets, b.rows, b.target_len), padding_mask(b, ids));
    c.loss_sum += out.loss.item<double>();
    c.batches += 1;
    if (out.targets.numel() > 0) {
      // Under tensor parallelism the logits are this rank's vocabulary slice: gather them (the
      // targets, and so this branch, are the same on every rank of the group).
      const bool split = cfg_.tp != nullptr && cfg_.tp->size() > 1;
      const Tensor logits =
          split ? parallel::gather_from_tp(out.logits, *cfg_.tp, "tp.eval.mlm_logits") : out.logits;
      c.correct += sum(eq(argmax(logits, -1), out.targets)).item<int64_t>();
    }
    c.counted += out.targets.numel();
  }

  int64_t tokens_per_row() const override { return spec_.seq_len; }
  double flops_per_row() const override {
    return models::BertMLM::flops_per_token(cfg_, spec_.seq_len, spec_.mlm_probability) *
           double(spec_.seq_len);
  }
  std::string describe() const override {
    std::ostringstream s;
    const auto& c = cfg_;
    s << "bert d_model " << c.d_model << ", " << c.n_layers << " layers, " << c.n_heads
      << " heads, d_ff " << c.d_ff << " (GLU), vocab " << c.vocab << ": "
      << models::BertMLM::count_parameters(c) << " parameters; precision " << c.precision.name();
    return s.str();
  }

  // The first validation row with each masked position shown as [target -> prediction].
  std::string sample(const data::Tokenizer& tokenizer, const data::Batch& valid,
                     const SampleOptions&) override {
    NoGradGuard no_grad;
    models::BertMLM& m = model();
    models::EvalModeGuard eval(m);
    const int64_t L = valid.input_len;
    const std::vector<int32_t> row(valid.inputs.begin(), valid.inputs.begin() + L);
    const std::vector<int32_t> labels(valid.targets.begin(), valid.targets.begin() + L);
    const Tensor logits = m.mlm_logits(m.forward(batch_ids(row, 1, L)));
    const auto pred = argmax(logits, -1).to_vector<int64_t>();
    std::ostringstream s;
    int64_t hits = 0, masked = 0;
    std::vector<int32_t> run;  // unmasked tokens since the last masked one
    for (int64_t i = 0; i < L; ++i) {
      if (labels[size_t(i)] < 0) {
        run.push_back(row[size_t(i)]);
        continue;
      }
      ++masked;
      hits += pred[size_t(i)] == labels[size_t(i)];
      s << tokenizer.decode(run) << " [" << decode_ids(tokenizer, {labels[size_t(i)]}) << " -> "
        << decode_ids(tokenizer, {pred[size_t(i)]}) << "]";
      run.clear();
    }
    s << tokenizer.decode(run);
    return std::to_string(hits) + "/" + std::to_string(masked) +
           " masked tokens predicted, [target -> prediction]:" + s.str();
  }

  std::string generate(const data::Tokenizer&, std::string_view, const SampleOptions&) override {
    STRATA_FAIL(
        "generate: a BERT checkpoint is an encoder and does not generate text; fine-tune "
        "it with `strata finetune`, or generate with a decoder or T5 checkpoint");
  }

  void save_spec(CheckpointState& s) const override {
    const models::BertConfig& m = cfg_;
    s.strings["model"] = "bert";
    s.ints["model.vocab"] = m.vocab;
    s.ints["model.d_model"] = m.d_model;
    s.ints["model.n_layers"] = m.n_layers;
    s.ints["model.n_heads"] = m.n_heads;
    s.ints["model.d_ff"] = m.d_ff;
    s.ints["model.max_seq"] = m.max_seq;
    s.ints["model.pad_id"] = m.pad_id;
    s.doubles["model.norm_eps"] = m.norm_eps;
    s.doubles["model.init_std"] = m.init_std;
    s.doubles["model.dropout"] = m.dropout;
    write_precision(m.precision, s);
    write_objective_spec(spec_, s);
  }

 private:
  // Undefined (all real) unless the batch holds padding: the common packed case stays mask-free.
  Tensor padding_mask(const data::Batch& b, const Tensor& ids) const {
    const int64_t pad = cfg_.pad_id;
    if (pad < 0 || std::find(b.inputs.begin(), b.inputs.end(), int32_t(pad)) == b.inputs.end())
      return {};
    return ne(ids, scalar_tensor(double(pad), DType::i64));
  }

  models::BertConfig cfg_;             // as built: vocab and pad_id resolved
  std::optional<RandomKey> sampling_;  // Sophia's Hessian pass (set_label_sampling)
};

}  // namespace

models::BertConfig read_bert_config(const CheckpointState& s) {
  models::BertConfig m;
  m.vocab = state_int(s, "model.vocab");
  m.d_model = state_int(s, "model.d_model");
  m.n_layers = state_int(s, "model.n_layers");
  m.n_heads = state_int(s, "model.n_heads");
  m.d_ff = state_int(s, "model.d_ff");
  m.max_seq = state_int(s, "model.max_seq");
  m.pad_id = state_int(s, "model.pad_id");
  m.norm_eps = state_double(s, "model.norm_eps");
  m.init_std = state_double(s, "model.init_std");
  m.dropout = state_double(s, "model.dropout");
  m.precision = read_precision(s);
  return m;
}

std::unique_ptr<Task> make_bert_task(models::BertConfig cfg, const ObjectiveSpec& objective,
                                     const data::Tokenizer& tokenizer, uint64_t seed,
                                     const TaskPlacement& placement) {
  const data::SpecialIds& sp = tokenizer.special();
  STRATA_CHECK(
      sp.mask >= 0 && sp.cls >= 0 && sp.sep >= 0, "train: BERT needs a tokenizer with ",
      "[MASK], [CLS] and [SEP], but '", tokenizer.kind(),
      "' has none; train one with `strata tokenizer train --style bert` (configs/bert-*.ini "
      "do this through data.tokenizer_style = bert)");
  if (cfg.vocab == 0) cfg.vocab = tokenizer.vocab_size();
  STRATA_CHECK(cfg.vocab >= tokenizer.vocab_size(), "train: model.vocab ", cfg.vocab,
               " is smaller than the tokenizer's ", tokenizer.vocab_size());
  STRATA_CHECK(objective.seq_len <= cfg.max_seq, "train: data.seq_len ", objective.seq_len,
               " exceeds the BERT position table (model.max_seq ", cfg.max_seq, ")");
  cfg.pad_id = sp.pad;
  cfg.tp = placement.tp;
  cfg.validate();
  return std::make_unique<BertTask>(cfg, objective, tokenizer, seed, placement);
}

}  // namespace strata::train
