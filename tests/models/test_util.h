#pragma once
// Shared helpers for the models tests.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/ops.h"
#include "core/random/philox.h"
#include "models/decoder_lm.h"

namespace strata::models::testing {

inline DecoderConfig tiny_config(bool tied = false) {
  DecoderConfig c;
  c.vocab = 64;
  c.d_model = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.d_ff = 64;
  c.max_seq = 32;
  c.tie_embeddings = tied;
  return c;
}

// max |a - b| / max |b|: a relative error that does not blow up on entries near zero.
inline double rel_err(const Tensor& a, const Tensor& b) {
  const auto x = a.to(DType::f64).contiguous().to_vector<double>();
  const auto y = b.to(DType::f64).contiguous().to_vector<double>();
  if (x.size() != y.size()) return INFINITY;
  double diff = 0, scale = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    diff = std::max(diff, std::abs(x[i] - y[i]));
    scale = std::max(scale, std::abs(y[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

inline bool bitwise_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  Tensor x = a.contiguous(), y = b.contiguous();
  return std::memcmp(x.raw_data(), y.raw_data(), size_t(x.numel()) * x.element_size()) == 0;
}

inline Tensor random_ids(int64_t B, int64_t L, int64_t vocab, uint64_t seed) {
  Tensor u = rand({B, L}, RandomKey{seed, uint32_t(RngStream::Test), 0, 0}, DType::f64);
  std::vector<int64_t> ids;
  for (double v : u.to_vector<double>())
    ids.push_back(std::min<int64_t>(int64_t(v * double(vocab)), vocab - 1));
  return from_vector<int64_t>(ids, {B, L});
}

}  // namespace strata::models::testing
