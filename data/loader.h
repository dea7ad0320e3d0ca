#pragma once
// The sampler and loader. The whole state is one counter: the number of samples the global batch
// stream has consumed. Global sample index g maps to epoch g / N and position g % N, and a seeded
// bijection (a Feistel network over [0, N), no O(N) table) turns the position into a sample.
// Rank r of a data-parallel group of size dp builds the rows r, r + dp, ... of each global batch,
// so the ranks' rows interleaved are exactly the single-process batch, in order; resuming or
// resharding to another dp only needs the counter.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <stop_token>
#include <thread>

#include "data/objectives.h"
#include "data/samples.h"

namespace strata::data {

// A bijection on [0, n) chosen by (seed, epoch): a 6-round balanced Feistel network on the
// smallest even-width power of two >= n, with cycle walking back into [0, n) (under 4 steps on
// average). Each round's function is Philox(seed, DataOrder, epoch).
class Permutation {
 public:
  Permutation(uint64_t n, uint64_t seed, bool shuffle = true);
  uint64_t operator()(uint64_t epoch, uint64_t position) const;
  uint64_t size() const { return n_; }

 private:
  uint64_t n_, seed_;
  bool shuffle_;
  int half_bits_ = 1;
};

struct LoaderOptions {
  uint64_t seed = 0;
  int64_t global_batch = 1;
  int64_t dp_rank = 0, dp_size = 1;
  bool shuffle = true;
  int prefetch = 2;  // batches built ahead on a background thread; 0 builds in next()
};

// Builds this rank's share of the global batch that starts at `counter`: a pure function, which
// is what makes the loader resumable and reshardable.
Batch build_batch(const SampleSource& samples, const Objective& objective,
                  const Permutation& permutation, const LoaderOptions& options, uint64_t counter);

class Loader {
 public:
  // `counter` is where to resume: a value saved from counter() by a run with any dp size.
  Loader(std::shared_ptr<const TokenDocuments> docs, std::shared_ptr<const Objective> objective,
         LoaderOptions options, uint64_t counter = 0);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // This rank's next batch; rethrows an error raised on the prefetch thread.
  Batch next();
  // Samples consumed by the batches next() has returned (what a checkpoint stores).
  uint64_t counter() const { return counter_; }
  int64_t num_samples() const { return samples_->size(); }
  uint64_t epoch() const { return counter_ / uint64_t(samples_->size()); }
  const SampleSource& samples() const { return *samples_; }

 private:
  void produce(std::stop_token stop);

  std::shared_ptr<const Objective> objective_;
  std::shared_ptr<const SampleSource> samples_;
  LoaderOptions options_;
  Permutation permutation_;
  uint64_t counter_;
  // Prefetch queue: batches for counters counter_, counter_ + B, ... in order.
  std::mutex mutex_;
  std::condition_variable_any ready_, space_;
  std::deque<Batch> queue_;
  std::exception_ptr error_;
  std::jthread worker_;  // last: joined (stopped) before the members it uses are destroyed
};

}  // namespace strata::data
