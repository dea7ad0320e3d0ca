// Repeated GEMMs must run on OpenMP's persistent thread pool. A batched GEMM once wrapped each
// call in an inactive `omp parallel if (false)` region, which made the kernel's own parallel
// region a nested one; libgomp starts and joins fresh threads for every nested team, so training
// created and destroyed one thread per matrix product (about 70 per BERT step). This binary
// counts thread creations by interposing pthread_create (libgomp calls it through the PLT, and a
// definition in the executable comes first in symbol lookup), so it is kept apart from the other
// core tests.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <omp.h>
#include <pthread.h>

#include <atomic>
#include <functional>
#include <vector>

#include "core/kernels/cpu/gemm/gemm.h"
#include "core/ops.h"
#include "core/random/philox.h"
#include "core/tensor.h"

namespace {
std::atomic<int> g_threads_created{0};
}  // namespace

extern "C" int pthread_create(pthread_t* thread, const pthread_attr_t* attr, void* (*start)(void*),
                              void* arg) {
  using Real = int (*)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
  static const Real real = reinterpret_cast<Real>(dlsym(RTLD_NEXT, "pthread_create"));
  g_threads_created.fetch_add(1);
  return real(thread, attr, start, arg);
}

namespace strata {
namespace {

// Threads started by `calls` runs of `work`, after one run that fills the pool.
int threads_started(int calls, const std::function<void()>& work) {
  work();
  const int before = g_threads_created.load();
  for (int i = 0; i < calls; ++i) work();
  return g_threads_created.load() - before;
}

class GemmThreadPool : public ::testing::Test {
 protected:
  // Large enough that every kernel splits the product over both threads.
  static constexpr int64_t kN = 192;
  void SetUp() override { omp_set_num_threads(2); }
  std::vector<float> a = std::vector<float>(3 * kN * kN, 0.5f), b = a, c = a;
  std::vector<double> ad = std::vector<double>(3 * kN * kN, 0.5), bd = ad, cd = ad;
};

TEST_F(GemmThreadPool, InterpositionSeesOpenMPThreads) {
  // The check below is only meaningful if a team of new threads is counted at all.
  const int before = g_threads_created.load();
  std::atomic<int> ran{0};
#pragma omp parallel num_threads(4)
  ran.fetch_add(1);
  ASSERT_EQ(ran.load(), 4);
  EXPECT_GE(g_threads_created.load() - before, 1) << "pthread_create was not interposed";
}

TEST_F(GemmThreadPool, BatchedGemmReusesThePool) {
  using gemm::Kernel, gemm::Trans;
  for (int64_t batch : {1, 3}) {  // 3 over 2 threads: entry by entry, each on both threads
    EXPECT_EQ(threads_started(20,
                              [&] {
                                gemm::sgemm_batched(Kernel::Auto, Trans::No, Trans::No, batch, kN,
                                                    kN, kN, 1.0f, a.data(), kN, kN * kN, b.data(),
                                                    kN, kN * kN, 0.0f, c.data(), kN, kN * kN);
                              }),
              0)
        << "sgemm_batched, batch " << batch;
    EXPECT_EQ(threads_started(20,
                              [&] {
                                gemm::dgemm_batched(Kernel::Auto, Trans::Yes, Trans::No, batch, kN,
                                                    kN, kN, 1.0, ad.data(), kN, kN * kN, bd.data(),
                                                    kN, kN * kN, 0.0, cd.data(), kN, kN * kN);
                              }),
              0)
        << "dgemm_batched, batch " << batch;
  }
}

TEST_F(GemmThreadPool, MatmulForwardAndBackwardReuseThePool) {
  Tensor x = randn({4, 64, kN}, RandomKey{5, uint32_t(RngStream::Test), 1}).set_requires_grad(true);
  Tensor w = randn({kN, kN}, RandomKey{5, uint32_t(RngStream::Test), 2}).set_requires_grad(true);
  EXPECT_EQ(threads_started(10, [&] { sum(matmul(x, w)).backward(); }), 0);
}

}  // namespace
}  // namespace strata
