// T5 v1.1 on span corruption: the encoder reads the corrupted text, the decoder predicts the
// sentinel-delimited spans.
#include <sstream>

#include "core/ops.h"
#include "models/pipeline_stage_t5.h"
#include "train/model_task.h"

namespace strata::train {

namespace {

class T5Task final : public ModelTask<models::T5Model, models::T5Stage, data::SpanCorruption> {
 public:
  T5Task(const models::T5Config& cfg, const ObjectiveSpec& spec, const data::Tokenizer& tokenizer,
         uint64_t seed, const TaskPlacement& placement)
      : ModelTask(
            spec,
            std::make_shared<data::SpanCorruption>(
                data::SpanCorruptionOptions{spec.seq_len, spec.noise_density, spec.mean_span},
                tokenizer.special()),
            placement, models::T5Stage::num_blocks(cfg),
            [&](const models::StageLayout& layout, int stage) {
              return std::make_unique<models::T5Stage>(cfg, seed, layout, stage);
            },
            [&] { return std::make_unique<models::T5Model>(cfg, seed); }),
        cfg_(cfg) {}

  std::string_view kind() const override { return "t5"; }
  void set_stage_batches(const std::vector<data::Batch>& batches) override {
    std::vector<models::T5MicroBatch> mb;
    for (const data::Batch& b : batches) {
      const Tensor ids = batch_ids(b.inputs, b.rows, b.input_len);
      mb.push_back({ids, batch_ids(b.targets, b.rows, b.target_len), padding_mask(b, ids)});
      // Sophia's pass: the last stage draws, keyed as loss() does.
      if (sampling_)
        mb.back().relabel = [key = *sampling_, rows = b.global_index](const Tensor& logits,
                                                                      const Tensor& labels) {
          return sample_labels(logits, labels, key, rows).to(logits.device());
        };
    }
    stage_->set_micro_batches(std::move(mb));
  }

  Tensor loss(const data::Batch& b) override {
    const Tensor ids = batch_ids(b.inputs, b.rows, b.input_len);
    const Tensor labels = batch_ids(b.targets, b.rows, b.target_len);
    if (!sampling_) return model().loss(ids, labels, padding_mask(b, ids));
    // Sophia's pass: the decoder still reads the true labels shifted right (teacher forcing);
    // only the targets of the cross-entropy are drawn, from the whole vocabulary's logits.
    const Tensor logits = model().forward(
        ids, models::T5Model::shift_right(labels, cfg_.decoder_start_id, cfg_.pad_id),
        padding_mask(b, ids));
    const Tensor sampled = sample_labels(logits, labels, *sampling_, b.global_index);
    return cross_entropy(logits, sampled.to(logits.device()));
  }

  // Whole model: loss() draws; pipeline stage: set_stage_batches hands the draw to the last stage.
  void set_label_sampling(std::optional<RandomKey> key) override { sampling_ = key; }

  void evaluate(const data::Batch& b, EvalCounts& c) override {
    const Tensor ids = batch_ids(b.inputs, b.rows, b.input_len);
    const Tensor labels = batch_ids(b.targets, b.rows, b.target_len);
    const auto& cfg = cfg_;
    const Tensor logits =
        model().forward(ids, models::T5Model::shift_right(labels, cfg.decoder_start_id, cfg.pad_id),
                        padding_mask(b, ids));
    c.loss_sum += cross_entropy(logits, labels).item<double>();
    c.batches += 1;
    const Tensor valid = ne(labels, scalar_tensor(-100, DType::i64));
    c.correct += sum(logical_and(eq(argmax(logits, -1), labels), valid)).item<int64_t>();
    c.counted += sum(valid).item<int64_t>();
  }

  int64_t tokens_per_row() const override { return objective_->input_len(); }
  double flops_per_row() const override {
    return models::T5Model::flops_per_example(cfg_, objective_->input_len(),
                                              objective_->target_len());
  }
  std::string describe() const override {
    std::ostringstream s;
    const auto& c = cfg_;
    s << "t5 d_model " << c.d_model << ", " << c.n_layers << "+" << c.decoder_layers()
      << " layers, " << c.n_heads << " heads x " << c.d_kv << ", d_ff " << c.d_ff << ", vocab "
      << c.vocab << ": " << models::T5Model::count_parameters(c) << " parameters; encoder "
      << objective_->input_len() << " tokens, decoder " << objective_->target_len()
      << "; precision " << c.precision.name();
    return s.str();
  }

  // The first validation row: its corrupted input, the spans it hides, and the greedy output.
  std::string sample(const data::Tokenizer& tokenizer, const data::Batch& valid,
                     const SampleOptions&) override {
    const std::vector<int64_t> input(valid.inputs.begin(), valid.inputs.begin() + valid.input_len);
    const std::vector<int64_t> target(valid.targets.begin(),
                                      valid.targets.begin() + valid.target_len);
    const std::string out =
        decode_greedy(tokenizer, from_vector(input, {1, valid.input_len}), valid.target_len);
    return "\n  input:  " + decode_ids(tokenizer, input) +
           "\n  target: " + decode_ids(tokenizer, target) + "\n  output: " + out;
  }

