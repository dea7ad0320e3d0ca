// The GPU caching allocator (statistics, stream-ordered reuse, empty_cache, out-of-memory message)
// and the pinned host allocator.
#include <gtest/gtest.h>

#include <string>

#include "core/cuda/cuda_allocator.h"
#include "core/cuda/cuda_context.h"
#include "core/ops.h"

namespace strata {
namespace {

const Device kGpu = Device::cuda(0);

TEST(CudaAllocator, SizeClasses) {
  using A = cuda::CachingCudaAllocator;
  EXPECT_EQ(A::round_size(1), 512u);
  EXPECT_EQ(A::round_size(512), 512u);
  EXPECT_EQ(A::round_size(513), 1024u);
  EXPECT_EQ(A::round_size(4096), 4096u);
  EXPECT_EQ(A::round_size(4097), 4096u + 512u);  // [4 KiB, 8 KiB): steps of 512 B
  EXPECT_EQ(A::round_size(8193), 8192u + 1024u);
  EXPECT_EQ(A::round_size((1u << 20) + 1), (1u << 20) + (128u << 10));
  const size_t two_mib = size_t(2) << 20;
  EXPECT_EQ(A::round_size((size_t(100) << 20) + 1), (size_t(100) << 20) + two_mib);
  for (size_t n : {size_t(1000), size_t(70000), size_t(3) << 20, (size_t(1) << 30) + 7})
    EXPECT_LE(double(A::round_size(n)), 1.125 * double(n) + 512) << n;
}

TEST(CudaAllocator, StatsAndCacheReuse) {
  Allocator& a = Runtime::get().allocator(kGpu);
  EXPECT_EQ(a.device(), kGpu);
  const size_t bytes = size_t(3) << 20;
  const size_t size = cuda::CachingCudaAllocator::round_size(bytes);
  const MemoryStats before = a.stats();
  void* first;
  {
    Tensor t = Tensor::empty({int64_t(bytes / 4)}, DType::f32, kGpu);
    first = t.storage().data();
    const MemoryStats during = a.stats();
    EXPECT_EQ(during.current_bytes, before.current_bytes + int64_t(size));
    EXPECT_GE(during.peak_bytes, during.current_bytes);
    EXPECT_EQ(during.allocations, before.allocations + 1);
    EXPECT_EQ(during.reserved_bytes, during.current_bytes + during.cached_bytes);
  }
  const MemoryStats after_free = a.stats();
  EXPECT_EQ(after_free.current_bytes, before.current_bytes);
  EXPECT_GE(after_free.cached_bytes, int64_t(size));
  Tensor again = Tensor::empty({int64_t(bytes / 4)}, DType::f32, kGpu);
  EXPECT_EQ(again.storage().data(), first);  // same class: the cached block comes back
  EXPECT_EQ(a.stats().cache_hits, after_free.cache_hits + 1);
  a.reset_peak();
  EXPECT_EQ(a.stats().peak_bytes, a.stats().current_bytes);
}

TEST(CudaAllocator, ReuseIsOrderedByTheStream) {
  // x's block is freed while y = 2x may still be queued, and handed to z at once; the stream
  // orders z's fill after the multiply, so y must come out as 2 everywhere.
  const int64_t n = int64_t(1) << 22;
  Tensor y;
  void* block;
  {
    Tensor x = full({n}, 1.0, DType::f32, kGpu);
    block = x.storage().data();
    y = x * 2.0;
  }
  Tensor z = full({n}, 5.0, DType::f32, kGpu);
  EXPECT_EQ(z.storage().data(), block);
  EXPECT_EQ(sum(y).item<double>(), 2.0 * double(n));
  EXPECT_EQ(sum(z).item<double>(), 5.0 * double(n));
}

TEST(CudaAllocator, EmptyCacheReturnsCachedBlocks) {
  Allocator& a = Runtime::get().allocator(kGpu);
  { Tensor t = Tensor::empty({1 << 20}, DType::f32, kGpu); }
  EXPECT_GT(a.stats().cached_bytes, 0);
  const int64_t held = a.stats().current_bytes;
  a.empty_cache();
  const MemoryStats s = a.stats();
  EXPECT_EQ(s.cached_bytes, 0);
  EXPECT_EQ(s.current_bytes, held);
  EXPECT_EQ(s.reserved_bytes, held);
}

TEST(CudaAllocator, OutOfMemoryNamesTheRequestAndTheFix) {
  const int64_t huge = int64_t(1) << 48;  // 1 PiB of f32
  try {
    Tensor t = Tensor::empty({huge}, DType::f32, kGpu);
    FAIL() << "a 1 PiB allocation succeeded";
  } catch (const Error& e) {
    const std::string m = e.what();
    for (const char* frag :
         {"out of memory", "cuda:0", "bytes requested", "in tensors", "cached", "batch size"})
      EXPECT_NE(m.find(frag), std::string::npos) << m;
  }
  // The allocator still works afterwards.
  Tensor ok = full({16}, 3.0, DType::f32, kGpu);
  EXPECT_EQ(ok.to_vector<float>()[15], 3.0f);
}

TEST(CudaAllocator, MissingDeviceIsNamed) {
  const int n = cuda::device_count();
  try {
    Tensor t = Tensor::empty({4}, DType::f32, Device::cuda(n));
    FAIL() << "allocated on cuda:" << n;
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("cuda:" + std::to_string(n)), std::string::npos) << m;
    EXPECT_NE(m.find(std::to_string(n) + " GPU"), std::string::npos) << m;
  }
}

TEST(PinnedAllocator, PinnedTensorsAreCpuTensors) {
  Tensor p = Tensor::empty_pinned({2, 3}, DType::f32);
  EXPECT_TRUE(p.is_pinned());
  EXPECT_EQ(p.device(), Device::cpu());
  float* d = p.data<float>();
  for (int i = 0; i < 6; ++i) d[i] = float(i);
  EXPECT_EQ(sum(p).item<float>(), 15.0f);  // a CPU kernel on pinned memory
  EXPECT_FALSE(Tensor::empty({2}, DType::f32).is_pinned());
  Tensor q = from_vector(std::vector<float>{1, 2}, {2}).pin_memory();
  EXPECT_TRUE(q.is_pinned());
  EXPECT_EQ(q.to_vector<float>(), (std::vector<float>{1, 2}));
  const MemoryStats s = Runtime::get().pinned_allocator().stats();
  EXPECT_GT(s.current_bytes, 0);
}

TEST(PinnedAllocator, BlockIsNotReusedWhileACopyReadsIt) {
  const int64_t n = int64_t(1) << 24;  // 64 MiB: the copy takes long enough to overlap
  Tensor gpu;
  {
    Tensor p = Tensor::empty_pinned({n}, DType::f32);
    p.fill_(7.0);
    gpu = p.to(kGpu);  // asynchronous: p may still be read after this returns
  }
  Tensor p2 = Tensor::empty_pinned({n}, DType::f32);
  p2.fill_(-1.0);  // must not land in the block the copy above is reading
  EXPECT_EQ(sum(gpu.to(DType::f64)).item<double>(), 7.0 * double(n));
}

}  // namespace
}  // namespace strata
