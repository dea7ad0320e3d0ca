// Our own f32 and bf16 GEMM: packing routines and a 6x16 AVX2+FMA micro-kernel plugged into
// the blocked loop nest of gemm_packed.cpp. Every function that uses AVX2/FMA carries a target
// attribute, so this file builds without -march=native; gemm.cpp calls in only after checking
// cpu_features().
#include <immintrin.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <type_traits>

#include "core/kernels/cpu/gemm/gemm_backends.h"
#include "core/kernels/cpu/gemm/gemm_packed.h"

#define STRATA_AVX2 __attribute__((target("avx2,fma")))

namespace strata::gemm::detail {
namespace {

// 6 rows x 16 columns = 12 ymm accumulators + 2 for B + 1 broadcast A = 15 of the 16 registers;
// per k step 12 FMAs against 2 vector loads and 6 broadcasts, enough to keep both FMA pipes busy.
constexpr int kMr = 6;
constexpr int kNr = 16;
// Zen 3 (this CPU class): 32 KiB L1d, 512 KiB L2 per core. kc = 256 puts one B micro-panel
// (256 x 16 x 4 B = 16 KiB) in L1 beside the streaming A micro-panel; mc = 144 puts the A block
// (144 x 256 x 4 B = 144 KiB) in L2 with room for C; the B block (kc x nc) lives in L3.
constexpr int64_t kMc = 144;
constexpr int64_t kKc = 256;
constexpr int64_t kNc = 4080;
// Packing walks a transposed A or a plain B down k, one row of storage (lda / ldb apart, often
// 1 KiB or more) per step. In training these are activations (the weight-gradient GEMM
// g^T x reads two of them) that come from L3 or memory, and the hardware prefetcher does not
// follow a stride that crosses a page every few rows, so the pack stalled on each row; fetching
// 16 rows ahead hides that (measured: weight-gradient GEMMs on cold data 5-10% faster).
constexpr int64_t kPrefetchRows = 16;

inline float to_f32(float x) {
  return x;
}
inline float to_f32(bf16 x) {
  return std::bit_cast<float>(uint32_t(x.bits) << 16);
}

// Eight consecutive elements of a row, widened to f32.
STRATA_AVX2 inline __m256 load8(const float* p) {
  return _mm256_loadu_ps(p);
}
STRATA_AVX2 inline __m256 load8(const bf16* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// In-register 8x8 transpose: r[i] holds row i on entry and column i on exit.
STRATA_AVX2 inline void transpose8(__m256 r[8]) {
  __m256 t[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  __m256 u[8];
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

template <class S>
STRATA_AVX2 void pack_a(const void* a_raw, int64_t lda, bool trans, int64_t i0, int64_t rows,
                        int64_t p0, int64_t depth, float* dst) {
  const S* a = static_cast<const S*>(a_raw);
  for (int64_t r0 = 0; r0 < rows; r0 += kMr, dst += kMr * depth) {
    const int h = int(std::min<int64_t>(kMr, rows - r0));
    if (trans) {
      // A stored k x m: each k step of the panel is h contiguous elements.
      int64_t p = 0;
      if constexpr (std::is_same_v<S, float>) {
        if (h == kMr) {
          for (; p < depth; ++p) {
            const float* src = a + (p0 + p) * lda + i0 + r0;
            _mm_prefetch(reinterpret_cast<const char*>(src + kPrefetchRows * lda), _MM_HINT_T0);
            float* d = dst + p * kMr;
            _mm_storeu_ps(d, _mm_loadu_ps(src));
            _mm_store_sd(reinterpret_cast<double*>(d + 4),
                         _mm_load_sd(reinterpret_cast<const double*>(src + 4)));
          }
        }
      }
      for (; p < depth; ++p) {
        const S* src = a + (p0 + p) * lda + i0 + r0;
        float* d = dst + p * kMr;
        for (int i = 0; i < h; ++i) d[i] = to_f32(src[i]);
        for (int i = h; i < kMr; ++i) d[i] = 0.0f;
      }
      continue;
    }
    // A stored m x k: read 8 k steps of each row, transpose, and write the 8 panel rows
    // (6 floats each) with overlapping 8-float stores in increasing order, so each store's two
    // spare lanes are overwritten by the next. The last 8-block is done in scalar so no store
    // runs past the panel.
    const S* src[kMr];
    for (int i = 0; i < kMr; ++i) src[i] = a + (i0 + r0 + std::min(i, h - 1)) * lda + p0;
    int64_t p = 0;
    if (h == kMr) {
      for (; p + 8 < depth; p += 8) {
        __m256 r[8];
        for (int i = 0; i < kMr; ++i) r[i] = load8(src[i] + p);
        r[6] = r[7] = _mm256_setzero_ps();
        transpose8(r);
        for (int q = 0; q < 8; ++q) _mm256_storeu_ps(dst + (p + q) * kMr, r[q]);
      }
    }
    for (; p < depth; ++p) {
      float* d = dst + p * kMr;
      for (int i = 0; i < kMr; ++i) d[i] = i < h ? to_f32(src[i][p]) : 0.0f;
    }
  }
}

template <class S>
STRATA_AVX2 void pack_b(const void* b_raw, int64_t ldb, bool trans, int64_t p0, int64_t depth,
                        int64_t j0, int64_t cols, float* dst) {
  const S* b = static_cast<const S*>(b_raw);
  if (!trans) {
    // B stored k x n: each k step is cols contiguous elements.
    for (int64_t p = 0; p < depth; ++p) {
      const S* src = b + (p0 + p) * ldb + j0;
      _mm_prefetch(reinterpret_cast<const char*>(src + kPrefetchRows * ldb), _MM_HINT_T0);
      float* d = dst + p * kNr;
      if (cols == kNr) {
        for (int j = 0; j < kNr; ++j) d[j] = to_f32(src[j]);
      } else {
        for (int j = 0; j < cols; ++j) d[j] = to_f32(src[j]);
        for (int j = int(cols); j < kNr; ++j) d[j] = 0.0f;
      }
    }
  } else {
    // B stored n x k: column j of op(B) is row j0 + j of storage. Full panels go 8 k steps at
    // a time through two 8x8 transposes; the rest element by element.
    int64_t p = 0;
    if (cols == kNr) {
      for (; p + 8 <= depth; p += 8) {
        for (int half = 0; half < 2; ++half) {
          __m256 r[8];
          for (int j = 0; j < 8; ++j) r[j] = load8(b + (j0 + 8 * half + j) * ldb + p0 + p);
          transpose8(r);
          for (int q = 0; q < 8; ++q) _mm256_store_ps(dst + (p + q) * kNr + 8 * half, r[q]);
        }
      }
    }
    for (int j = 0; j < kNr; ++j) {
      if (j < cols) {
        const S* src = b + (j0 + j) * ldb + p0;
        for (int64_t q = p; q < depth; ++q) dst[q * kNr + j] = to_f32(src[q]);
      } else {
        for (int64_t q = p; q < depth; ++q) dst[q * kNr + j] = 0.0f;
      }
    }
  }
}

// The accumulation loop is assembly: with intrinsics GCC 12 turns some B loads into repeated
// memory operands and adds register moves, which cost a few percent. Accumulators live in
// ymm0-ymm11 (row r in ymm{2r, 2r+1}), B in ymm12/13, the broadcast A element in ymm14.
// clang-format off
#define STRATA_FMA_ROW(aoff, r0, r1)                 \
  "vbroadcastss " #aoff "(%[ap]), %%ymm14\n\t"      \
  "vfmadd231ps %%ymm12, %%ymm14, %%ymm" #r0 "\n\t"  \
  "vfmadd231ps %%ymm13, %%ymm14, %%ymm" #r1 "\n\t"
#define STRATA_K_STEP(b0off, a0)                     \
  "vmovaps " #b0off "(%[bp]), %%ymm12\n\t"          \
  "vmovaps 32+" #b0off "(%[bp]), %%ymm13\n\t"       \
  STRATA_FMA_ROW(a0, 0, 1)                           \
  STRATA_FMA_ROW(4 + a0, 2, 3)                       \
  STRATA_FMA_ROW(8 + a0, 4, 5)                       \
  STRATA_FMA_ROW(12 + a0, 6, 7)                      \
  STRATA_FMA_ROW(16 + a0, 8, 9)                      \
  STRATA_FMA_ROW(20 + a0, 10, 11)
// clang-format on

STRATA_AVX2 void micro_6x16(int64_t depth, const float* ap, const float* bp, float alpha,
                            float beta, float* c, int64_t ldc, int rows, int cols) {
  // C is read (beta != 0) or written only after the k loop; start fetching it now.
  for (int i = 0; i < rows; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + kNr - 1), _MM_HINT_T0);
  }
  alignas(32) float sums[kMr][kNr];
  int64_t blocks = depth / 4, rest = depth % 4;
  asm volatile(
      "vxorps %%ymm0, %%ymm0, %%ymm0\n\t"
      "vxorps %%ymm1, %%ymm1, %%ymm1\n\t"
      "vxorps %%ymm2, %%ymm2, %%ymm2\n\t"
      "vxorps %%ymm3, %%ymm3, %%ymm3\n\t"
      "vxorps %%ymm4, %%ymm4, %%ymm4\n\t"
      "vxorps %%ymm5, %%ymm5, %%ymm5\n\t"
      "vxorps %%ymm6, %%ymm6, %%ymm6\n\t"
      "vxorps %%ymm7, %%ymm7, %%ymm7\n\t"
      "vxorps %%ymm8, %%ymm8, %%ymm8\n\t"
      "vxorps %%ymm9, %%ymm9, %%ymm9\n\t"
      "vxorps %%ymm10, %%ymm10, %%ymm10\n\t"
      "vxorps %%ymm11, %%ymm11, %%ymm11\n\t"
      "testq %[blocks], %[blocks]\n\t"
      "jz 2f\n\t"
      "1:\n\t"
      "prefetcht0 512(%[ap])\n\t"  // A streams from L2; the B panel is already in L1
      STRATA_K_STEP(0, 0) STRATA_K_STEP(64, 24) STRATA_K_STEP(128, 48) STRATA_K_STEP(192, 72)
      "addq $96, %[ap]\n\t"
      "addq $256, %[bp]\n\t"
      "decq %[blocks]\n\t"
      "jnz 1b\n\t"
      "2:\n\t"
      "testq %[rest], %[rest]\n\t"
      "jz 4f\n\t"
      "3:\n\t" STRATA_K_STEP(0, 0)
      "addq $24, %[ap]\n\t"
      "addq $64, %[bp]\n\t"
      "decq %[rest]\n\t"
      "jnz 3b\n\t"
      "4:\n\t"
      "vmovaps %%ymm0, 0(%[sums])\n\t"
      "vmovaps %%ymm1, 32(%[sums])\n\t"
      "vmovaps %%ymm2, 64(%[sums])\n\t"
      "vmovaps %%ymm3, 96(%[sums])\n\t"
      "vmovaps %%ymm4, 128(%[sums])\n\t"
      "vmovaps %%ymm5, 160(%[sums])\n\t"
      "vmovaps %%ymm6, 192(%[sums])\n\t"
      "vmovaps %%ymm7, 224(%[sums])\n\t"
      "vmovaps %%ymm8, 256(%[sums])\n\t"
      "vmovaps %%ymm9, 288(%[sums])\n\t"
      "vmovaps %%ymm10, 320(%[sums])\n\t"
      "vmovaps %%ymm11, 352(%[sums])\n\t"
      : [ap] "+r"(ap), [bp] "+r"(bp), [blocks] "+r"(blocks), [rest] "+r"(rest)
      : [sums] "r"(&sums[0][0])
      : "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
        "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14");

  const __m256 va = _mm256_set1_ps(alpha);
  if (rows == kMr && cols == kNr) {
    if (beta == 0.0f) {
      for (int i = 0; i < kMr; ++i) {
        _mm256_storeu_ps(c + i * ldc, _mm256_mul_ps(va, _mm256_load_ps(sums[i])));
        _mm256_storeu_ps(c + i * ldc + 8, _mm256_mul_ps(va, _mm256_load_ps(sums[i] + 8)));
      }
    } else {
      const __m256 vb = _mm256_set1_ps(beta);
      for (int i = 0; i < kMr; ++i) {
        float* ci = c + i * ldc;
        _mm256_storeu_ps(ci, _mm256_fmadd_ps(va, _mm256_load_ps(sums[i]),
                                             _mm256_mul_ps(vb, _mm256_loadu_ps(ci))));
        _mm256_storeu_ps(ci + 8, _mm256_fmadd_ps(va, _mm256_load_ps(sums[i] + 8),
                                                 _mm256_mul_ps(vb, _mm256_loadu_ps(ci + 8))));
      }
    }
    return;
  }
  // Edge tile: same arithmetic (one rounding of beta*c, then one fused multiply-add) so an
  // element's value does not depend on whether it sat in a full or a partial tile.
  for (int i = 0; i < rows; ++i) {
    float* ci = c + i * ldc;
    if (beta == 0.0f) {
      for (int j = 0; j < cols; ++j) ci[j] = alpha * sums[i][j];
    } else {
      for (int j = 0; j < cols; ++j) ci[j] = std::fma(alpha, sums[i][j], beta * ci[j]);
    }
  }
}
#undef STRATA_K_STEP
#undef STRATA_FMA_ROW

template <class S>
PackedKernel<float> make_kernel() {
  PackedKernel<float> k;
  k.mr = kMr;
  k.nr = kNr;
  k.mc = kMc;
  k.kc = kKc;
  k.nc = kNc;
  k.pack_a = &pack_a<S>;
  k.pack_b = &pack_b<S>;
  k.micro = &micro_6x16;
  return k;
}

}  // namespace

void avx2_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  static const PackedKernel<float> kernel = make_kernel<float>();
  packed_gemm(kernel, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// bf16 -> f32 is exact (a shift), done while packing, so the micro-kernel is the f32 one and
// the result equals sgemm on the widened inputs.
void avx2_bf16gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const bf16* a,
                   int64_t lda, const bf16* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  static const PackedKernel<float> kernel = make_kernel<bf16>();
  packed_gemm(kernel, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace strata::gemm::detail
