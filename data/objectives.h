#pragma once
// Objectives turn raw samples into batch rows: BERT MLM (crammed BERT), T5 span corruption
// (nanoT5), causal LM and byte-level LM. Batches are plain vectors so that data/ does not depend
// on core's Tensor; the trainer wraps them.
//
// Randomness: row randomness comes from Philox(seed, RngStream::Objective, g) where g is the
// row's global sample index (the loader's counter value for that row: it already encodes the step
// and the row, and never repeats across epochs). A row is thus the same whichever data-parallel
// rank builds it.
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "data/samples.h"
#include "data/tokenizer.h"

namespace strata::data {

inline constexpr int32_t kIgnoreIndex = -100;

struct Batch {
  int64_t rows = 0, input_len = 0, target_len = 0;
  std::vector<int32_t> inputs;          // rows x input_len
  std::vector<int32_t> targets;         // rows x target_len; kIgnoreIndex where no loss is taken
  std::vector<int32_t> decoder_inputs;  // encoder-decoder only: targets shifted right, pad first
  std::vector<uint64_t> global_index;   // each row's global sample index
  std::vector<int64_t> sample;          // each row's sample (after the permutation)
  uint64_t counter = 0;                 // the loader counter at the start of this global batch

  void resize(int64_t rows, int64_t input_len, int64_t target_len, bool decoder);
  std::span<const int32_t> input_row(int64_t r) const {
    return {inputs.data() + r * input_len, size_t(input_len)};
  }
  std::span<const int32_t> target_row(int64_t r) const {
    return {targets.data() + r * target_len, size_t(target_len)};
  }
};

class Objective {
 public:
  virtual ~Objective() = default;
  virtual std::string_view name() const = 0;
  // How raw samples are cut from the corpus for this objective.
  virtual SampleLayout layout() const = 0;
  virtual int64_t input_len() const = 0;
  virtual int64_t target_len() const = 0;
  virtual bool encoder_decoder() const { return false; }
  // Fills row `row` of `batch` from a raw sample (`valid` real tokens, the rest padding).
  virtual void build(std::span<const int32_t> raw, int64_t valid, uint64_t seed,
                     uint64_t global_index, Batch& batch, int64_t row) const = 0;
};

// --- T5 span corruption (nanoT5) ---------------------------------------------------------------

struct SpanLengths {
  int64_t raw = 0, inputs = 0, targets = 0;  // tokens before masking, encoder, decoder lengths
  int64_t noise = 0, spans = 0;              // noise tokens and noise spans per sample
};
// T5's random_spans_helper: the largest raw length whose corrupted input fits input_len, with
// Python's round-half-to-even as in nanoT5. 512, 0.15, 3 -> raw 568, targets 114.
SpanLengths span_corruption_lengths(int64_t input_len, double noise_density, double mean_span);

struct SpanCorruptionOptions {
  int64_t input_len = 512;
  double noise_density = 0.15;
  double mean_span = 3.0;
};

class SpanCorruption final : public Objective {
 public:
  SpanCorruption(SpanCorruptionOptions options, const SpecialIds& special);
  std::string_view name() const override { return "span_corruption"; }
  SampleLayout layout() const override;
  int64_t input_len() const override { return lengths_.inputs; }
  int64_t target_len() const override { return lengths_.targets; }
  bool encoder_decoder() const override { return true; }
  const SpanLengths& lengths() const { return lengths_; }
  // The noise mask of one sample: true = noise; always starts with non-noise.
  std::vector<uint8_t> noise_mask(uint64_t seed, uint64_t global_index) const;
  void build(std::span<const int32_t> raw, int64_t valid, uint64_t seed, uint64_t global_index,
             Batch& batch, int64_t row) const override;

 private:
  SpanCorruptionOptions options_;
  SpecialIds special_;
  SpanLengths lengths_;
};

// --- BERT MLM (crammed BERT) -------------------------------------------------------------------

struct MaskedLmOptions {
  int64_t seq_len = 128;
  double select = 0.15;  // per-token Bernoulli
  double mask = 0.8;     // of the selected: [MASK]
  double random = 0.5;   // of the rest: a uniform random id over the whole vocabulary
};

class MaskedLm final : public Objective {
 public:
  MaskedLm(MaskedLmOptions options, const SpecialIds& special, int32_t vocab_size);
  std::string_view name() const override { return "mlm"; }
  SampleLayout layout() const override;
  int64_t input_len() const override { return options_.seq_len; }
  int64_t target_len() const override { return options_.seq_len; }
  void build(std::span<const int32_t> raw, int64_t valid, uint64_t seed, uint64_t global_index,
             Batch& batch, int64_t row) const override;

 private:
  MaskedLmOptions options_;
  SpecialIds special_;
  int32_t vocab_;
};

// --- causal and byte-level LM ------------------------------------------------------------------

struct CausalLmOptions {
  int64_t seq_len = 128;
  bool packed = true;  // false: windows never cross a document boundary (tails padded, no loss)
};

class CausalLm final : public Objective {
 public:
  CausalLm(CausalLmOptions options, const SpecialIds& special);
  std::string_view name() const override { return "causal"; }
  SampleLayout layout() const override;
  int64_t input_len() const override { return options_.seq_len; }
  int64_t target_len() const override { return options_.seq_len; }
  void build(std::span<const int32_t> raw, int64_t valid, uint64_t seed, uint64_t global_index,
             Batch& batch, int64_t row) const override;

 private:
  CausalLmOptions options_;
  int32_t separator_, pad_;
};

// Byte-level LM (Hourglass, token pooling): packed byte stream, documents joined by one
// separator byte (newline by default) so every id stays below 256; inputs and next-byte targets.
struct ByteLmOptions {
  int64_t seq_len = 2048;
  int32_t separator = '\n';
};

class ByteLm final : public Objective {
 public:
  ByteLm(ByteLmOptions options, const Tokenizer& tokenizer);
  std::string_view name() const override { return "bytes"; }
  SampleLayout layout() const override;
  int64_t input_len() const override { return options_.seq_len; }
  int64_t target_len() const override { return options_.seq_len; }
  void build(std::span<const int32_t> raw, int64_t valid, uint64_t seed, uint64_t global_index,
             Batch& batch, int64_t row) const override;

 private:
  ByteLmOptions options_;
};

}  // namespace strata::data
