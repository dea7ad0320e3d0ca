#pragma once
// The tiny corpus the trainer tests train on (CPU, mixed precision, GPU): repeated sentences with
// variations, so a 2-layer decoder's loss falls within a few dozen steps, byte-tokenised and
// prepared into train/ and valid/ shards under a per-process temporary directory.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>

#include "data/prepare.h"
#include "data/tokenizer.h"
#include "train/trainer.h"

namespace strata::train::fixtures {

class TinyCorpus {
 public:
  // `tag` names the directory, so test binaries running at once never share one.
  explicit TinyCorpus(const std::string& tag)
      : root_(std::filesystem::temp_directory_path() /
              ("strata_" + tag + "_" + std::to_string(::getpid()))) {
    namespace fs = std::filesystem;
    fs::remove_all(root_);
    fs::create_directories(root_ / "text/train");
    fs::create_directories(root_ / "text/valid");
    const char* words[] = {"the cat", "a dog", "the bird", "my fish"};
    const char* verbs[] = {" sat on ", " ran to ", " looked at ", " slept by "};
    const char* places[] = {"the mat.", "the door.", "a tree.", "the river."};
    for (int d = 0; d < 12; ++d) {
      std::ofstream out(root_ / (d < 10 ? "text/train/" : "text/valid/") /
                        ("doc" + std::to_string(d) + ".txt"));
      for (int i = 0; i < 60; ++i)
        out << words[(i + d) % 4] << verbs[(i * 3 + d) % 4] << places[(i * 7 + d) % 4] << "\n";
    }
    {
      std::ofstream tok(root_ / "bytes.tok", std::ios::binary);
      tok << data::byte_tokenizer_file();
    }
    const auto tok = data::load_tokenizer((root_ / "bytes.tok").string());
    for (auto [in, out] : {std::pair{"text/train", "train"}, std::pair{"text/valid", "valid"}}) {
      data::PrepareOptions p;
      p.inputs = {(root_ / in).string()};
      p.out = (root_ / out).string();
      p.progress = false;
      data::prepare(p, *tok);
    }
  }
  ~TinyCorpus() { std::filesystem::remove_all(root_); }
  TinyCorpus(const TinyCorpus&) = delete;
  TinyCorpus& operator=(const TinyCorpus&) = delete;

  const std::filesystem::path& root() const { return root_; }

  // A 2-layer grouped-query decoder with dropout (so resumes must restore the dropout keys), 40
  // steps, logging every 10, evaluating and saving every 20; run directory root()/run.
  TrainOptions decoder_options(const std::string& run) const {
    TrainOptions o;
    o.run_dir = (root_ / run).string();
    o.tokenizer = (root_ / "bytes.tok").string();
    o.train_data = (root_ / "train").string();
    o.valid_data = (root_ / "valid").string();
    o.objective.seq_len = 32;
    o.micro_batch = 4;
    o.model.decoder.d_model = 32;
    o.model.decoder.n_layers = 2;
    o.model.decoder.n_heads = 4;
    o.model.decoder.n_kv_heads = 2;
    o.model.decoder.d_ff = 64;
    o.model.decoder.dropout = 0.1;
    o.lr = 3e-3;
    o.warmup_steps = 4;
    o.budget = 40;
    o.log_every = 10;
    o.eval_every = 20;
    o.eval_batches = 2;
    o.save_every = 20;
    o.peak_gflops = 1;
    o.sample_tokens = 8;
    return o;
  }

 private:
  std::filesystem::path root_;
};

}  // namespace strata::train::fixtures
