#include "launch/train_options.h"

#include <map>

#include "models/decoder_presets.h"
#include "optim/device.h"

namespace strata::launch {

namespace {

// Which model types read each model.* key beyond the common ones.
const std::map<std::string, std::vector<std::string>>& type_specific_keys() {
  static const std::map<std::string, std::vector<std::string>> keys = {
      {"n_kv_heads", {"decoder"}},
      {"rope_base", {"decoder"}},
      {"tie_embeddings", {"decoder"}},
      {"max_seq", {"decoder", "bert"}},
      {"d_kv", {"t5"}},
      {"n_decoder_layers", {"t5"}},
      {"relative_buckets", {"t5"}},
      {"relative_max_distance", {"t5"}},
      {"share_position_bias", {"t5"}}};
  return keys;
}

template <class T, class F>
void override_if_set(const Config& cfg, const std::string& key, F&& apply) {
  if (cfg.has("model." + key)) apply(cfg.get<T>("model." + key));
}

}  // namespace

void declare_model_options(po::options_description& o) {
  // No defaults on the size keys: unset means "the preset's value".
  o.add_options()("model.type", po::value<std::string>()->default_value("decoder"),
                  "decoder (Llama-style causal LM), bert (crammed BERT, masked LM) or t5 (T5 v1.1, "
                  "span corruption)")(
      "model.preset", po::value<std::string>()->default_value(""),
      "named size: decoder-{tiny,small,gpt2-small}, bert-{tiny,small,c5}, t5-{tiny,small,base} "
      "(empty: <type>-small)")("model.vocab", po::value<int64_t>(),
                               "embedding rows (default: the tokenizer's vocabulary)")(
      "model.d_model", po::value<int64_t>(), "hidden size (default: the preset's)")(
      "model.n_layers", po::value<int64_t>(), "blocks (T5: encoder blocks)")(
      "model.n_heads", po::value<int64_t>(), "attention heads")(
      "model.d_ff", po::value<int64_t>(),
      "feed-forward width (decoder SwiGLU and T5 gated-GELU hidden; BERT: the GLU's first matmul "
      "width, twice its hidden)")("model.dropout", po::value<double>(),
                                  "hidden dropout in training mode")(
      "model.norm_eps", po::value<double>(), "normalisation epsilon")(
      "model.init_std", po::value<double>(), "std of the normal initialisation (decoder, BERT)")(
      "model.max_seq", po::value<int64_t>(),
      "decoder: KV-cache capacity (default data.seq_len); BERT: positions of the sinusoid table")(
      "model.n_kv_heads", po::value<int64_t>(),
      "decoder: key/value heads for grouped-query attention")(
      "model.rope_base", po::value<double>(), "decoder: RoPE frequency base")(
      "model.tie_embeddings", po::value<bool>(), "decoder: share the LM head with the embedding")(
      "model.d_kv", po::value<int64_t>(), "t5: per-head width")(
      "model.n_decoder_layers", po::value<int64_t>(), "t5: decoder blocks (default n_layers)")(
      "model.relative_buckets", po::value<int64_t>(), "t5: relative-position buckets")(
      "model.relative_max_distance", po::value<int64_t>(), "t5: relative-position max distance")(
      "model.share_position_bias", po::value<bool>(),
      "t5: true = block 0's bias table for the whole stack (nanoT5); false = one per block (NTNG)")(
      "model.precision", po::value<std::string>()->default_value("f32"),
      "f32, or bf16: bf16 matmuls and activations with f32 master weights, optimizer state, "
      "norms, softmax, loss and residual stream (stored in checkpoints; generate and eval use it)")(
      "objective.mlm_probability", po::value<double>()->default_value(0.15),
      "bert: fraction of tokens selected for prediction (80% [MASK], 10% random, 10% kept)")(
      "objective.noise_density", po::value<double>()->default_value(0.15),
      "t5: fraction of tokens corrupted")("objective.mean_span",
                                          po::value<double>()->default_value(3.0),
                                          "t5: mean length of a corrupted span");
}

train::ModelSpec model_spec(const Config& cfg) {
  train::ModelSpec m;
  m.type = cfg.get<std::string>("model.type");
  STRATA_CHECK(m.type == "decoder" || m.type == "bert" || m.type == "t5",
               "model.type: unknown type '", m.type, "'; valid: decoder, bert, t5");
  for (const auto& [key, types] : type_specific_keys()) {
    if (!cfg.has("model." + key)) continue;
    std::string list;
    bool applies = false;
    for (const auto& t : types) {
      applies |= t == m.type;
      list += (list.empty() ? "" : ", ") + t;
    }
    STRATA_CHECK(applies, "model.", key, " does not apply to model.type ", m.type,
                 " (only to: ", list, "); remove it from the config");
  }
  std::string preset = cfg.get<std::string>("model.preset");
  if (preset.empty()) preset = m.type + "-small";
  STRATA_CHECK(preset.rfind(m.type + "-", 0) == 0, "model.preset '", preset,
               "' is not a preset of model.type ", m.type, " (its presets start with '", m.type,
               "-')");
  auto vocab = [&](auto& c) {
    c.vocab = cfg.has("model.vocab") ? cfg.get<int64_t>("model.vocab") : 0;
  };
  // Mixed precision, for every model type (models/precision.h).
  const models::Precision precision =
      models::Precision::parse(cfg.get<std::string>("model.precision"), "model.precision");
  if (m.type == "decoder") {
    auto& c = m.decoder;
    c = models::decoder_preset(preset);
    vocab(c);
    override_if_set<int64_t>(cfg, "d_model", [&](int64_t v) { c.d_model = v; });
    override_if_set<int64_t>(cfg, "n_layers", [&](int64_t v) { c.n_layers = v; });
    override_if_set<int64_t>(cfg, "n_heads", [&](int64_t v) { c.n_heads = v; });
    override_if_set<int64_t>(cfg, "n_kv_heads", [&](int64_t v) { c.n_kv_heads = v; });
    override_if_set<int64_t>(cfg, "d_ff", [&](int64_t v) { c.d_ff = v; });
    override_if_set<int64_t>(cfg, "max_seq", [&](int64_t v) { c.max_seq = v; });
    override_if_set<double>(cfg, "rope_base", [&](double v) { c.rope_base = v; });
    override_if_set<double>(cfg, "norm_eps", [&](double v) { c.norm_eps = v; });
    override_if_set<bool>(cfg, "tie_embeddings", [&](bool v) { c.tie_embeddings = v; });
    override_if_set<double>(cfg, "dropout", [&](double v) { c.dropout = v; });
    override_if_set<double>(cfg, "init_std", [&](double v) { c.init_std = v; });
  } else if (m.type == "bert") {
    auto& c = m.bert;
    c = models::bert_preset(preset);
    vocab(c);
    override_if_set<int64_t>(cfg, "d_model", [&](int64_t v) { c.d_model = v; });
    override_if_set<int64_t>(cfg, "n_layers", [&](int64_t v) { c.n_layers = v; });
    override_if_set<int64_t>(cfg, "n_heads", [&](int64_t v) { c.n_heads = v; });
    override_if_set<int64_t>(cfg, "d_ff", [&](int64_t v) { c.d_ff = v; });
    override_if_set<int64_t>(cfg, "max_seq", [&](int64_t v) { c.max_seq = v; });
    override_if_set<double>(cfg, "norm_eps", [&](double v) { c.norm_eps = v; });
    override_if_set<double>(cfg, "dropout", [&](double v) { c.dropout = v; });
    override_if_set<double>(cfg, "init_std", [&](double v) { c.init_std = v; });
  } else {
    auto& c = m.t5;
    c = models::t5_preset(preset);
    vocab(c);
    override_if_set<int64_t>(cfg, "d_model", [&](int64_t v) { c.d_model = v; });
    override_if_set<int64_t>(cfg, "n_layers", [&](int64_t v) { c.n_layers = v; });
    override_if_set<int64_t>(cfg, "n_decoder_layers", [&](int64_t v) { c.n_decoder_layers = v; });
    override_if_set<int64_t>(cfg, "n_heads", [&](int64_t v) { c.n_heads = v; });
    override_if_set<int64_t>(cfg, "d_kv", [&](int64_t v) { c.d_kv = v; });
    override_if_set<int64_t>(cfg, "d_ff", [&](int64_t v) { c.d_ff = v; });
    override_if_set<int64_t>(cfg, "relative_buckets", [&](int64_t v) { c.relative_buckets = v; });
    override_if_set<int64_t>(cfg, "relative_max_distance",
                             [&](int64_t v) { c.relative_max_distance = v; });
    override_if_set<bool>(cfg, "share_position_bias", [&](bool v) { c.share_position_bias = v; });
    override_if_set<double>(cfg, "norm_eps", [&](double v) { c.norm_eps = v; });
    override_if_set<double>(cfg, "dropout", [&](double v) { c.dropout = v; });
    STRATA_CHECK(!cfg.has("model.init_std"),
                 "model.init_std does not apply to t5: T5 v1.1's "
                 "initialisation scales each matrix by its fan-in (ALGORITHMS.md 1.1)");
  }
  m.decoder.precision = m.bert.precision = m.t5.precision = precision;
  return m;
}

train::ObjectiveSpec objective_spec(const Config& cfg) {
  train::ObjectiveSpec o;
  o.seq_len = cfg.get<int64_t>("data.seq_len");
  o.mlm_probability = cfg.get<double>("objective.mlm_probability");
  o.noise_density = cfg.get<double>("objective.noise_density");
  o.mean_span = cfg.get<double>("objective.mean_span");
  return o;
}

std::string tokenizer_style(const Config& cfg) {
  const std::string style = cfg.get<std::string>("data.tokenizer_style");
  if (!style.empty()) return style;
  return cfg.get<std::string>("model.type") == "bert" ? "bert" : "t5";
}

std::string default_data_dir(const Config& cfg) {
  const int vocab = cfg.get<int>("data.tokenizer_vocab");
  const std::string size =
      vocab % 1024 == 0 ? std::to_string(vocab / 1024) + "k" : std::to_string(vocab);
  return "runs/data/" + tokenizer_style(cfg) + "-" + size;
}

void declare_train_options(po::options_description& o) {
  const train::TrainOptions d;
  o.add_options()("run.dir", po::value<std::string>()->default_value(""),
                  "run directory: checkpoints and metrics.jsonl (empty: runs/<preset>)")(
      "run.resume", po::value<std::string>()->default_value("auto"),
      "auto (newest good checkpoint in run.dir), none, or a checkpoint directory")(
      "run.seed", po::value<uint64_t>()->default_value(d.seed),
      "seed of initialisation, data order, masking and dropout")(
      "run.threads", po::value<int>()->default_value(0), "threads (0: all cores)")(
      "run.device", po::value<std::string>()->default_value(d.device),
      "cpu, cuda (under mpirun: one GPU per node-local rank) or cuda:N; a GPU needs a build "
      "with -DSTRATA_CUDA=ON")(
      "data.corpus", po::value<std::string>()->default_value("corpus"),
      "corpus with train/ and validation/ (scripts/get_corpus.sh), used when data.prepare = auto")(
      "data.prepare", po::value<std::string>()->default_value("auto"),
      "auto: build the tokenizer and shards below from data.corpus when missing; never")(
      "data.tokenizer", po::value<std::string>()->default_value(""),
      "tokenizer file (empty: <data dir>/tokenizer.model, the data dir being "
      "runs/data/<style>-<vocab>)")("data.tokenizer_vocab", po::value<int>()->default_value(8192),
                                    "vocabulary of the tokenizer data.prepare = auto trains")(
      "data.tokenizer_style", po::value<std::string>()->default_value(""),
      "style of that tokenizer: t5 (sentinels, EOS) or bert ([CLS]/[SEP]/[MASK]); empty: bert "
      "for model.type bert, t5 otherwise")("data.tokenizer_sentences",
                                           po::value<int64_t>()->default_value(300000),
                                           "lines SentencePiece samples when training it")(
      "data.train", po::value<std::string>()->default_value(""),
      "prepared training shards (empty: <data dir>/train)")(
      "data.valid", po::value<std::string>()->default_value(""),
      "prepared validation shards (empty: <data dir>/valid)")(
      "data.seq_len", po::value<int64_t>()->default_value(128),
      "tokens per sample (T5: encoder input length; the targets follow from the noise density)")(
      "data.micro_batch", po::value<int64_t>()->default_value(d.micro_batch),
      "sequences per forward/backward")("data.grad_accum",
                                        po::value<int64_t>()->default_value(d.grad_accum),
                                        "micro-batches per optimizer step");
  declare_model_options(o);
  o.add_options()("optim.name", po::value<std::string>()->default_value(d.optimizer),
                  "adamw or adamwscale (nanoT5's AdamW with per-tensor RMS scaling)")(
      "optim.lr", po::value<double>()->default_value(2e-3), "peak learning rate")(
      "optim.weight_decay", po::value<double>()->default_value(d.weight_decay),
      "decoupled weight decay (not on norms and biases)")(
      "optim.beta1", po::value<double>()->default_value(d.beta1), "Adam beta1")(
      "optim.beta2", po::value<double>()->default_value(d.beta2), "Adam beta2")(
      "optim.eps", po::value<double>()->default_value(d.eps), "Adam epsilon")(
      "optim.clip", po::value<double>()->default_value(d.clip),
      "global gradient-norm clip (0: off)")(
      "optim.schedule", po::value<std::string>()->default_value(d.schedule),
      "cosine, legacy, budget-one-cycle, cosine-budget or constant")(
      "optim.warmup_steps", po::value<int64_t>()->default_value(30), "linear warmup steps")(
      "optim.final_lr", po::value<double>()->default_value(2e-5),
      "learning rate at the end of the budget")(
      "budget.unit", po::value<std::string>()->default_value(d.budget_unit),
      "steps, tokens or seconds")("budget.amount", po::value<double>()->default_value(300),
                                  "budget in budget.unit; the schedule fully decays at its end")(
      "log.every", po::value<int64_t>()->default_value(10), "steps between progress lines")(
      "log.eval_every", po::value<int64_t>()->default_value(100),
      "steps between validation passes (0: at the end only)")(
      "log.eval_batches", po::value<int64_t>()->default_value(d.eval_batches),
      "validation batches per pass")("log.save_every", po::value<int64_t>()->default_value(100),
                                     "steps between checkpoints (0: at the end only)")(
      "log.keep_last", po::value<int>()->default_value(d.keep_last), "checkpoints kept")(
      "log.peak_gflops", po::value<double>()->default_value(0),
      "peak GFLOP/s for MFU (0: measure at start-up)")(
      "log.sample_prompt", po::value<std::string>()->default_value("The "),
      "decoder: prompt of the sample printed at the end")(
      "log.sample_tokens", po::value<int64_t>()->default_value(48),
      "tokens of that sample (0: no sample; T5 and BERT show a validation row instead)")(
      "log.stop_after", po::value<int64_t>()->default_value(0),
      "stop (after saving) once this process ran this many steps: for tests");
  const train::ParallelOptions p;
  o.add_options()("parallel.dp", po::value<int>()->default_value(p.dp),
                  "data-parallel replicas (0: the number of ranks / (tp * pp))")(
      "parallel.tp", po::value<int>()->default_value(p.tp),
      "tensor-parallel ranks per layer (heads, d_ff and the vocabulary must divide)")(
      "parallel.pp", po::value<int>()->default_value(p.pp),
      "pipeline stages (at most the model's blocks; T5 counts encoder + decoder blocks)")(
      "parallel.schedule", po::value<std::string>()->default_value(p.schedule),
      "pipeline schedule: gpipe or 1f1b")(
      "parallel.micro_batches", po::value<int64_t>()->default_value(p.micro_batches),
      "micro-batches per step under pp > 1 (0: data.grad_accum)")(
      "parallel.timeout", po::value<double>()->default_value(p.timeout_s),
      "seconds a rank waits in a collective before the job aborts naming it");
}

train::TrainOptions train_options(const Config& cfg) {
  train::TrainOptions o;
  o.model = model_spec(cfg);
  o.objective = objective_spec(cfg);
  std::string preset = cfg.get<std::string>("model.preset");
  if (preset.empty()) preset = o.model.type + "-small";
  o.run_dir = cfg.get<std::string>("run.dir");
  if (o.run_dir.empty()) o.run_dir = "runs/" + preset;
  o.resume = cfg.get<std::string>("run.resume");
  o.seed = cfg.get<uint64_t>("run.seed");
  o.threads = cfg.get<int>("run.threads");
  o.device = cfg.get<std::string>("run.device");
  // Checked here too (the trainer checks again), so a device this build or machine lacks is named
  // before any data is prepared.
  optim::resolve_device(o.device, "run.device");
  o.config_text = cfg.dump();
  const std::string data_dir = default_data_dir(cfg);
  auto path_or = [&](const std::string& key, const std::string& fallback) {
    const std::string v = cfg.get<std::string>(key);
    return v.empty() ? fallback : v;
  };
  o.tokenizer = path_or("data.tokenizer", data_dir + "/tokenizer.model");
  o.train_data = path_or("data.train", data_dir + "/train");
  o.valid_data = path_or("data.valid", data_dir + "/valid");
  o.micro_batch = cfg.get<int64_t>("data.micro_batch");
  o.grad_accum = cfg.get<int64_t>("data.grad_accum");
  o.optimizer = cfg.get<std::string>("optim.name");
  o.lr = cfg.get<double>("optim.lr");
  o.weight_decay = cfg.get<double>("optim.weight_decay");
  o.beta1 = cfg.get<double>("optim.beta1");
  o.beta2 = cfg.get<double>("optim.beta2");
  o.eps = cfg.get<double>("optim.eps");
  o.clip = cfg.get<double>("optim.clip");
  o.schedule = cfg.get<std::string>("optim.schedule");
  o.warmup_steps = cfg.get<int64_t>("optim.warmup_steps");
  o.final_lr = cfg.get<double>("optim.final_lr");
  o.budget_unit = cfg.get<std::string>("budget.unit");
  o.budget = cfg.get<double>("budget.amount");
  o.log_every = cfg.get<int64_t>("log.every");
  o.eval_every = cfg.get<int64_t>("log.eval_every");
  o.eval_batches = cfg.get<int64_t>("log.eval_batches");
  o.save_every = cfg.get<int64_t>("log.save_every");
  o.keep_last = cfg.get<int>("log.keep_last");
  o.peak_gflops = cfg.get<double>("log.peak_gflops");
  o.sample_prompt = cfg.get<std::string>("log.sample_prompt");
  o.sample_tokens = cfg.get<int64_t>("log.sample_tokens");
  o.stop_after = cfg.get<int64_t>("log.stop_after");
  o.parallel.dp = cfg.get<int>("parallel.dp");
  o.parallel.tp = cfg.get<int>("parallel.tp");
  o.parallel.pp = cfg.get<int>("parallel.pp");
  o.parallel.schedule = cfg.get<std::string>("parallel.schedule");
  o.parallel.micro_batches = cfg.get<int64_t>("parallel.micro_batches");
  o.parallel.timeout_s = cfg.get<double>("parallel.timeout");
  STRATA_CHECK(o.parallel.schedule == "gpipe" || o.parallel.schedule == "1f1b",
               "parallel.schedule: unknown schedule '", o.parallel.schedule,
               "'; valid: gpipe, 1f1b");
  STRATA_CHECK(o.parallel.micro_batches >= 0 && o.parallel.timeout_s > 0,
               "parallel.micro_batches must be >= 0 and parallel.timeout > 0, got ",
               o.parallel.micro_batches, " and ", o.parallel.timeout_s);
  return o;
}

}  // namespace strata::launch
