// Host <-> device copies: round trips in every dtype, strided and broadcast sources and
// destinations, dtype-converting copies, item / to_vector / str on GPU tensors, the gradient of
// .to(device), and device-mismatch errors.
#include <gtest/gtest.h>

#include <string>

#include "core/cuda/cuda_context.h"
#include "core/ops.h"
#include "core/ops/transfer.h"
#include "tests/cuda/cuda_test_util.h"

namespace strata {
namespace {

const Device kGpu = Device::cuda(0);

std::vector<float> iota(int64_t n, float scale = 1.0f) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = float(i) * scale - 3.0f;
  return v;
}

TEST(Transfer, RoundTripEveryDtype) {
  const Tensor x = from_vector(iota(24, 0.5f), {2, 3, 4});
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::i32, DType::i64, DType::b8}) {
    const Tensor h = x.to(dt);
    const Tensor g = h.to(kGpu);
    EXPECT_EQ(g.device(), kGpu);
    EXPECT_EQ(g.dtype(), dt);
    const Tensor back = g.to(Device::cpu());
    EXPECT_EQ(back.device(), Device::cpu());
    EXPECT_EQ(back.to_vector<double>(), h.to_vector<double>()) << dtype_name(dt);
  }
}

TEST(Transfer, SameDeviceIsTheTensorItself) {
  Tensor g = from_vector(iota(4), {4}).to(kGpu);
  EXPECT_TRUE(g.to(kGpu).is_same(g));
}

TEST(Transfer, StridedAndBroadcastSources) {
  const Tensor x = from_vector(iota(12), {3, 4});
  // A transposed CPU source: staged contiguously on the host, then one copy.
  EXPECT_EQ(x.t().to(kGpu).to_vector<float>(), x.t().contiguous().to_vector<float>());
  // A transposed GPU source to the host.
  const Tensor g = x.to(kGpu);
  EXPECT_EQ(g.t().to(Device::cpu()).to_vector<float>(), x.t().contiguous().to_vector<float>());
  // A broadcast source row into a GPU matrix.
  Tensor dst = zeros({3, 4}, DType::f32, kGpu);
  dst.copy_(from_vector(std::vector<float>{1, 2, 3, 4}, {4}));
  EXPECT_EQ(dst.to_vector<float>(), (std::vector<float>{1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4}));
}

TEST(Transfer, StridedDestinations) {
  Tensor dst = zeros({4, 6}, DType::f32, kGpu);
  const Tensor src = from_vector(iota(12), {4, 3});
  dst.narrow(1, 1, 3).copy_(src);  // a GPU view with row stride 6
  const std::vector<float> got = dst.to_vector<float>();
  for (int64_t r = 0; r < 4; ++r)
    for (int64_t c = 0; c < 6; ++c) {
      const float want = (c >= 1 && c < 4) ? float(r * 3 + (c - 1)) - 3.0f : 0.0f;
      EXPECT_EQ(got[r * 6 + c], want) << r << "," << c;
    }
  // And a strided host destination from the GPU.
  Tensor host = zeros({6, 4}, DType::f32);
  host.t().copy_(dst);
  EXPECT_EQ(host.t().contiguous().to_vector<float>(), got);
}

TEST(Transfer, DtypeConvertingCopies) {
  const Tensor x = from_vector(iota(10, 0.37f), {10});
  Tensor g_bf16 = empty({10}, DType::bf16, kGpu);
  g_bf16.copy_(x);  // f32 host -> bf16 device
  EXPECT_EQ(g_bf16.to_vector<float>(), x.to(DType::bf16).to_vector<float>());
  Tensor h_f64 = empty({10}, DType::f64);
  h_f64.copy_(x.to(kGpu));  // f32 device -> f64 host
  EXPECT_EQ(h_f64.to_vector<double>(), x.to(DType::f64).to_vector<double>());
  Tensor h_i64 = empty({10}, DType::i64);
  h_i64.copy_(x.to(kGpu));
  EXPECT_EQ(h_i64.to_vector<int64_t>(), x.to(DType::i64).to_vector<int64_t>());
}

