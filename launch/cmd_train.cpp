// `strata train`: trains the decoder LM. With no arguments it runs the default preset end to end:
// if the prepared data is missing it trains a tokenizer on the corpus and prepares shards first.
#include <filesystem>
#include <iostream>

#include "data/prepare.h"
#include "data/tokenizer.h"
#include "launch/commands.h"
#include "train/trainer.h"

namespace strata::launch {

namespace fs = std::filesystem;

namespace {

// Builds the tokenizer and shards the default preset expects from the installed corpus.
void prepare_default_data(const Config& cfg, const train::TrainOptions& o) {
  const fs::path corpus = cfg.get<std::string>("data.corpus");
  const bool missing_data = !fs::exists(fs::path(o.train_data) / "manifest.json") ||
                            !fs::exists(fs::path(o.valid_data) / "manifest.json");
  if (!missing_data && fs::exists(o.tokenizer)) return;
  STRATA_CHECK(cfg.get<std::string>("data.prepare") == "auto", "train: prepared data missing (",
               o.train_data, ", ", o.valid_data, ", ", o.tokenizer,
               "); run `strata tokenizer train` and `strata prepare`, or pass --data.prepare auto");
  STRATA_CHECK(
      fs::is_directory(corpus / "train") && fs::is_directory(corpus / "validation"),
      "train: no corpus at '", corpus.string(),
      "' (expected train/ and validation/); run scripts/get_corpus.sh or set --data.corpus");
  if (!fs::exists(o.tokenizer)) {
    std::cerr << "train: training a " << cfg.get<int>("data.tokenizer_vocab")
              << "-token unigram tokenizer on " << (corpus / "train").string() << "\n";
    data::TokenizerTrainOptions t;
    t.inputs = {(corpus / "train").string()};
    t.kind = "unigram";
    t.vocab = cfg.get<int>("data.tokenizer_vocab");
    t.max_sentences = cfg.get<int64_t>("data.tokenizer_sentences");
    fs::create_directories(fs::path(o.tokenizer).parent_path());
    t.out = o.tokenizer;
    data::train_tokenizer(t);
  }
  const auto tok = data::load_tokenizer(o.tokenizer);
  for (auto [split, out] :
       {std::pair{"train", o.train_data}, std::pair{"validation", o.valid_data}}) {
    data::PrepareOptions p;
    p.inputs = {(corpus / split).string()};
    p.out = out;
    data::prepare(p, *tok);
  }
}

}  // namespace

Command make_train_command() {
  Command c;
  c.name = "train";
  c.summary = "train a decoder language model (no arguments: the default preset on the corpus)";
  c.usage = "strata train [--config configs/decoder-small.ini] [--section.key value]...";
  c.declare = [](po::options_description& o, po::positional_options_description&) {
    const train::TrainOptions d;
    o.add_options()("run.dir", po::value<std::string>()->default_value("runs/decoder-small"),
                    "run directory: checkpoints and metrics.jsonl")(
        "run.resume", po::value<std::string>()->default_value("auto"),
        "auto (newest good checkpoint in run.dir), none, or a checkpoint directory")(
        "run.seed", po::value<uint64_t>()->default_value(d.seed),
        "seed of initialisation, data order and dropout")(
        "run.threads", po::value<int>()->default_value(0), "threads (0: all cores)")(
        "data.corpus", po::value<std::string>()->default_value("corpus"),
        "corpus with train/ and validation/ (scripts/get_corpus.sh), used when data.prepare = "
        "auto")("data.prepare", po::value<std::string>()->default_value("auto"),
                "auto: build the tokenizer and shards below from data.corpus when missing; never")(
        "data.tokenizer", po::value<std::string>()->default_value("runs/data/tokenizer-8k.model"),
        "tokenizer file")("data.tokenizer_vocab", po::value<int>()->default_value(8192),
                          "vocabulary of the tokenizer data.prepare = auto trains")(
        "data.tokenizer_sentences", po::value<int64_t>()->default_value(300000),
        "lines SentencePiece samples when training it")(
        "data.train", po::value<std::string>()->default_value("runs/data/train"),
        "prepared training shards")("data.valid",
                                    po::value<std::string>()->default_value("runs/data/valid"),
                                    "prepared validation shards")(
        "data.seq_len", po::value<int64_t>()->default_value(d.seq_len), "tokens per sample")(
        "data.micro_batch", po::value<int64_t>()->default_value(d.micro_batch),
        "sequences per forward/backward")(
        "data.grad_accum", po::value<int64_t>()->default_value(d.grad_accum),
        "micro-batches per optimizer step")("model.vocab", po::value<int64_t>()->default_value(0),
                                            "embedding rows (0: the tokenizer's vocabulary)")(
        "model.d_model", po::value<int64_t>()->default_value(256), "hidden size")(
        "model.n_layers", po::value<int64_t>()->default_value(4), "decoder blocks")(
        "model.n_heads", po::value<int64_t>()->default_value(4), "attention heads")(
        "model.n_kv_heads", po::value<int64_t>()->default_value(0),
        "key/value heads for grouped-query attention (0: n_heads)")(
        "model.d_ff", po::value<int64_t>()->default_value(1024), "SwiGLU hidden size")(
        "model.rope_base", po::value<double>()->default_value(10000.0), "RoPE frequency base")(
        "model.norm_eps", po::value<double>()->default_value(1e-5), "RMSNorm epsilon")(
        "model.tie_embeddings", po::value<bool>()->default_value(false),
        "share the LM head with the input embedding")(
        "model.dropout", po::value<double>()->default_value(0.0), "residual dropout")(
        "model.init_std", po::value<double>()->default_value(0.02),
        "std of the normal initialisation")(
        "optim.name", po::value<std::string>()->default_value(d.optimizer), "adamw or adamwscale")(
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
        "prompt of the sample printed at the end")("log.sample_tokens",
                                                   po::value<int64_t>()->default_value(48),
                                                   "tokens of that sample (0: none)")(
        "log.stop_after", po::value<int64_t>()->default_value(0),
        "stop (after saving) once this process ran this many steps: for tests");
  };
  c.run = [](const Config& cfg) {
    train::TrainOptions o;
    o.run_dir = cfg.get<std::string>("run.dir");
    o.resume = cfg.get<std::string>("run.resume");
    o.seed = cfg.get<uint64_t>("run.seed");
    o.threads = cfg.get<int>("run.threads");
    o.config_text = cfg.dump();
    o.tokenizer = cfg.get<std::string>("data.tokenizer");
    o.train_data = cfg.get<std::string>("data.train");
    o.valid_data = cfg.get<std::string>("data.valid");
    o.seq_len = cfg.get<int64_t>("data.seq_len");
    o.micro_batch = cfg.get<int64_t>("data.micro_batch");
    o.grad_accum = cfg.get<int64_t>("data.grad_accum");
    o.model.vocab = cfg.get<int64_t>("model.vocab");
    o.model.d_model = cfg.get<int64_t>("model.d_model");
    o.model.n_layers = cfg.get<int64_t>("model.n_layers");
    o.model.n_heads = cfg.get<int64_t>("model.n_heads");
    o.model.n_kv_heads = cfg.get<int64_t>("model.n_kv_heads");
    o.model.d_ff = cfg.get<int64_t>("model.d_ff");
    o.model.rope_base = cfg.get<double>("model.rope_base");
    o.model.norm_eps = cfg.get<double>("model.norm_eps");
    o.model.tie_embeddings = cfg.get<bool>("model.tie_embeddings");
    o.model.dropout = cfg.get<double>("model.dropout");
    o.model.init_std = cfg.get<double>("model.init_std");
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
    prepare_default_data(cfg, o);
    const train::TrainResult r = train::train_decoder(o, std::cout);
    std::cout << "done: step " << r.step << ", validation loss " << r.valid_loss
              << ", token accuracy " << r.valid_accuracy << "\n";
    return 0;
  };
  return c;
}

}  // namespace strata::launch
