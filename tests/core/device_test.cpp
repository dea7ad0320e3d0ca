// What of the device layer runs without a GPU: Tensor::to(Device) on the CPU and its gradient,
// the errors for a GPU that is not there (or a build without CUDA), and the device-mismatch checks
// of ops, driven by tensors whose storage claims to be on cuda:0 (host memory underneath; no
// kernel ever runs on them).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "core/autograd/node.h"
#include "core/ops.h"
#include "core/ops/registry.h"
#include "core/ops/transfer.h"

namespace strata {
namespace {

template <class F>
void expect_error(F&& f, std::initializer_list<const char*> fragments) {
  try {
    f();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    const std::string m = e.what();
    for (const char* frag : fragments) EXPECT_NE(m.find(frag), std::string::npos) << m;
  }
}

// Host memory labelled cuda:0, so that ops see a tensor on another device.
class FakeGpuAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override { return std::malloc(nbytes); }
  void deallocate(void* ptr, size_t) override { std::free(ptr); }
  Device device() const override { return Device::cuda(0); }
  MemoryStats stats() const override { return {}; }
  void reset_peak() override {}
  void empty_cache() override {}
};

Tensor fake_gpu_tensor(const Shape& shape, DType dtype = DType::f32) {
  static FakeGpuAllocator alloc;
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(&alloc, size_t(numel(shape)) * dtype_size(dtype));
  impl->strides = contiguous_strides(shape);
  impl->shape = shape;
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

bool has_gpu() {
  return Runtime::get().cuda_device_count() > 0;
}

TEST(Device, ToOwnDeviceIsTheTensorItself) {
  const Tensor x = from_vector(std::vector<float>{1, 2, 3}, {3});
  EXPECT_TRUE(x.to(Device::cpu()).is_same(x));
}

TEST(Device, ToOwnDeviceKeepsTheGradientPath) {
  Tensor x = from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3}).set_requires_grad(true);
  Tensor y = x.to(Device::cpu());
  EXPECT_EQ(y.raw_data(), x.raw_data());  // no copy
  ASSERT_TRUE(y.grad_fn());
  EXPECT_EQ(y.grad_fn()->name(), "to_device");
  const Tensor w = from_vector(std::vector<double>{0.5, -1, 2, 3, -4, 0.25}, {2, 3});
  sum(y.t().to(Device::cpu()) * w.t()).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), w.to_vector<double>());
  EXPECT_TRUE(is_registered_op("to_device"));
}

TEST(Device, MissingGpuIsAnError) {
  if (has_gpu()) GTEST_SKIP() << "this machine has a GPU";
  const Tensor x = from_vector(std::vector<float>{1, 2}, {2});
  expect_error([&] { return x.to(Device::cuda(0)); }, {"cuda:0", "CUDA"});
  expect_error([&] { return zeros({2}, DType::f32, Device::cuda(1)); }, {"cuda:1"});
  expect_error([&] { return &backend_for(Device::cuda(0)); }, {"cuda:0"});
  expect_error([&] { return Runtime::get().allocator(Device::cuda(0)).stats(); }, {"cuda:0"});
  expect_error([&] { return Tensor::empty_pinned({4}); }, {"pinned"});
  expect_error([&] { return x.pin_memory(); }, {"pinned"});
  EXPECT_FALSE(x.is_pinned());
}

TEST(Device, CopyAcrossDevicesWithoutGpuIsAnError) {
  if (has_gpu()) GTEST_SKIP() << "the fake tensor would be handed to the real GPU";
  Tensor h = zeros({2, 2});
  expect_error([&] { h.copy_(fake_gpu_tensor({2, 2})); }, {"cuda:0"});
}

TEST(Device, OpsNameBothDevicesOnAMismatch) {
  const Tensor h = ones({2, 2});
  // A differentiable host tensor does not follow a GPU operand (a constant would, see below).
  const Tensor hg = ones({2, 2}).set_requires_grad(true);
  const Tensor g = fake_gpu_tensor({2, 2});
  const char* fix = ".to(device)";
  expect_error([&] { return hg + g; }, {"add", "cpu", "cuda:0", fix});
  expect_error([&] { return where(ones({2, 2}, DType::b8), hg, g); }, {"where", "cuda:0", fix});
  expect_error([&] { return matmul(h, g); }, {"matmul: a is on cpu and b on cuda:0", fix});
  expect_error([&] { return linear(h, g); }, {"linear: input is on cpu and weight on cuda:0"});
  expect_error([&] { return linear(h, h, fake_gpu_tensor({2})); }, {"linear", "bias", "cuda:0"});
  const Tensor gi = fake_gpu_tensor({2}, DType::i64);
  expect_error([&] { return index_select(h, 0, gi); }, {"index_select", "index", "cuda:0", fix});
  expect_error([&] { return embedding(h, gi); }, {"index_select", "cuda:0"});
  expect_error(
      [&] {
        return gather(h, 0, fake_gpu_tensor({2, 2}, DType::i64));
      },
      {"gather", "cuda:0"});
  expect_error([&] { return cross_entropy(h, gi); }, {"cross_entropy", "target", "cuda:0", fix});
  expect_error([&] { return layer_norm(h, fake_gpu_tensor({2}), Tensor()); },
               {"layer_norm", "weight", "cuda:0"});
  expect_error([&] { return rms_norm(h, fake_gpu_tensor({2})); }, {"rms_norm", "cuda:0"});
  const Tensor q = ones({1, 1, 2, 2});
  expect_error(
      [&] {
        return attention(q, fake_gpu_tensor({1, 1, 2, 2}), q);
      },
      {"attention: q is on cpu and k on cuda:0", fix});
  expect_error([&] { return cat({h, g}, 0); }, {"cat", "cuda:0"});
  Tensor acc = zeros({2, 2});
  expect_error([&] { acc.add_(g); }, {"add_", "cuda:0", fix});
}

TEST(Device, HostConstantsFollowAGpuOperand) {
  if (has_gpu()) GTEST_SKIP() << "the fake tensor would be handed to the real GPU";
  // A constant built on the host (a scalar, positions, a mask) is moved to its partner's device
  // rather than refused; with no GPU to move it to, the move is what fails, naming the device.
  const Tensor g = fake_gpu_tensor({2, 2});
  expect_error([&] { return ones({2, 2}) + g; }, {"cuda:0"});
  expect_error([&] { return ne(fake_gpu_tensor({2}, DType::i64), scalar_tensor(-100, DType::i64)); },
               {"cuda:0"});
  EXPECT_TRUE(follow_device(ones({2}), ones({2})).defined());
  const Tensor c = ones({2});
  EXPECT_TRUE(follow_device(c, zeros({3})).is_same(c));  // same device: the tensor itself
  const Tensor w = ones({2}).set_requires_grad(true);
  EXPECT_TRUE(follow_device(w, g).is_same(w));  // differentiable: left for the device check
}

}  // namespace
}  // namespace strata
