#pragma once
// The options of `strata train`. Each is declared once, with its default and help, beside the
// struct it fills (visit_options: train::TrainOptions with its ObjectiveSpec and ParallelOptions,
// the model configs' overridable fields, DataPreparation below); launch/option_visitors.h turns
// those declarations into the command line and reads the configuration back. Model keys override
// the preset named by model.preset only when set, so an INI file states what differs.
#include <string>

#include "launch/config.h"
#include "train/trainer.h"

namespace strata::launch {

// What `strata train` does when the prepared data is missing (launch/cmd_train.cpp).
struct DataPreparation {
  std::string corpus = "corpus";
  std::string prepare = "auto";
  int tokenizer_vocab = 8192;
  std::string tokenizer_style;  // empty: bert for model.type bert, t5 otherwise
  int64_t tokenizer_sentences = 300000;

  template <class V>
  void visit_options(V& v) {
    v("data.corpus", corpus,
      "corpus with train/ and validation/ (scripts/get_corpus.sh), used when data.prepare = auto");
    v("data.prepare", prepare,
      "auto: build the tokenizer and shards below from data.corpus when missing; never");
    v("data.tokenizer_vocab", tokenizer_vocab,
      "vocabulary of the tokenizer data.prepare = auto trains");
    v("data.tokenizer_style", tokenizer_style,
      "style of that tokenizer: t5 (sentinels, EOS) or bert ([CLS]/[SEP]/[MASK]); empty: bert "
      "for model.type bert, t5 otherwise");
    v("data.tokenizer_sentences", tokenizer_sentences,
      "lines SentencePiece samples when training it");
  }
};

void declare_train_options(po::options_description& o);
// model.type, model.preset, model.vocab, model.precision and every model config's overridable
// fields (without defaults: the preset's values stand unless set).
void declare_model_options(po::options_description& o);

// model.type, model.preset and the model.* keys set explicitly. Throws for a key that does not
// apply to the type (naming the types it applies to) and for an unknown preset.
train::ModelSpec model_spec(const Config& cfg);
train::TrainOptions train_options(const Config& cfg);

// The tokenizer style a model needs (bert: [MASK]/[CLS]/[SEP]; t5 and decoder: sentinels), and
// where the derived data paths live when data.tokenizer / data.train / data.valid are not set.
std::string tokenizer_style(const Config& cfg);
std::string default_data_dir(const Config& cfg);

}  // namespace strata::launch
