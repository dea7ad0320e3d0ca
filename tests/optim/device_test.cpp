// Device selection (core/device_select.h) and the device-independent clipping entry point, on the
// CPU. The CUDA kernels themselves are checked against these CPU results in tests/cuda/.
#include <gtest/gtest.h>

#include <cstring>

#include "core/device_select.h"
#include "core/ops.h"
#include "core/runtime.h"
#include "optim/adamw.h"
#include "optim/clip.h"

namespace strata::optim {
namespace {

std::string error_of(const std::string& spec) {
  try {
    resolve_device(spec, "run.device");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(DeviceTest, CpuIsAlwaysAvailable) {
  EXPECT_EQ(resolve_device("cpu"), Device::cpu());
  EXPECT_EQ(device_name(Device::cpu()), "cpu");
  EXPECT_EQ(nominal_peak_tflops(Device::cpu(), DType::bf16), 0.0);
  synchronize(Device::cpu());
}

TEST(DeviceTest, UnknownNamesListTheValidOnes) {
  for (const char* bad : {"gpu", "CPU", "cuda:", "cuda:x", "cuda:-1", "cuda0", "cuda:123456", ""}) {
    const std::string e = error_of(bad);
    EXPECT_NE(e.find("run.device: unknown device"), std::string::npos) << bad << ": " << e;
    EXPECT_NE(e.find("valid: cpu, cuda, cuda:N"), std::string::npos) << bad << ": " << e;
  }
}

TEST(DeviceTest, CudaWithoutABuildOrAGpuNamesTheFix) {
  for (const char* spec : {"cuda", "cuda:0"}) {
    const std::string e = error_of(spec);
    if (!cuda_built()) {
      EXPECT_EQ(Runtime::get().cuda_device_count(), 0);
      EXPECT_NE(e.find("built without CUDA"), std::string::npos) << e;
      EXPECT_NE(e.find("-DSTRATA_CUDA=ON"), std::string::npos) << e;
    } else if (Runtime::get().cuda_device_count() == 0) {
      EXPECT_NE(e.find("no CUDA device is visible"), std::string::npos) << e;
      EXPECT_NE(e.find("run.device = cpu"), std::string::npos) << e;
    } else {
      EXPECT_EQ(e, "") << spec;
    }
  }
  if (Runtime::get().cuda_device_count() > 0) {
    EXPECT_EQ(resolve_device("cuda", "run.device", Runtime::get().cuda_device_count()),
              Device::cuda(0));
    const std::string e = error_of("cuda:9999");
    EXPECT_NE(e.find("CUDA device"), std::string::npos) << e;
  }
}

std::vector<Tensor> params_with_grads(double grad_scale) {
  std::vector<Tensor> ps;
  for (int64_t n : {5000, 37, 1}) {
    Tensor p = zeros({n});
    p.set_requires_grad(true);
    Tensor g = randn({n}, RandomKey{3, 0, uint64_t(n), 0}, DType::f32, 0.0, grad_scale);
    p.set_grad(g);
    ps.push_back(p);
  }
  return ps;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return std::memcmp(a.raw_data(), b.raw_data(), size_t(a.numel()) * a.element_size()) == 0;
}

TEST(ClipTensorTest, CpuGradientsGiveTheClipGradNormValueAndClipping) {
  for (double max_norm : {0.0, 0.5, 1e9}) {
    auto a = params_with_grads(1.0), b = params_with_grads(1.0);
    const Tensor t = clip_grad_norm_tensor(a, max_norm);
    const double expected = max_norm > 0 ? clip_grad_norm(b, max_norm) : grad_norm(b);
    ASSERT_EQ(t.device(), Device::cpu());
    ASSERT_EQ(t.dtype(), DType::f64);
    ASSERT_EQ(t.numel(), 1);
    EXPECT_EQ(t.item<double>(), expected) << max_norm;
    for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(same_bits(a[i].grad(), b[i].grad()));
  }
}

TEST(OptimizerDeviceTest, StateLivesOnTheParameterDevice) {
  Tensor p = zeros({4, 3});
  p.set_requires_grad(true);
  AdamW opt({ParamGroup{{NamedParam{"w", p}}, Hyper{}}});
  for (const auto& [key, t] : opt.state()) EXPECT_EQ(t.device(), p.device()) << key;
}

}  // namespace
}  // namespace strata::optim
