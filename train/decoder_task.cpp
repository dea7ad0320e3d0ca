// The decoder LM on the causal objective (packed windows, next-token targets).
#include <sstream>

#include "core/ops.h"
#include "models/generate.h"
#include "models/pipeline_stage_decoder.h"
#include "train/model_task.h"

namespace strata::train {

namespace {

class DecoderTask final
    : public ModelTask<models::DecoderLM, models::DecoderStage, data::CausalLm> {
 public:
  DecoderTask(const models::DecoderConfig& cfg, const ObjectiveSpec& spec,
              const data::Tokenizer& tokenizer, uint64_t seed, const TaskPlacement& placement)
      : ModelTask(
            spec,
            std::make_shared<data::CausalLm>(data::CausalLmOptions{spec.seq_len, true},
                                             tokenizer.special()),
            placement, cfg.n_layers,
            [&](const models::StageLayout& layout, int stage) {
              return std::make_unique<models::DecoderStage>(cfg, seed, layout, stage);
            },
            [&] { return std::make_unique<models::DecoderLM>(cfg, seed); }),
        cfg_(cfg) {}

  std::string_view kind() const override { return "decoder"; }
  void set_stage_batches(const std::vector<data::Batch>& batches) override {
    std::vector<models::DecoderMicroBatch> mb;
    for (const data::Batch& b : batches) {
      mb.push_back(
          {batch_ids(b.inputs, b.rows, b.input_len), batch_ids(b.targets, b.rows, b.target_len)});
      // Sophia's pass: the last stage draws the labels, keyed as the whole model's loss() does.
      if (sampling_)
        mb.back().relabel = [key = *sampling_, rows = b.global_index](const Tensor& logits,
                                                                      const Tensor& targets) {
          return sample_labels(logits, targets, key, rows).to(logits.device());
        };
    }
    stage_->set_micro_batches(std::move(mb));
  }

  Tensor loss(const data::Batch& b) override {
    const Tensor ids = batch_ids(b.inputs, b.rows, b.input_len);
    const Tensor targets = batch_ids(b.targets, b.rows, b.target_len);
    if (!sampling_) return model().loss(ids, targets);
    // Sophia's pass: the whole vocabulary's logits (gathered under tensor parallelism, so every
    // tp rank draws the same labels), the draw keyed by the rows' global sample indices.
    const Tensor logits = model().forward(ids);
    const Tensor sampled = sample_labels(logits, targets, *sampling_, b.global_index);
    return cross_entropy(logits, sampled.to(logits.device()));
  }

  // Whole model: loss() draws; pipeline stage: set_stage_batches hands the draw to the last stage.
  void set_label_sampling(std::optional<RandomKey> key) override { sampling_ = key; }

  void evaluate(const data::Batch& b, EvalCounts& c) override {
    const Tensor targets = batch_ids(b.targets, b.rows, b.target_len);
    const Tensor logits = model().forward(batch_ids(b.inputs, b.rows, b.input_len));
    c.loss_sum += cross_entropy(logits, targets).item<double>();
    c.batches += 1;
    const Tensor valid = ne(targets, scalar_tensor(-100, DType::i64));
    c.correct += sum(logical_and(eq(argmax(logits, -1), targets), valid)).item<int64_t>();
    c.counted += sum(valid).item<int64_t>();
  }

  int64_t tokens_per_row() const override { return spec_.seq_len; }
  double flops_per_row() const override {
    return models::DecoderLM::flops_per_token(cfg_, spec_.seq_len) * double(spec_.seq_len);
  }
  std::string describe() const override {
    std::ostringstream s;
    const auto& c = cfg_;
    s << "decoder d_model " << c.d_model << ", " << c.n_layers << " layers, " << c.n_heads
      << " heads (" << c.kv_heads() << " kv), d_ff " << c.d_ff << ", vocab " << c.vocab << ": "
      << models::DecoderLM::count_parameters(c) << " parameters ("
      << models::DecoderLM::count_parameters(c, false) << " without embeddings); precision "
      << c.precision.name();
    return s.str();
  }

  std::string sample(const data::Tokenizer& tokenizer, const data::Batch&,
                     const SampleOptions& o) override {
    return generate(tokenizer, o.prompt, o);
  }

  std::string generate(const data::Tokenizer& tokenizer, std::string_view prompt,
                       const SampleOptions& o) override {
    const std::vector<int32_t> p = tokenizer.encode(prompt);
    STRATA_CHECK(!p.empty(), "generate: the prompt '", prompt, "' encodes to no tokens");
    models::DecoderLM& m = model();
    STRATA_CHECK(int64_t(p.size()) < m.max_seq_len(), "generate: the prompt has ", p.size(),
                 " tokens; the model's context is ", m.max_seq_len());
    const int64_t room = m.max_seq_len() - int64_t(p.size());
    STRATA_CHECK(o.clip_to_context || o.max_new_tokens <= room, "generate: ", o.max_new_tokens,
                 " new tokens after a prompt of ", p.size(), " do not fit the model's context of ",
                 m.max_seq_len(), " tokens (model.max_seq); ask for at most ", room,
                 " (strata generate --tokens ", room, ")");
    models::GenerateOptions g;
    g.max_new_tokens = std::min<int64_t>(o.max_new_tokens, room);
    g.greedy = o.greedy;
    g.temperature = o.temperature;
    g.top_k = o.top_k;
    g.top_p = o.top_p;
    g.seed = o.seed;
    const Tensor out = models::generate(m, batch_ids(p, 1, int64_t(p.size())), g);
    return decode_ids(tokenizer, out.to_vector<int64_t>());
  }

  void save_spec(CheckpointState& s) const override {
    const models::DecoderConfig& m = cfg_;
    s.strings["model"] = "decoder";
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
    write_precision(m.precision, s);
    write_objective_spec(spec_, s);
  }

 private:
  models::DecoderConfig cfg_;          // as built: vocab and max_seq resolved
  std::optional<RandomKey> sampling_;  // Sophia's Hessian pass (set_label_sampling)
};

}  // namespace

models::DecoderConfig read_decoder_config(const CheckpointState& s) {
  models::DecoderConfig m;
  m.vocab = state_int(s, "model.vocab");
  m.d_model = state_int(s, "model.d_model");
  m.n_layers = state_int(s, "model.n_layers");
  m.n_heads = state_int(s, "model.n_heads");
  m.n_kv_heads = state_int(s, "model.n_kv_heads");
  m.d_ff = state_int(s, "model.d_ff");
  m.max_seq = state_int(s, "model.max_seq");
  m.tie_embeddings = state_int(s, "model.tie_embeddings") != 0;
  m.rope_base = state_double(s, "model.rope_base");
  m.norm_eps = state_double(s, "model.norm_eps");
  m.dropout = state_double(s, "model.dropout");
  m.precision = read_precision(s);
  m.init_std = state_double(s, "model.init_std");
  return m;
}

std::unique_ptr<Task> make_decoder_task(models::DecoderConfig cfg, const ObjectiveSpec& objective,
                                        const data::Tokenizer& tokenizer, uint64_t seed,
                                        const TaskPlacement& placement) {
  if (cfg.vocab == 0) cfg.vocab = tokenizer.vocab_size();
  STRATA_CHECK(cfg.vocab >= tokenizer.vocab_size(), "train: model.vocab ", cfg.vocab,
               " is smaller than the tokenizer's ", tokenizer.vocab_size());
  STRATA_CHECK(objective.seq_len > 1, "train: data.seq_len must be > 1, got ", objective.seq_len);
  if (cfg.max_seq == 0) cfg.max_seq = objective.seq_len;
  cfg.tp = placement.tp;
  return std::make_unique<DecoderTask>(cfg, objective, tokenizer, seed, placement);
}

}  // namespace strata::train
