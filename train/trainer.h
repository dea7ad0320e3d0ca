#pragma once
// The training loop for causal language models: data from prepared shards, gradient
// accumulation, AdamW/AdamWScale with global-norm clipping, a schedule driven by a budget clock,
// periodic evaluation on the held-out split, JSONL metrics, crash-safe checkpoints and exact
// resume. The same (options, seed) gives the same numbers; a resumed run equals the straight one
// bit for bit (tests/train/resume_test).
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "models/decoder_lm.h"

namespace strata::train {

struct TrainOptions {
  // Run.
  std::string run_dir = "runs/decoder";
  std::string resume = "auto";  // auto: newest good checkpoint in run_dir; none; or a step_ dir
  uint64_t seed = 1234;
  int threads = 0;          // 0: all cores
  std::string config_text;  // stored in checkpoints

  // Data (directories written by `strata prepare`).
  std::string train_data;
  std::string valid_data;
  std::string tokenizer;
  int64_t seq_len = 128;
  int64_t micro_batch = 16;
  int64_t grad_accum = 1;

  // Model.
  models::DecoderConfig model;

  // Optimisation.
  std::string optimizer = "adamw";  // adamw | adamwscale
  double lr = 1e-3, weight_decay = 0.1, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, clip = 1.0;
  std::string schedule = "cosine";  // a name optim::make_schedule knows
  int64_t warmup_steps = 50;
  double final_lr = 1e-5;

  // Budget: the schedule fully decays exactly at its end.
  std::string budget_unit = "steps";  // steps | tokens | seconds
  double budget = 500;

  // Observability and checkpoints.
  int64_t log_every = 25;
  int64_t eval_every = 250;  // 0: only at the end
  int64_t eval_batches = 8;
  int64_t save_every = 250;  // 0: only at the end
  int keep_last = 3;
  double peak_gflops = 0;  // per run, for MFU; 0: measured at start-up
  std::string sample_prompt = "The ";
  int64_t sample_tokens = 64;
  // Stop (after saving) once this process has run this many steps: an interrupted run, for tests.
  int64_t stop_after = 0;
};

struct TrainResult {
  int64_t step = 0;            // steps completed in total (including before a resume)
  int64_t resumed_from = 0;    // the checkpoint step this process started from (0: fresh)
  std::vector<double> losses;  // training loss of each step this process ran
  double valid_loss = 0, valid_accuracy = 0;
  std::string sample;  // generated text from sample_prompt
};

TrainResult train_decoder(const TrainOptions& options, std::ostream& log);

// A decoder rebuilt from a checkpoint written by train_decoder: its config and weights, and the
// tokenizer path the run used.
struct LoadedDecoder {
  std::unique_ptr<models::DecoderLM> model;
  std::string tokenizer;
  int64_t step = 0;
};
LoadedDecoder load_decoder(const std::string& checkpoint_dir);

}  // namespace strata::train
