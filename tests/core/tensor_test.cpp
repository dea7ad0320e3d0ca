// Tensor handles, views, dtypes, broadcasting, allocator statistics and error messages.
#include <gtest/gtest.h>

#include <omp.h>

#include <cmath>

#include "core/ops.h"
#include "core/random/philox.h"

namespace strata {
namespace {

std::vector<float> range_values(int64_t n) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = float(i);
  return v;
}

// The error thrown by f must mention every fragment (op name, shapes, the fix).
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

TEST(Tensor, ViewsShareStorage) {
  Tensor x = from_vector(range_values(12), {3, 4});
  Tensor t = x.t();
  EXPECT_EQ(t.shape(), (Shape{4, 3}));
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(t.raw_data(), x.raw_data());
  Tensor row = x.select(0, 1);
  {
    NoGradGuard g;
    row.fill_(-1);
  }
  EXPECT_EQ(x.to_vector<float>()[4], -1);
  EXPECT_EQ(t.to_vector<float>()[1], -1);  // t[0][1] == x[1][0]
  Tensor n = x.narrow(1, 1, 2);
  EXPECT_EQ(n.to_vector<float>(), (std::vector<float>{1, 2, -1, -1, 9, 10}));
}

TEST(Tensor, ReshapeViewsWhenPossibleAndCopiesOtherwise) {
  Tensor x = from_vector(range_values(24), {2, 3, 4});
  Tensor v = x.reshape({6, 4});
  EXPECT_EQ(v.raw_data(), x.raw_data());
  Tensor p = x.permute({0, 2, 1});     // [2, 4, 3], not viewable as [8, 3]... but it is
  Tensor merged = p.reshape({2, 12});  // needs a copy
  EXPECT_NE(merged.raw_data(), x.raw_data());
  EXPECT_EQ(merged.to_vector<float>()[1], 4.0f);
  Tensor batch = p.reshape({8, 3});  // dims 0 and 1 of p merge only with a copy
  EXPECT_EQ(batch.to_vector<float>()[3], 1.0f);
  Tensor tv = x.transpose(0, 1).reshape({3, 8});  // strides allow no view: copy
  EXPECT_EQ(tv.to_vector<float>()[4], 12.0f);
  Tensor ex = from_vector(range_values(3), {3, 1}).expand({3, 4});
  EXPECT_EQ(ex.strides(), (Shape{1, 0}));
  EXPECT_EQ(ex.contiguous().to_vector<float>()[5], 1.0f);
}

TEST(Tensor, DtypeConversions) {
  Tensor x = from_vector(std::vector<float>{1.5f, -2.25f, 0.0f, 3.0e-3f}, {4});
  EXPECT_EQ(x.to(DType::i64).to_vector<int64_t>(), (std::vector<int64_t>{1, -2, 0, 0}));
  EXPECT_EQ(x.to(DType::b8).to_vector<bool>(), (std::vector<bool>{true, true, false, true}));
  EXPECT_EQ(x.to(DType::f64).to_vector<double>()[1], -2.25);
  // bf16 keeps 8 significant bits and rounds to nearest even.
  const auto b = from_vector(std::vector<float>{1.0f + 1.0f / 256, 1.0f + 3.0f / 256}, {2})
                     .to(DType::bf16)
                     .to(DType::f32)
                     .to_vector<float>();
  EXPECT_EQ(b[0], 1.0f);               // tie -> even
  EXPECT_EQ(b[1], 1.0f + 4.0f / 256);  // tie -> even (up)
}

TEST(Tensor, BroadcastingArithmetic) {
  Tensor a = from_vector(range_values(6), {2, 3});
  Tensor b = from_vector(std::vector<float>{10, 20, 30}, {3});
  EXPECT_EQ((a + b).to_vector<float>(), (std::vector<float>{10, 21, 32, 13, 24, 35}));
  Tensor c = from_vector(std::vector<float>{1, 2}, {2, 1});
  EXPECT_EQ((a * c).to_vector<float>(), (std::vector<float>{0, 1, 2, 6, 8, 10}));
  EXPECT_EQ(gt(a, b * 0.1).to_vector<bool>(),
            (std::vector<bool>{false, false, false, true, true, true}));
}

TEST(Tensor, ReductionsOverAnyDims) {
  Tensor x = from_vector(range_values(24), {2, 3, 4}).to(DType::f64);
  EXPECT_EQ(sum(x).item<double>(), 276);
  EXPECT_EQ(sum(x, {0, 2}).to_vector<double>(), (std::vector<double>{60, 92, 124}));
  EXPECT_EQ(sum(x, {0}).shape(), (Shape{3, 4}));
  EXPECT_EQ(amax(x, {1}, true).shape(), (Shape{2, 1, 4}));
  Tensor m = from_vector(std::vector<float>{1, 5, 2, 7, 0, 3}, {2, 3});
  EXPECT_EQ(argmax(m, 1).to_vector<int64_t>(), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(argmax(m.t(), 1).to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 1}));
  EXPECT_NEAR(logsumexp(x, {2}).to_vector<double>()[0],
              std::log(std::exp(0.) + std::exp(1.) + std::exp(2.) + std::exp(3.)), 1e-12);
  EXPECT_EQ(cumsum(from_vector(std::vector<int64_t>{1, 2, 3}, {3}), 0).to_vector<int64_t>(),
            (std::vector<int64_t>{1, 3, 6}));
}