TEST(Transfer, ItemToVectorAndStrOfGpuTensors) {
  const Tensor g = from_vector(std::vector<float>{1.5f, -2.0f, 4.0f}, {3}).to(kGpu);
  EXPECT_EQ(g.select(0, 2).item<float>(), 4.0f);
  EXPECT_EQ(g.select(0, 1).item<int64_t>(), -2);
  EXPECT_EQ(g.to_vector<double>(), (std::vector<double>{1.5, -2.0, 4.0}));
  const std::string s = g.str();
  EXPECT_NE(s.find("cuda:0"), std::string::npos) << s;
  EXPECT_NE(s.find("-2"), std::string::npos) << s;
}

TEST(Transfer, EmptyTensors) {
  const Tensor e = empty({0, 3}, DType::f32);
  const Tensor g = e.to(kGpu);
  EXPECT_EQ(g.shape(), (Shape{0, 3}));
  EXPECT_TRUE(g.to(Device::cpu()).to_vector<float>().empty());
}

TEST(Transfer, GradientMovesBackToTheSourceDevice) {
  Tensor x = from_vector(iota(6), {2, 3}).set_requires_grad(true);
  Tensor y = x.to(kGpu) * 3.0;
  sum(y).backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_EQ(x.grad().device(), Device::cpu());
  EXPECT_EQ(x.grad().to_vector<float>(), std::vector<float>(6, 3.0f));

  Tensor w = from_vector(iota(3), {3}).to(kGpu).set_requires_grad(true);
  Tensor z = sum(w.to(Device::cpu()) * 2.0);
  z.backward();
  EXPECT_EQ(w.grad().device(), kGpu);
  EXPECT_EQ(w.grad().to_vector<float>(), std::vector<float>(3, 2.0f));
}

TEST(Transfer, PinnedSourceRoundTrip) {
  Tensor p = Tensor::empty_pinned({5}, DType::f32);
  for (int i = 0; i < 5; ++i) p.data<float>()[i] = float(i) + 0.5f;
  const Tensor g = p.to(kGpu);
  EXPECT_EQ(g.to_vector<float>(), (std::vector<float>{0.5f, 1.5f, 2.5f, 3.5f, 4.5f}));
  Tensor q = Tensor::empty_pinned({5}, DType::f32);
  q.copy_(g);  // device -> pinned host: synchronised before copy_ returns
  EXPECT_EQ(q.to_vector<float>(), g.to_vector<float>());
}

TEST(Transfer, BetweenGpus) {
  if (cuda::device_count() < 2) GTEST_SKIP() << "needs two GPUs";
  const Tensor x = from_vector(iota(1000, 0.1f), {10, 100});
  const Tensor a = x.to(kGpu);
  const Tensor b = a.to(Device::cuda(1));
  EXPECT_EQ(b.device(), Device::cuda(1));
  EXPECT_EQ(b.to_vector<float>(), x.to_vector<float>());
  Tensor c = zeros({100, 10}, DType::bf16, Device::cuda(1));
  c.t().copy_(a);  // converting and strided, across GPUs
  EXPECT_EQ(c.t().to_vector<float>(), x.to(DType::bf16).to_vector<float>());
}

TEST(Transfer, DeviceMismatchErrorsNameBothDevices) {
  const Tensor h = from_vector(iota(4), {2, 2});
  const Tensor g = h.to(kGpu);
  auto expect = [](auto&& f, const char* op) {
    try {
      f();
      ADD_FAILURE() << op << ": no error";
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(op), std::string::npos) << m;
      EXPECT_NE(m.find("cuda:0"), std::string::npos) << m;
      EXPECT_NE(m.find("cpu"), std::string::npos) << m;
      EXPECT_NE(m.find(".to(device)"), std::string::npos) << m;
    }
  };
  expect([&] { return h + g; }, "add");
  expect([&] { return matmul(g, h); }, "matmul");
  expect([&] { return index_select(g, 0, from_vector(std::vector<int64_t>{1}, {1})); },
         "index_select");
  expect([&] { return layer_norm(g, ones({2}), Tensor()); }, "layer_norm");
}

TEST(Transfer, RuntimeDescribesTheGpus) {
  const std::string d = Runtime::get().describe();
  EXPECT_NE(d.find("gpus=" + std::to_string(cuda::device_count())), std::string::npos) << d;
  EXPECT_NE(d.find("cuda:0="), std::string::npos) << d;
}

}  // namespace
}  // namespace strata