  std::string generate(const data::Tokenizer& tokenizer, std::string_view prompt,
                       const SampleOptions& o) override {
    std::vector<int32_t> p = tokenizer.encode(prompt);
    STRATA_CHECK(!p.empty(), "generate: the prompt '", prompt, "' encodes to no tokens");
    if (tokenizer.special().eos >= 0) p.push_back(tokenizer.special().eos);
    return decode_greedy(tokenizer, batch_ids(p, 1, int64_t(p.size())), o.max_new_tokens);
  }

  void save_spec(CheckpointState& s) const override {
    const models::T5Config& m = cfg_;
    s.strings["model"] = "t5";
    s.ints["model.vocab"] = m.vocab;
    s.ints["model.d_model"] = m.d_model;
    s.ints["model.d_kv"] = m.d_kv;
    s.ints["model.n_heads"] = m.n_heads;
    s.ints["model.d_ff"] = m.d_ff;
    s.ints["model.n_layers"] = m.n_layers;
    s.ints["model.n_decoder_layers"] = m.n_decoder_layers;
    s.ints["model.relative_buckets"] = m.relative_buckets;
    s.ints["model.relative_max_distance"] = m.relative_max_distance;
    s.ints["model.share_position_bias"] = m.share_position_bias;
    s.ints["model.decoder_start_id"] = m.decoder_start_id;
    s.ints["model.pad_id"] = m.pad_id;
    s.ints["model.eos_id"] = m.eos_id;
    s.doubles["model.norm_eps"] = m.norm_eps;
    s.doubles["model.dropout"] = m.dropout;
    write_precision(m.precision, s);
    write_objective_spec(spec_, s);
  }

 private:
  std::string decode_greedy(const data::Tokenizer& tokenizer, const Tensor& ids, int64_t tokens) {
    models::T5GenerateOptions g;
    g.max_new_tokens = tokens;
    const Tensor out = model().generate(ids, {}, g);
    auto v = out.to_vector<int64_t>();
    v.erase(v.begin());  // the decoder start token
    return decode_ids(tokenizer, v);
  }

  Tensor padding_mask(const data::Batch& b, const Tensor& ids) const {
    const int64_t pad = cfg_.pad_id;
    if (std::find(b.inputs.begin(), b.inputs.end(), int32_t(pad)) == b.inputs.end()) return {};
    return ne(ids, scalar_tensor(double(pad), DType::i64));
  }

  models::T5Config cfg_;               // as built: vocab and special ids resolved
  std::optional<RandomKey> sampling_;  // Sophia's Hessian pass (set_label_sampling)
};

}  // namespace

models::T5Config read_t5_config(const CheckpointState& s) {
  models::T5Config m;
  m.vocab = state_int(s, "model.vocab");
  m.d_model = state_int(s, "model.d_model");
  m.d_kv = state_int(s, "model.d_kv");
  m.n_heads = state_int(s, "model.n_heads");
  m.d_ff = state_int(s, "model.d_ff");
  m.n_layers = state_int(s, "model.n_layers");
  m.n_decoder_layers = state_int(s, "model.n_decoder_layers");
  m.relative_buckets = state_int(s, "model.relative_buckets");
  m.relative_max_distance = state_int(s, "model.relative_max_distance");
  m.share_position_bias = state_int(s, "model.share_position_bias") != 0;
  m.decoder_start_id = state_int(s, "model.decoder_start_id");
  m.pad_id = state_int(s, "model.pad_id");
  m.eos_id = state_int(s, "model.eos_id");
  m.norm_eps = state_double(s, "model.norm_eps");
  m.dropout = state_double(s, "model.dropout");
  m.precision = read_precision(s);
  return m;
}

std::unique_ptr<Task> make_t5_task(models::T5Config cfg, const ObjectiveSpec& objective,
                                   const data::Tokenizer& tokenizer, uint64_t seed,
                                   const TaskPlacement& placement) {
  const data::SpecialIds& sp = tokenizer.special();
  STRATA_CHECK(sp.num_sentinels > 0 && sp.eos >= 0 && sp.pad >= 0,
               "train: T5's span corruption needs a tokenizer with sentinels, EOS and PAD, but '",
               tokenizer.kind(),
               "' lacks them; train a unigram tokenizer with the t5 style "
               "(`strata tokenizer train --kind unigram --style t5`)");
  if (cfg.vocab == 0) cfg.vocab = tokenizer.vocab_size();
  STRATA_CHECK(cfg.vocab >= tokenizer.vocab_size(), "train: model.vocab ", cfg.vocab,
               " is smaller than the tokenizer's ", tokenizer.vocab_size());
  cfg.pad_id = sp.pad;
  cfg.eos_id = sp.eos;
  cfg.decoder_start_id = sp.pad;  // T5's convention: the decoder starts from PAD
  cfg.tp = placement.tp;
  cfg.validate();
  return std::make_unique<T5Task>(cfg, objective, tokenizer, seed, placement);
}

}  // namespace strata::train
