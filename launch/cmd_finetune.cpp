// `strata finetune`: fine-tunes a pre-trained BERT checkpoint for sequence classification. With
// task.build = auto, missing task files are built from the corpus (word-order detection or
// sentence-order prediction).
#include <filesystem>
#include <iostream>

#include "core/error.h"
#include "data/classification.h"
#include "launch/commands.h"
#include "train/finetune.h"

namespace strata::launch {

namespace fs = std::filesystem;

namespace {

void build_task_files(const Config& cfg, const train::FinetuneOptions& o) {
  if (fs::exists(o.train_file) && fs::exists(o.valid_file)) return;
  STRATA_CHECK(cfg.get<std::string>("task.build") == "auto", "finetune: task files missing (",
               o.train_file, ", ", o.valid_file, "); write them (label<TAB>text[<TAB>text_b]) or "
               "pass --task.build auto to build task.kind from the corpus");
  const fs::path corpus = cfg.get<std::string>("task.corpus");
  STRATA_CHECK(fs::is_directory(corpus / "train") && fs::is_directory(corpus / "validation"),
               "finetune: no corpus at '", corpus.string(),
               "' (expected train/ and validation/); run scripts/get_corpus.sh or set "
               "--task.corpus");
  for (auto [split, file, count] :
       {std::tuple{"train", o.train_file, cfg.get<int64_t>("task.train_examples")},
        std::tuple{"validation", o.valid_file, cfg.get<int64_t>("task.valid_examples")}}) {
    const std::string kind = cfg.get<std::string>("task.kind");
    STRATA_CHECK(kind == "source" || kind == "word-order" || kind == "sentence-order",
                 "task.kind: unknown task '", kind,
                 "'; task.build knows source, word-order and sentence-order");
    const std::vector<std::string> in = {(corpus / split).string()};
    const auto ex =
        kind == "source"
            ? data::source_examples(in, data::source_names({(corpus / "train").string()}), count)
        : kind == "word-order" ? data::word_order_examples(in, count, o.seed)
                               : data::sentence_order_examples(in, count, o.seed);
    if (fs::path(file).has_parent_path()) fs::create_directories(fs::path(file).parent_path());
    data::write_classification_tsv(file, ex);
    std::cerr << "finetune: wrote " << ex.size() << " " << kind << " examples from "
              << (corpus / split).string() << " to " << file << "\n";
  }
}

}  // namespace

Command make_finetune_command() {
  Command c;
  c.name = "finetune";
  c.summary = "fine-tune a BERT checkpoint for sequence classification (TSV examples)";
  c.usage =
      "strata finetune --finetune.checkpoint DIR [--task.train FILE --task.valid FILE] "
      "[--section.key value]...";
  c.declare = [](po::options_description& o, po::positional_options_description&) {
    const train::FinetuneOptions d;
    o.add_options()("finetune.checkpoint", po::value<std::string>()->default_value(""),
                    "BERT checkpoint of `strata train` (empty: random initialisation, the "
                    "control run)")(
        "finetune.tokenizer", po::value<std::string>()->default_value(""),
        "bert-style tokenizer, needed without a checkpoint")(
        "finetune.preset", po::value<std::string>()->default_value(d.preset),
        "encoder size without a checkpoint")(
        "finetune.seq_len", po::value<int64_t>()->default_value(d.seq_len), "tokens per example")(
        "finetune.batch", po::value<int64_t>()->default_value(d.batch), "examples per step")(
        "finetune.epochs", po::value<int64_t>()->default_value(d.epochs), "passes over the data")(
        "finetune.warmup_fraction", po::value<double>()->default_value(d.warmup_fraction),
        "fraction of the steps spent in linear warmup (then cosine to 0)")(
        "finetune.dropout", po::value<double>()->default_value(d.dropout), "hidden dropout")(
        "task.train", po::value<std::string>()->default_value("runs/tasks/source/train.tsv"),
        "training examples: label<TAB>text[<TAB>text_b]")(
        "task.valid", po::value<std::string>()->default_value("runs/tasks/source/valid.tsv"),
        "validation examples, same format")(
        "task.build", po::value<std::string>()->default_value("auto"),
        "auto: build missing task files (task.kind) from task.corpus; never")(
        "task.kind", po::value<std::string>()->default_value("source"),
        "the task task.build makes: source (which corpus source a sentence is from), word-order "
        "(original vs shuffled sentence) or sentence-order (two consecutive sentences in order or "
        "swapped)")(
        "task.corpus", po::value<std::string>()->default_value("corpus"),
        "corpus with train/ and validation/")(
        "task.train_examples", po::value<int64_t>()->default_value(8000),
        "examples task.build takes from the training split")(
        "task.valid_examples", po::value<int64_t>()->default_value(1000),
        "examples task.build takes from the validation split")(
        "optim.lr", po::value<double>()->default_value(d.lr), "peak learning rate (AdamW)")(
        "optim.beta1", po::value<double>()->default_value(d.beta1), "Adam beta1")(
        "optim.beta2", po::value<double>()->default_value(d.beta2), "Adam beta2")(
        "optim.eps", po::value<double>()->default_value(d.eps), "Adam epsilon")(
        "optim.weight_decay", po::value<double>()->default_value(d.weight_decay),
        "decoupled weight decay")("run.dir", po::value<std::string>()->default_value(""),
                                  "where metrics.jsonl goes (empty: none)")(
        "run.seed", po::value<uint64_t>()->default_value(d.seed),
        "seed of the head's initialisation, the data order, dropout and task.build")(
        "run.threads", po::value<int>()->default_value(0), "threads (0: all cores)")(
        "log.every", po::value<int64_t>()->default_value(d.log_every),
        "steps between progress lines");
  };
  c.run = [](const Config& cfg) {
    train::FinetuneOptions o;
    o.checkpoint = cfg.get<std::string>("finetune.checkpoint");
    o.tokenizer = cfg.get<std::string>("finetune.tokenizer");
    o.preset = cfg.get<std::string>("finetune.preset");
    o.seq_len = cfg.get<int64_t>("finetune.seq_len");
    o.batch = cfg.get<int64_t>("finetune.batch");
    o.epochs = cfg.get<int64_t>("finetune.epochs");
    o.warmup_fraction = cfg.get<double>("finetune.warmup_fraction");
    o.dropout = cfg.get<double>("finetune.dropout");
    o.train_file = cfg.get<std::string>("task.train");
    o.valid_file = cfg.get<std::string>("task.valid");
    o.lr = cfg.get<double>("optim.lr");
    o.beta1 = cfg.get<double>("optim.beta1");
    o.beta2 = cfg.get<double>("optim.beta2");
    o.eps = cfg.get<double>("optim.eps");
    o.weight_decay = cfg.get<double>("optim.weight_decay");
    o.run_dir = cfg.get<std::string>("run.dir");
    o.seed = cfg.get<uint64_t>("run.seed");
    o.threads = cfg.get<int>("run.threads");
    o.log_every = cfg.get<int64_t>("log.every");
    build_task_files(cfg, o);
    const train::FinetuneResult r = train::finetune_classifier(o, std::cout);
    std::cout << "done: validation accuracy " << r.epoch_accuracy.back() << " after " << r.steps
              << " steps (majority class " << r.majority_accuracy << ")\n";
    return 0;
  };
  return c;
}

}  // namespace strata::launch
