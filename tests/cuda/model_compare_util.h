#pragma once
// Helpers for the whole-model and training tests on the GPU (model_cuda_test.cpp,
// train_cuda_test.cpp): skip without a GPU, host copies, and the relative error the tolerances are
// stated in, max |a - b| / max |b| over a tensor (an error that does not blow up at entries near
// zero).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "core/device_select.h"
#include "core/ops.h"
#include "core/random/philox.h"
#include "core/runtime.h"
#include "models/module.h"

namespace strata::model_test {

#define STRATA_REQUIRE_GPU()                                                                 \
  do {                                                                                       \
    if (::strata::Runtime::get().cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

inline Device gpu() {
  return Device::cuda(0);
}

inline Tensor host(const Tensor& t) {
  return t.device().is_cpu() ? t : t.to(Device::cpu());
}

inline std::vector<double> values(const Tensor& t) {
  return host(t).to(DType::f64).contiguous().to_vector<double>();
}

inline double rel_err(const Tensor& a, const Tensor& b) {
  const auto x = values(a), y = values(b);
  if (x.size() != y.size()) return INFINITY;
  double diff = 0, scale = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    diff = std::max(diff, std::abs(x[i] - y[i]));
    scale = std::max(scale, std::abs(y[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

inline bool bitwise_equal(const Tensor& a, const Tensor& b) {
  const Tensor x = host(a).contiguous(), y = host(b).contiguous();
  if (x.shape() != y.shape() || x.dtype() != y.dtype()) return false;
  return std::memcmp(x.raw_data(), y.raw_data(), size_t(x.numel()) * x.element_size()) == 0;
}

// Token ids in [lo, vocab) from Philox, on the host.
inline Tensor random_ids(int64_t rows, int64_t cols, int64_t vocab, uint64_t seed, int64_t lo = 0) {
  std::vector<int64_t> v(size_t(rows * cols));
  const Philox rng(seed, RngStream::Test, 0);
  for (size_t i = 0; i < v.size(); ++i) v[i] = lo + int64_t(rng.bits(i) % uint32_t(vocab - lo));
  return from_vector(v, {rows, cols});
}

// The loss and every parameter's gradient (host copies) of one forward/backward.
struct Grads {
  double loss = 0;
  std::map<std::string, Tensor> grad;
};

template <class LossFn>
Grads loss_and_grads(models::Module& m, LossFn&& loss_fn) {
  m.zero_grad();
  Tensor loss = loss_fn();
  loss.backward();
  Grads g;
  g.loss = host(loss).to(DType::f64).item<double>();
  for (const auto& [name, p] : m.named_parameters())
    if (p.grad().defined()) g.grad[name] = host(p.grad()).clone();
  return g;
}

// Every gradient of `cpu` has one in `gpu` within `tol` (rel_err), and the losses agree within
// `tol` relative.
inline void expect_close(const Grads& gpu, const Grads& cpu, double tol, const std::string& what) {
  EXPECT_LE(std::abs(gpu.loss - cpu.loss), tol * std::abs(cpu.loss))
      << what << ": loss gpu " << gpu.loss << " cpu " << cpu.loss;
  EXPECT_EQ(gpu.grad.size(), cpu.grad.size()) << what;
  for (const auto& [name, g] : cpu.grad) {
    auto it = gpu.grad.find(name);
    ASSERT_NE(it, gpu.grad.end()) << what << ": no gradient for " << name << " on the GPU";
    EXPECT_LE(rel_err(it->second, g), tol) << what << ": gradient of " << name;
  }
}

}  // namespace strata::model_test