TEST(Tensor, ErrorsNameTheOpShapesAndFix) {
  Tensor a = zeros({2, 3}), b = zeros({4, 5});
  expect_error([&] { add(a, b); }, {"add", "[2, 3]", "[4, 5]", "broadcast"});
  expect_error([&] { matmul(a, b); }, {"matmul", "[2, 3]", "[4, 5]"});
  expect_error([&] { add(a, zeros({2, 3}, DType::f64)); }, {"add", "f32", "f64", ".to(dtype)"});
  expect_error([&] { a.view({5}); }, {"view", "[5]", "6"});
  expect_error(
      [&] {
        index_select(a, 0, from_vector(std::vector<int64_t>{0, 7}, {2}));
      },
      {"index_select", "index 7", "size 2"});
  expect_error([&] { a.narrow(1, 2, 5); }, {"narrow", "dim 1", "size 3"});
  expect_error(
      [&] {
        cross_entropy(zeros({2, 5}), from_vector(std::vector<int64_t>{1, 9}, {2}));
      },
      {"cross_entropy", "9", "V=5"});
  expect_error([&] { a.item<float>(); }, {"item", "6 elements"});
  expect_error([&] { a.data<double>(); }, {"data<f64>", "f32"});
  expect_error([&] { zeros({2}).to(DType::i64).set_requires_grad(true); }, {"i64"});
  expect_error([&] { softmax(a, 3); }, {"softmax", "dim 3", "rank 2"});
}

TEST(Allocator, CachesFreedBlocksAndTracksPeak) {
  Allocator& alloc = Runtime::get().allocator(Device::cpu());
  alloc.reset_peak();
  const MemoryStats before = alloc.stats();
  {
    Tensor big = empty({1 << 20});  // 4 MiB
    EXPECT_GE(alloc.stats().current_bytes, before.current_bytes + (4 << 20));
  }
  const MemoryStats after_free = alloc.stats();
  EXPECT_EQ(after_free.current_bytes, before.current_bytes);
  EXPECT_GE(after_free.peak_bytes, before.current_bytes + (4 << 20));
  EXPECT_GE(after_free.cached_bytes, 4 << 20);
  const int64_t hits = after_free.cache_hits;
  Tensor again = empty({1 << 20});
  EXPECT_EQ(alloc.stats().cache_hits, hits + 1);  // served from the cache
  EXPECT_EQ(reinterpret_cast<uintptr_t>(again.raw_data()) % 64, 0u);
}

TEST(Philox, KnownAnswerAndCounterIndependence) {
  // Known-answer vector for Philox-4x32-10 (Random123: counter and key all zero).
  const auto z = philox4x32_10({0, 0, 0, 0}, {0, 0});
  EXPECT_EQ(z[0], 0x6627e8d5u);
  EXPECT_EQ(z[1], 0xe169c58du);
  EXPECT_EQ(z[2], 0xbc57ac4cu);
  EXPECT_EQ(z[3], 0x9b00dbd8u);
  const Philox a(42, RngStream::Dropout, 7), b(42, RngStream::Dropout, 7),
      c(42, RngStream::Dropout, 8);
  EXPECT_EQ(a.bits(123456789), b.bits(123456789));
  EXPECT_NE(a.bits(5), c.bits(5));
}

TEST(Random, TensorsDependOnlyOnKeyAndIndexNotShapeOrThreads) {
  const RandomKey key{11, uint32_t(RngStream::Init), 0};
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const auto one = randn({300, 700}, key).to_vector<float>();
  omp_set_num_threads(2);
  const auto two = randn({700, 300}, key).to_vector<float>();
  omp_set_num_threads(saved);
  EXPECT_EQ(one, two);
  // A shard starting at index_offset reproduces the matching slice of the whole tensor.
  RandomKey shard = key;
  shard.index_offset = 1000;
  const auto part = randn({10}, shard).to_vector<float>();
  EXPECT_EQ(part, std::vector<float>(one.begin() + 1000, one.begin() + 1010));
  // Moments of 210,000 normals.
  double m = 0, v = 0;
  for (float f : one) m += f;
  m /= double(one.size());
  for (float f : one) v += (f - m) * (f - m);
  v /= double(one.size());
  EXPECT_NEAR(m, 0.0, 0.01);
  EXPECT_NEAR(v, 1.0, 0.01);
}

TEST(Dropout, RateScaleAndLayoutIndependence) {
  const RandomKey key{3, uint32_t(RngStream::Dropout), 17};
  Tensor x = ones({1000, 1000});
  const auto y = dropout(x, 0.1, key).to_vector<float>();
  int64_t zeros_count = 0;
  for (float v : y) {
    if (v == 0)
      ++zeros_count;
    else
      EXPECT_FLOAT_EQ(v, 1.0f / 0.9f);
  }
  // 10^6 Bernoulli(0.1): standard deviation 300; allow 5 sigma.
  EXPECT_NEAR(double(zeros_count), 1e5, 1500);
  EXPECT_EQ(dropout(x.reshape({10, 100000}), 0.1, key).to_vector<float>(), y);
  EXPECT_EQ(dropout(x, 0.1, key, /*training=*/false).to_vector<float>(), x.to_vector<float>());
}

}  // namespace
}  // namespace strata
