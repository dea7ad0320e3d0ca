// `strata finetune`: fine-tunes a pre-trained BERT checkpoint for sequence classification. With
// task.build = auto, missing task files are built from the corpus (word-order detection or
// sentence-order prediction).
#include <filesystem>
#include <iostream>

#include "core/error.h"
#include "data/classification.h"
#include "launch/commands.h"
#include "launch/option_visitors.h"
#include "train/finetune.h"

namespace strata::launch {

namespace fs = std::filesystem;

namespace {

// How missing task files are made (task.build = auto).
struct TaskBuild {
  std::string build = "auto";
  std::string kind = "source";
  std::string corpus = "corpus";
  int64_t train_examples = 8000;
  int64_t valid_examples = 1000;

  template <class V>
  void visit_options(V& v) {
    v("task.build", build, "auto: build missing task files (task.kind) from task.corpus; never");
    v("task.kind", kind,
      "the task task.build makes: source (which corpus source a sentence is from), word-order "
      "(original vs shuffled sentence) or sentence-order (two consecutive sentences in order or "
      "swapped)");
    v("task.corpus", corpus, "corpus with train/ and validation/");
    v("task.train_examples", train_examples, "examples task.build takes from the training split");
    v("task.valid_examples", valid_examples, "examples task.build takes from the validation split");
  }
};

void build_task_files(const TaskBuild& t, const train::FinetuneOptions& o) {
  if (fs::exists(o.train_file) && fs::exists(o.valid_file)) return;
  STRATA_CHECK(t.build == "auto", "finetune: task files missing (", o.train_file, ", ",
               o.valid_file,
               "); write them (label<TAB>text[<TAB>text_b]) or "
               "pass --task.build auto to build task.kind from the corpus");
  const fs::path corpus = t.corpus;
  STRATA_CHECK(fs::is_directory(corpus / "train") && fs::is_directory(corpus / "validation"),
               "finetune: no corpus at '", corpus.string(),
               "' (expected train/ and validation/); run scripts/get_corpus.sh or set "
               "--task.corpus");
  STRATA_CHECK(t.kind == "source" || t.kind == "word-order" || t.kind == "sentence-order",
               "task.kind: unknown task '", t.kind,
               "'; task.build knows source, word-order and sentence-order");
  for (auto [split, file, count] : {std::tuple{"train", o.train_file, t.train_examples},
                                    std::tuple{"validation", o.valid_file, t.valid_examples}}) {
    const std::vector<std::string> in = {(corpus / split).string()};
    const auto ex =
        t.kind == "source"
            ? data::source_examples(in, data::source_names({(corpus / "train").string()}), count)
        : t.kind == "word-order" ? data::word_order_examples(in, count, o.seed)
                                 : data::sentence_order_examples(in, count, o.seed);
    if (fs::path(file).has_parent_path()) fs::create_directories(fs::path(file).parent_path());
    data::write_classification_tsv(file, ex);
    std::cerr << "finetune: wrote " << ex.size() << " " << t.kind << " examples from "
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
    declare_options<train::FinetuneOptions>(o);
    declare_options<TaskBuild>(o);
  };
  c.run = [](const Config& cfg) {
    const train::FinetuneOptions o = read_options<train::FinetuneOptions>(cfg);
    build_task_files(read_options<TaskBuild>(cfg), o);
    const train::FinetuneResult r = train::finetune_classifier(o, std::cout);
    std::cout << "done: validation accuracy " << r.epoch_accuracy.back() << " after " << r.steps
              << " steps (majority class " << r.majority_accuracy << ")\n";
    return 0;
  };
  return c;
}

}  // namespace strata::launch
