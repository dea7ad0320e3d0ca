#include "data/loader.h"

#include <bit>

#include "core/error.h"
#include "core/random/philox.h"

namespace strata::data {

Permutation::Permutation(uint64_t n, uint64_t seed, bool shuffle)
    : n_(n), seed_(seed), shuffle_(shuffle) {
  STRATA_CHECK(n > 0, "sampler: the dataset holds no samples");
  const int bits = n <= 1 ? 1 : int(std::bit_width(n - 1));
  half_bits_ = std::max(1, (bits + 1) / 2);
}

uint64_t Permutation::operator()(uint64_t epoch, uint64_t position) const {
  STRATA_CHECK(position < n_, "sampler: position ", position, " outside [0, ", n_, ")");
  if (!shuffle_) return position;
  const Philox rng(seed_, RngStream::DataOrder, epoch);
  const uint64_t mask = (uint64_t(1) << half_bits_) - 1;
  constexpr int kRounds = 6;
  uint64_t x = position;
  // Cycle walking: a bijection on the larger power-of-two domain, applied until the value falls
  // back into [0, n), is a bijection on [0, n).
  do {
    uint64_t left = x >> half_bits_, right = x & mask;
    for (int r = 0; r < kRounds; ++r) {
      const uint64_t f = rng.bits(right * kRounds + uint64_t(r)) & mask;
      const uint64_t next = left ^ f;
      left = right;
      right = next;
    }
    x = (left << half_bits_) | right;
  } while (x >= n_);
  return x;
}

Batch build_batch(const SampleSource& samples, const Objective& objective,
                  const Permutation& permutation, const LoaderOptions& o, uint64_t counter) {
  const int64_t local = o.global_batch / o.dp_size;
  Batch b;
  b.resize(local, objective.input_len(), objective.target_len(), objective.encoder_decoder());
  b.counter = counter;
  const uint64_t n = uint64_t(samples.size());
  std::vector<int32_t> raw(size_t(samples.layout().window));
  for (int64_t k = 0; k < local; ++k) {
    const uint64_t g = counter + uint64_t(o.dp_rank + k * o.dp_size);
    const auto sample = int64_t(permutation(g / n, g % n));
    const int64_t valid = samples.get(sample, raw.data());
    b.global_index[size_t(k)] = g;
    b.sample[size_t(k)] = sample;
    objective.build(raw, valid, o.seed, g, b, k);
  }
  return b;
}

namespace {
uint64_t checked_size(const SampleSource& samples, const Objective& objective) {
  STRATA_CHECK(samples.size() > 0, "loader: the data holds no complete sample of ",
               objective.layout().window, " tokens for objective ", objective.name(),
               "; the sequence length is longer than the data");
  return uint64_t(samples.size());
}
}  // namespace

Loader::Loader(std::shared_ptr<const TokenDocuments> docs,
               std::shared_ptr<const Objective> objective, LoaderOptions options, uint64_t counter)
    : objective_(std::move(objective)),
      samples_(std::make_shared<SampleSource>(std::move(docs), objective_->layout())),
      options_(options),
      permutation_(checked_size(*samples_, *objective_), options.seed, options.shuffle),
      counter_(counter) {
  const auto& o = options_;
  STRATA_CHECK(o.dp_size > 0 && o.dp_rank >= 0 && o.dp_rank < o.dp_size, "loader: rank ", o.dp_rank,
               " of data-parallel size ", o.dp_size);
  STRATA_CHECK(o.global_batch > 0 && o.global_batch % o.dp_size == 0, "loader: global batch ",
               o.global_batch, " must be a positive multiple of the data-parallel size ",
               o.dp_size);
  STRATA_CHECK(counter % uint64_t(o.global_batch) == 0, "loader: resume counter ", counter,
               " is not a multiple of the global batch ", o.global_batch);
  STRATA_CHECK(o.prefetch >= 0, "loader: prefetch ", o.prefetch, ", expected >= 0");
  if (o.prefetch > 0) worker_ = std::jthread([this](std::stop_token st) { produce(st); });
}

Loader::~Loader() {
  if (worker_.joinable()) {
    worker_.request_stop();
    worker_.join();
  }
}

void Loader::produce(std::stop_token stop) {
  uint64_t next = counter_;
  while (!stop.stop_requested()) {
    {
      std::unique_lock lock(mutex_);
      space_.wait(lock, stop, [&] { return int(queue_.size()) < options_.prefetch; });
      if (stop.stop_requested()) return;
    }
    try {
      Batch b = build_batch(*samples_, *objective_, permutation_, options_, next);
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(b));
    } catch (...) {
      std::lock_guard lock(mutex_);
      error_ = std::current_exception();
      ready_.notify_all();
      return;
    }
    ready_.notify_all();
    next += uint64_t(options_.global_batch);
  }
}

Batch Loader::next() {
  Batch b;
  if (options_.prefetch == 0) {
    b = build_batch(*samples_, *objective_, permutation_, options_, counter_);
  } else {
    std::unique_lock lock(mutex_);
    ready_.wait(lock, [&] { return !queue_.empty() || error_; });
    if (queue_.empty()) std::rethrow_exception(error_);
    b = std::move(queue_.front());
    queue_.pop_front();
    space_.notify_all();
  }
  counter_ += uint64_t(options_.global_batch);
  return b;
}

}  // namespace strata::data
