#pragma once
// Shared helpers for the models tests.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/io/hdf5_file.h"
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

// How far a model's loss, logits and parameter gradients are from a PyTorch fixture group
// holding "<group>/loss", "<group>/logits" and "<group>/grad/<parameter name>".
struct ParityResult {
  double loss_err = 0, logits_err = 0, worst_grad_err = 0;
  std::string worst_grad;
};

inline ParityResult compare_with_fixture(
    const io::H5File& f, const std::string& group, const Tensor& loss, const Tensor& logits,
    const std::vector<std::pair<std::string, Tensor>>& params) {
  ParityResult r;
  r.loss_err = rel_err(loss, f.read(group + "/loss"));
  r.logits_err = rel_err(logits, f.read(group + "/logits"));
  for (const auto& [name, t] : params) {
    EXPECT_TRUE(t.grad().defined()) << name;
    if (!t.grad().defined()) continue;
    const double e = rel_err(t.grad(), f.read(group + "/grad/" + name));
    if (e >= r.worst_grad_err) r.worst_grad_err = e, r.worst_grad = name;
  }
  return r;
}

// The tolerances of issues 5 and 6: loss and logits within 1e-5 and gradients within 1e-4 in
// f32; everything within 1e-10 in f64.
inline void expect_parity(const ParityResult& r, DType dtype) {
  std::printf("%s: loss %.3g, logits %.3g, worst grad %.3g (%s)\n", dtype_name(dtype).data(),
              r.loss_err, r.logits_err, r.worst_grad_err, r.worst_grad.c_str());
  const bool f64 = dtype == DType::f64;
  EXPECT_LT(r.loss_err, f64 ? 1e-10 : 1e-5);
  EXPECT_LT(r.logits_err, f64 ? 1e-10 : 1e-5);
  EXPECT_LT(r.worst_grad_err, f64 ? 1e-10 : 1e-4) << r.worst_grad;
}

}  // namespace strata::models::testing
