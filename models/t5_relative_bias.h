#pragma once
// T5's relative position bias (ALGORITHMS.md 1.1): the offset rel = key_pos - query_pos of every
// (query, key) pair is mapped to one of `num_buckets` buckets (exact below max_exact, then
// logarithmic up to max_distance, beyond which all offsets share the last bucket), and each bucket
// holds one learned scalar per head. The result is added to the unscaled attention scores.
#include <vector>

#include "models/module.h"
#include "parallel/communicator.h"

namespace strata::models {

// The bucket of rel = key_pos - query_pos. Bidirectional (encoder): half of the buckets for
// rel <= 0 and half (offset by num_buckets / 2) for rel > 0, on |rel|. Causal (decoder): all
// buckets on max(-rel, 0). With n buckets left for the magnitude a and max_exact = n / 2:
//   a < max_exact: a;  else min(n - 1, max_exact + floor(ln(a / max_exact) /
//                                       ln(max_distance / max_exact) * (n - max_exact)))
// The floor is decided in exact integer arithmetic, not with a floating-point log, so offsets
// that land exactly on a bucket boundary (a = 16, 32, 64 in the encoder) cannot round down.
// Throws strata::Error unless max_exact >= 1 and max_distance > max_exact.
int64_t t5_relative_bucket(int64_t rel, bool bidirectional, int64_t num_buckets,
                           int64_t max_distance);

class T5RelativeBias : public Module {
 public:
  // Parameter: weight [num_buckets, n_heads]. Under tensor parallelism (tp not null, more than
  // one rank) split by heads like the attention it feeds: rank r holds columns
  // [r * n_heads/tp, (r+1) * n_heads/tp); n_heads must divide by the group size.
  T5RelativeBias(int64_t num_buckets, int64_t max_distance, int64_t n_heads, bool bidirectional,
                 Init init, parallel::Communicator* tp = nullptr);

  // Bias [1, local heads, q_len, k_len] for queries at positions q_offset .. q_offset + q_len - 1
  // and keys at 0 .. k_len - 1 (q_offset > 0: incremental decoding with a KV cache). Has a
  // gradient with respect to weight.
  Tensor forward(int64_t q_len, int64_t k_len, int64_t q_offset = 0) const;
  // The bucket ids behind forward(): i64 [q_len, k_len].
  Tensor buckets(int64_t q_len, int64_t k_len, int64_t q_offset = 0) const;

  const Tensor& weight() const { return weight_; }
  int64_t num_buckets() const { return num_buckets_; }
  int64_t max_distance() const { return max_distance_; }
  int64_t n_heads() const { return n_heads_; }  // global
  int64_t local_heads() const { return weight_.size(1); }
  bool bidirectional() const { return bidirectional_; }

 private:
  int64_t num_buckets_, max_distance_, n_heads_;
  bool bidirectional_;
  std::vector<int64_t> by_magnitude_;  // bucket of magnitude a for a = 0 .. max_distance
  Tensor& weight_;
};

}  // namespace strata::models
