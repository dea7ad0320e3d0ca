#include "core/kernels/cpu/gemm/gemm_packed.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <memory>
#include <new>

namespace strata::gemm::detail {
namespace {

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

// 64-byte aligned so the micro-kernel's aligned loads never split a cache line.
template <class T>
std::unique_ptr<T[], FreeDeleter> aligned_buffer(int64_t count) {
  const size_t bytes = ((size_t(count) * sizeof(T) + 63) / 64) * 64;
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  return std::unique_ptr<T[], FreeDeleter>(static_cast<T*>(p));
}

// Below about this many multiply-adds per thread the fork/join and barrier cost more than the
// extra core gives back.
constexpr int64_t kMinWorkPerThread = 64 * 64 * 64;

struct ThreadGrid {
  int tm = 1, tn = 1;
};

// Splits the tile grid into tm x tn rectangles, one per thread, minimising the largest share.
// A thread's cost counts its tiles plus packing its rows of A (about an eighth of a tile row's
// multiply-adds per tile), which threads that split n both pay for the same rows.
ThreadGrid choose_grid(int threads, int64_t m_tiles, int64_t n_tiles) {
  ThreadGrid best;
  int64_t best_cost = std::numeric_limits<int64_t>::max();
  for (int tm = 1; tm <= threads; ++tm) {
    if (threads % tm != 0) continue;
    const int tn = threads / tm;
    const int64_t rows = ceil_div(m_tiles, tm), cols = ceil_div(n_tiles, tn);
    const int64_t cost = rows * (8 * cols + 1);
    if (cost <= best_cost) {
      best_cost = cost;
      best = {tm, tn};
    }
  }
  return best;
}

}  // namespace

template <class T>
void packed_gemm(const PackedKernel<T>& kern, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                 T alpha, const void* a, int64_t lda, const void* b, int64_t ldb, T beta, T* c,
                 int64_t ldc) {
  const int64_t mr = kern.mr, nr = kern.nr;
  const int64_t m_tiles = ceil_div(m, mr), n_tiles = ceil_div(n, nr);
  const int64_t kc_max = std::min(kern.kc, k);
  const int64_t nc_max = std::min(kern.nc, n_tiles * nr);

  int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const double work = double(m) * double(n) * double(k);  // may exceed int64 in principle
  threads = int(std::clamp<double>(work / double(kMinWorkPerThread), 1.0, threads));
  threads = int(std::min<int64_t>(threads, m_tiles * n_tiles));
  const ThreadGrid grid = choose_grid(threads, m_tiles, n_tiles);

  // Work units are (block of mc rows, one of tn column ranges), handed out dynamically so a
  // thread slowed by another process on its core does not hold the others at the barrier.
  // Rows are cut so there are at least tm blocks; which thread runs a unit does not change
  // its arithmetic.
  const int64_t mc_max = std::min(kern.mc, ceil_div(m_tiles, grid.tm) * mr);
  const int64_t units = ceil_div(m, mc_max) * grid.tn;
  // Two B buffers: block s+1 is packed while slower threads may still read block s, so one
  // barrier per k block suffices (the one ending the packing loop).
  const int64_t b_size = kc_max * nc_max;
  auto b_pack = aligned_buffer<T>(2 * b_size);
  auto a_pack = aligned_buffer<T>(int64_t(threads) * mc_max * kc_max);

#pragma omp parallel num_threads(threads)
  {
    T* a_mine = a_pack.get() + int64_t(omp_get_thread_num()) * mc_max * kc_max;
    int64_t step = 0;  // k blocks done so far, over all column blocks

    for (int64_t jc = 0; jc < n; jc += kern.nc) {
      const int64_t nc = std::min(kern.nc, n - jc);
      const int64_t panels = ceil_div(nc, nr);
      const int64_t first_panel = jc / nr;

      for (int64_t pc = 0; pc < k; pc += kern.kc, ++step) {
        const int64_t kc = std::min(kern.kc, k - pc);
        T* b_block = b_pack.get() + (step % 2) * b_size;
        // Later k blocks add onto what the first one wrote.
        const T beta_block = pc == 0 ? beta : T(1);

#pragma omp for schedule(static)
        for (int64_t q = 0; q < panels; ++q) {
          kern.pack_b(b, ldb, tb, pc, kc, jc + q * nr, std::min(nr, nc - q * nr),
                      b_block + q * nr * kc);
        }  // implicit barrier: this B block is packed, and everyone is done with block step-1

#pragma omp for schedule(dynamic, 1) nowait
        for (int64_t u = 0; u < units; ++u) {
          const int64_t tj = u % grid.tn;
          // This unit's micro-panels inside the current column block.
          const int64_t q0 = std::max<int64_t>(n_tiles * tj / grid.tn - first_panel, 0);
          const int64_t q1 = std::min<int64_t>(n_tiles * (tj + 1) / grid.tn - first_panel, panels);
          if (q0 >= q1) continue;
          const int64_t i0 = (u / grid.tn) * mc_max;
          const int64_t rows = std::min(mc_max, m - i0);
          kern.pack_a(a, lda, ta, i0, rows, pc, kc, a_mine);
          for (int64_t q = q0; q < q1; ++q) {
            const int64_t j = jc + q * nr;
            const int cols = int(std::min(nr, n - j));
            const T* bp = b_block + q * nr * kc;
            for (int64_t r = 0; r * mr < rows; ++r) {
              kern.micro(kc, a_mine + r * mr * kc, bp, alpha, beta_block,
                         c + (i0 + r * mr) * ldc + j, ldc, int(std::min(mr, rows - r * mr)), cols);
            }
          }
        }
      }
    }
  }
}

template void packed_gemm<float>(const PackedKernel<float>&, bool, bool, int64_t, int64_t, int64_t,
                                 float, const void*, int64_t, const void*, int64_t, float, float*,
                                 int64_t);
template void packed_gemm<double>(const PackedKernel<double>&, bool, bool, int64_t, int64_t,
                                  int64_t, double, const void*, int64_t, const void*, int64_t,
                                  double, double*, int64_t);

}  // namespace strata::gemm::detail
