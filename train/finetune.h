#pragma once
// Fine-tuning for sequence classification: a BERT encoder pre-trained by `strata train` (or a
// freshly initialised one, the control that shows what pre-training brings) under the
// first-token pooler and a linear classifier (models::BertClassifier), trained on TSV examples
// (data/classification.h) with AdamW, warmup + cosine decay, and accuracy on the validation file
// after every epoch. The defaults are No Train No Gain's GLUE recipe (ALGORITHMS.md 2.2):
// lr 4e-5, betas (0.9, 0.98), eps 1e-6, no weight decay, batch 16, 10% warmup, dropout 0.1.
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace strata::train {

// The options of `strata finetune` but task building (launch/cmd_finetune.cpp): declared once,
// in visit_options (core/option_names.h), with these initial values as the defaults.
struct FinetuneOptions {
  std::string checkpoint;             // a BERT checkpoint directory; empty: random initialisation
  std::string tokenizer;              // needed without a checkpoint (a checkpoint names its own)
  std::string preset = "bert-small";  // the encoder size without a checkpoint
  // TSV: label<TAB>text[<TAB>text_b]
  std::string train_file = "runs/tasks/source/train.tsv";
  std::string valid_file = "runs/tasks/source/valid.tsv";
  std::string run_dir;  // metrics.jsonl goes here when set
  int64_t seq_len = 128;
  int64_t batch = 16;
  int64_t epochs = 3;
  double warmup_fraction = 0.1;
  double lr = 4e-5, beta1 = 0.9, beta2 = 0.98, eps = 1e-6, weight_decay = 0.0;
  double dropout = 0.1;
  uint64_t seed = 1234;
  int threads = 0;
  int64_t log_every = 50;

  template <class V>
  void visit_options(V& v) {
    v("finetune.checkpoint", checkpoint,
      "BERT checkpoint of `strata train` (empty: random initialisation, the control run)");
    v("finetune.tokenizer", tokenizer, "bert-style tokenizer, needed without a checkpoint");
    v("finetune.preset", preset, "encoder size without a checkpoint");
    v("finetune.seq_len", seq_len, "tokens per example");
    v("finetune.batch", batch, "examples per step");
    v("finetune.epochs", epochs, "passes over the data");
    v("finetune.warmup_fraction", warmup_fraction,
      "fraction of the steps spent in linear warmup (then cosine to 0)");
    v("finetune.dropout", dropout, "hidden dropout");
    v("task.train", train_file, "training examples: label<TAB>text[<TAB>text_b]");
    v("task.valid", valid_file, "validation examples, same format");
    v("optim.lr", lr, "peak learning rate (AdamW)");
    v("optim.beta1", beta1, "Adam beta1");
    v("optim.beta2", beta2, "Adam beta2");
    v("optim.eps", eps, "Adam epsilon");
    v("optim.weight_decay", weight_decay, "decoupled weight decay");
    v("run.dir", run_dir, "where metrics.jsonl goes (empty: none)");
    v("run.seed", seed,
      "seed of the head's initialisation, the data order, dropout and task.build");
    v("run.threads", threads, "threads (0: all cores)");
    v("log.every", log_every, "steps between progress lines");
  }
};

struct FinetuneResult {
  bool pretrained = false;
  int64_t classes = 0, train_examples = 0, valid_examples = 0, steps = 0;
  double majority_accuracy = 0;        // always answering the validation set's most frequent label
  std::vector<double> epoch_accuracy;  // validation accuracy after each epoch
  std::vector<double> epoch_loss;      // mean training loss of each epoch
};

FinetuneResult finetune_classifier(const FinetuneOptions& options, std::ostream& log);

}  // namespace strata::train
