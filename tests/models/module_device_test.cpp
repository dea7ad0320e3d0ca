// Module::to(Device): on the device a module is already on it is the identity (same tensors,
// same memory, gradients and metadata kept); the GPU moves are in tests/cuda/model_cuda_test.cpp.
#include <gtest/gtest.h>

#include "core/ops.h"
#include "models/decoder_lm.h"
#include "test_util.h"

namespace strata::models {
namespace {

TEST(ModuleDeviceTest, ToCpuOnACpuModelIsTheIdentity) {
  const DecoderConfig c = testing::tiny_config(/*tied=*/true);
  DecoderLM m(c, 5);
  const Tensor ids = testing::random_ids(2, 8, c.vocab, 1);
  const Tensor targets = testing::random_ids(2, 8, c.vocab, 2);
  m.loss(ids, targets).backward();

  struct Seen {
    const TensorImpl* impl;
    const void* data;
    const TensorImpl* grad;
    const void* grad_data;
  };
  std::vector<Seen> before;
  for (const auto& [name, p] : m.named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    before.push_back({p.impl(), p.raw_data(), p.grad().impl(), p.grad().raw_data()});
  }
  const Tensor loss_before = m.loss(ids, targets);

  m.to(Device::cpu());
  EXPECT_EQ(m.device(), Device::cpu());
  size_t i = 0;
  for (const auto& [name, p] : m.named_parameters()) {
    const Seen& s = before[i++];
    EXPECT_EQ(p.impl(), s.impl) << name;
    EXPECT_EQ(p.raw_data(), s.data) << name;
    EXPECT_TRUE(p.requires_grad()) << name;
    EXPECT_EQ(p.device(), Device::cpu()) << name;
    EXPECT_EQ(p.grad().impl(), s.grad) << name;
    EXPECT_EQ(p.grad().raw_data(), s.grad_data) << name;
    EXPECT_TRUE(m.sharding(name).is_replicated()) << name;
  }
  EXPECT_EQ(i, before.size());
  // The tied weight is still one tensor under the embedding's name.
  EXPECT_TRUE(testing::bitwise_equal(m.loss(ids, targets), loss_before));
}

TEST(ModuleDeviceTest, DeviceOfAModuleWithoutParametersIsTheCpu) {
  Module empty("Empty");
  EXPECT_EQ(empty.device(), Device::cpu());
  empty.to(Device::cpu());  // nothing to move
}

TEST(ModuleDeviceTest, LoadParameterAndInitStillWriteTheSameTensors) {
  const DecoderConfig c = testing::tiny_config();
  DecoderLM a(c, 1), b(c, 2);
  a.to(Device::cpu());
  for (const auto& [name, p] : b.named_parameters()) {
    const TensorImpl* impl = a.parameter(name).impl();
    a.load_parameter(name, p);
    EXPECT_EQ(a.parameter(name).impl(), impl) << name;
    EXPECT_TRUE(testing::bitwise_equal(a.parameter(name), p)) << name;
  }
  a.init_parameters(2);  // b's seed: the same numbers again
  for (const auto& [name, p] : b.named_parameters())
    EXPECT_TRUE(testing::bitwise_equal(a.parameter(name), p)) << name;
}

}  // namespace
}  // namespace strata::models
