// Walks the op registry on the GPU: for every case, the forward output and every input gradient
// (backward of a fixed random upstream gradient) computed on cuda:0 must match the CPU's, in f32
// and, where the CPU kernels accept it, in bf16.
//
// Tolerances, |gpu - cpu| <= atol + rtol * |cpu|:
//   f32:  rtol 1e-4, atol 1e-5 (summation order differs; GEMM must not use TF32 for f32 inputs).
//   bf16: rtol 2e-2, atol 2e-2 (8 significand bits: a result rounded differently on the two sides
//         is 1 ulp = 2^-8 relative apart; composite cases round several times, hence 5x that).
//   Per-op overrides below where a case rounds more often than a single op.
#include <gtest/gtest.h>

#include <cctype>
#include <string>

#include "core/ops.h"
#include "core/ops/registry.h"
#include "core/random/philox.h"
#include "tests/cuda/cuda_test_util.h"

namespace strata {
namespace {

struct Tolerance {
  double rtol, atol;
};

Tolerance tolerance_for(const std::string& label, DType dt) {
  auto starts = [&](const char* prefix) { return label.rfind(prefix, 0) == 0; };
  if (dt == DType::bf16) {
    // Cases that chain several rounding steps (normalisation statistics, log-sum-exp, a
    // recomputed matmul + tanh, attention's two GEMMs and softmax).
    if (starts("attention") || starts("recompute") || starts("cross_entropy") ||
        starts("layer_norm") || starts("rms_norm") || starts("logsumexp") || starts("norm/") ||
        starts("chunk") || starts("softmax") || starts("log_softmax") || starts("linear") ||
        starts("matmul"))
      return {4e-2, 4e-2};
    return {2e-2, 2e-2};
  }
  // f32: fused kernels reduce in a different order than the CPU's blocked loops.
  if (starts("attention") || starts("cross_entropy") || starts("logsumexp")) return {2e-4, 2e-5};
  return {1e-4, 1e-5};
}

class OpOnCuda : public ::testing::TestWithParam<size_t> {
 protected:
  void run(DType dt) {
    const OpCase& c = op_cases()[GetParam()];
    const Tolerance tol = tolerance_for(c.label, dt);
    const uint64_t seed = 20261123;

    std::vector<Tensor> cpu_in;
    Tensor cpu_out;
    try {
      cpu_in = c.make_inputs(dt, seed);
      cpu_out = c.fn(cpu_in);
    } catch (const Error& e) {
      if (dt == DType::f32) throw;
      GTEST_SKIP() << c.label << ": the CPU reference has no " << dtype_name(dt)
                   << " path: " << e.what();
    }

    std::vector<Tensor> gpu_in;
    for (const Tensor& t : cpu_in) gpu_in.push_back(cuda_test::to_gpu_leaf(t));
    Tensor gpu_out = c.fn(gpu_in);
    ASSERT_EQ(gpu_out.device(), Device::cuda(0)) << c.label;
    ASSERT_EQ(gpu_out.dtype(), cpu_out.dtype()) << c.label;
    cuda_test::expect_close(gpu_out, cpu_out, tol.rtol, tol.atol, c.label + " forward");

    ASSERT_TRUE(cpu_out.requires_grad()) << c.label;
    ASSERT_TRUE(gpu_out.requires_grad()) << c.label;
    const Tensor w =
        randn(cpu_out.shape(), RandomKey{99, uint32_t(RngStream::Test), GetParam()}, DType::f64)
            .to(dt);
    cpu_out.backward(w);
    gpu_out.backward(w.to(Device::cuda(0)));
    for (size_t i = 0; i < cpu_in.size(); ++i) {
      if (!cpu_in[i].requires_grad()) continue;
      const Tensor gc = cpu_in[i].grad(), gg = gpu_in[i].grad();
      ASSERT_EQ(gc.defined(), gg.defined()) << c.label << ": gradient of input " << i;
      if (!gc.defined()) continue;
      EXPECT_EQ(gg.device(), Device::cuda(0)) << c.label << ": gradient of input " << i;
      cuda_test::expect_close(gg, gc, tol.rtol, tol.atol,
                              c.label + " gradient of input " + std::to_string(i));
    }
  }
};

TEST_P(OpOnCuda, F32MatchesCpu) {
  run(DType::f32);
}

TEST_P(OpOnCuda, Bf16MatchesCpu) {
  run(DType::bf16);
}

std::string case_name(const ::testing::TestParamInfo<size_t>& info) {
  std::string s = op_cases()[info.param].label;
  for (char& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s + "_" + std::to_string(info.param);
}

INSTANTIATE_TEST_SUITE_P(Registry, OpOnCuda, ::testing::Range<size_t>(0, op_cases().size()),
                         case_name);

}  // namespace
}  // namespace strata
