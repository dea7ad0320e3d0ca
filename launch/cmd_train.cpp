// `strata train`: trains a decoder LM, BERT or T5 (model.type). With no arguments it runs the
// default preset end to end: if the prepared data is missing it trains a tokenizer on the corpus
// and prepares shards first.
#include <mpi.h>

#include <cmath>
#include <filesystem>
#include <iostream>
#include <vector>

#include "data/prepare.h"
#include "data/tokenizer.h"
#include "launch/commands.h"
#include "launch/option_visitors.h"
#include "launch/train_options.h"
#include "parallel/mpi_env.h"
#include "train/stop_signals.h"

namespace strata::launch {

namespace fs = std::filesystem;

namespace {

// Builds the tokenizer and shards the run expects from the installed corpus.
void prepare_default_data(const Config& cfg, const train::TrainOptions& o) {
  const DataPreparation d = read_options<DataPreparation>(cfg);
  const fs::path corpus = d.corpus;
  const bool missing_data = !fs::exists(fs::path(o.train_data) / "manifest.json") ||
                            !fs::exists(fs::path(o.valid_data) / "manifest.json");
  if (!missing_data && fs::exists(o.tokenizer)) return;
  STRATA_CHECK(d.prepare == "auto", "train: prepared data missing (", o.train_data, ", ",
               o.valid_data, ", ", o.tokenizer,
               "); run `strata tokenizer train` and `strata prepare`, or pass --data.prepare auto");
  STRATA_CHECK(
      fs::is_directory(corpus / "train") && fs::is_directory(corpus / "validation"),
      "train: no corpus at '", corpus.string(),
      "' (expected train/ and validation/); run scripts/get_corpus.sh or set --data.corpus");
  if (!fs::exists(o.tokenizer)) {
    data::TokenizerTrainOptions t;
    t.inputs = {(corpus / "train").string()};
    t.kind = "unigram";
    t.style = tokenizer_style(cfg);
    t.vocab = d.tokenizer_vocab;
    t.max_sentences = d.tokenizer_sentences;
    std::cerr << "train: training a " << t.vocab << "-token " << t.style
              << "-style unigram tokenizer on " << (corpus / "train").string() << "\n";
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

bool world_rank_zero() {
  if (!parallel::MpiEnv::active()) return true;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank == 0;
}

}  // namespace

void prepare_once(const Config& cfg, const train::TrainOptions& o) {
  if (!parallel::MpiEnv::active()) return prepare_default_data(cfg, o);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::string message;
  if (rank == 0) {
    try {
      prepare_default_data(cfg, o);
    } catch (const std::exception& e) {
      message = e.what();
      if (message.empty()) message = "data preparation failed";
    }
  }
  int length = int(message.size());
  MPI_Bcast(&length, 1, MPI_INT, 0, MPI_COMM_WORLD);
  std::vector<char> text(message.begin(), message.end());
  text.resize(size_t(length));
  MPI_Bcast(text.data(), length, MPI_CHAR, 0, MPI_COMM_WORLD);
  if (length > 0) STRATA_FAIL(std::string(text.begin(), text.end()));
}

Command make_train_command() {
  Command c;
  c.name = "train";
  c.summary = "train a decoder LM, BERT or T5 (no arguments: the default decoder on the corpus)";
  c.usage = "strata train [--config configs/<preset>.ini] [--section.key value]...";
  c.declare = [](po::options_description& o, po::positional_options_description&) {
    declare_train_options(o);
  };
  c.run = [](const Config& cfg) {
    const train::TrainOptions o = train_options(cfg);
    prepare_once(cfg, o);
    // From here SIGTERM, SIGUSR1 and SIGINT stop the run at a step boundary, after a save
    // (main installed the handling, train/stop_signals.h).
    train::StopSignals::defer_to_step_boundary(true);
    const train::TrainResult r = train::train(o, std::cout);
    train::StopSignals::defer_to_step_boundary(false);
    if (r.stopped_by_signal) {
      if (world_rank_zero())
        std::cout << "stopped: step " << r.step << " saved after signal " << r.stopped_by_signal
                  << "; exit code " << train::kExitSavedRequeue
                  << " (requeue: the next run resumes from it)\n";
      return train::kExitSavedRequeue;
    }
    if (world_rank_zero()) {
      std::cout << "done: step " << r.step << ", validation loss " << r.valid_loss;
      if (!std::isnan(r.valid_accuracy)) std::cout << ", token accuracy " << r.valid_accuracy;
      std::cout << "\n";
    }
    return 0;
  };
  return c;
}

}  // namespace strata::launch
