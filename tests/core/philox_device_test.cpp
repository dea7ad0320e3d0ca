// The CUDA kernels' Philox (core/kernels/cuda/philox_device.cuh, compiled here as plain C++)
// against the host generator core/random/philox.h: every word and every transform must agree bit
// for bit, so CUDA random fills and dropout masks equal the CPU's.
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <random>
#include <vector>

#include "core/kernels/cuda/philox_device.cuh"
#include "core/random/philox.h"

namespace strata {
namespace {

struct Key {
  uint64_t seed;
  uint32_t stream;
  uint64_t step;
};

std::vector<Key> keys() {
  std::vector<Key> k = {
      {0, 0, 0},
      {1234, uint32_t(RngStream::Dropout), 7},
      {~uint64_t(0), ~uint32_t(0), ~uint64_t(0)},
      {0x0123456789abcdefull, uint32_t(RngStream::Init), uint64_t(1) << 32},  // step's high word
      {42, uint32_t(RngStream::Test), (uint64_t(5) << 32) | 99},
  };
  std::mt19937_64 gen(2024);
  for (int i = 0; i < 40; ++i) k.push_back({gen(), uint32_t(gen()), gen() >> (i % 64)});
  return k;
}

std::vector<uint64_t> indices() {
  std::vector<uint64_t> idx;
  for (uint64_t i = 0; i < 64; ++i) idx.push_back(i);
  for (uint64_t base : {uint64_t(1) << 32, (uint64_t(1) << 34) - 3, ~uint64_t(0) - 8})
    for (uint64_t i = 0; i < 9; ++i) idx.push_back(base + i);
  std::mt19937_64 gen(7);
  for (int i = 0; i < 200; ++i) idx.push_back(gen() >> (i % 64));
  return idx;
}

TEST(PhiloxDevice, RawRoundsMatchHost) {
  std::mt19937_64 gen(11);
  for (int t = 0; t < 1000; ++t) {
    const std::array<uint32_t, 4> c = {uint32_t(gen()), uint32_t(gen()), uint32_t(gen()),
                                       uint32_t(gen())};
    const std::array<uint32_t, 2> k = {uint32_t(gen()), uint32_t(gen())};
    const auto want = philox4x32_10(c, k);
    const auto got = cuda::philox4x32_10(c[0], c[1], c[2], c[3], k[0], k[1]);
    for (int j = 0; j < 4; ++j) ASSERT_EQ(got.w[j], want[j]) << "trial " << t << " word " << j;
  }
}

TEST(PhiloxDevice, EveryTransformMatchesHostBitForBit) {
  const auto idx = indices();
  int64_t checked = 0;
  for (const Key& key : keys()) {
    const Philox host(key.seed, key.stream, key.step);
    const auto dev = cuda::PhiloxDevice::make(key.seed, key.stream, key.step);
    for (uint64_t i : idx) {
      ASSERT_EQ(dev.bits(i), host.bits(i)) << "seed " << key.seed << " index " << i;
      ASSERT_EQ(std::bit_cast<uint32_t>(dev.uniform(i)), std::bit_cast<uint32_t>(host.uniform(i)))
          << "seed " << key.seed << " index " << i;
      ASSERT_EQ(std::bit_cast<uint64_t>(dev.uniform_f64(i)),
                std::bit_cast<uint64_t>(host.uniform_f64(i)))
          << "seed " << key.seed << " index " << i;
      ASSERT_EQ(std::bit_cast<uint64_t>(dev.normal(i)), std::bit_cast<uint64_t>(host.normal(i)))
          << "seed " << key.seed << " index " << i;
      const auto b = host.block(i);
      const auto db = dev.block(i);
      for (int j = 0; j < 4; ++j) ASSERT_EQ(db.w[j], b[j]);
      ++checked;
    }
  }
  EXPECT_GT(checked, 10000);
}

// The kernels cache one block and apply the transforms to its words; those must equal the
// per-element functions for every alignment of the element index.
TEST(PhiloxDevice, TransformsFromCachedWordsMatchPerElementFunctions) {
  const auto dev = cuda::PhiloxDevice::make(99, uint32_t(RngStream::Dropout), 3);
  for (uint64_t i = 0; i < 4096; ++i) {
    const auto b4 = dev.block(i >> 2);
    EXPECT_EQ(cuda::PhiloxDevice::uniform_from(b4.w[i & 3]), dev.uniform(i));
    const auto b2 = dev.block(i >> 1);
    const int o = int(i & 1) * 2;
    EXPECT_EQ(cuda::PhiloxDevice::uniform_f64_from(b2.w[o], b2.w[o + 1]), dev.uniform_f64(i));
    EXPECT_EQ(cuda::PhiloxDevice::normal_from(b2.w[o], b2.w[o + 1]), dev.normal(i));
  }
}

TEST(PhiloxDevice, UniformRanges) {
  const auto dev = cuda::PhiloxDevice::make(5, 1, 0);
  for (uint64_t i = 0; i < 100000; ++i) {
    const float u = dev.uniform(i);
    const double d = dev.uniform_f64(i);
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    ASSERT_GE(d, 0.0);
    ASSERT_LT(d, 1.0);
    ASSERT_TRUE(std::isfinite(dev.normal(i)));
  }
}

}  // namespace
}  // namespace strata
