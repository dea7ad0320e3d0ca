#pragma once
// AVX2 helpers shared by the row kernels: 8-lane loads and stores of every storage type as f32,
// and horizontal reductions in a fixed lane order (so results never depend on anything but the
// data). Every function carries target("avx2,fma") so the library builds without -march=native;
// callers must check cpu_has_avx2_fma() first.
#include <immintrin.h>

#include <cstdint>

#include "core/bf16.h"

#ifndef STRATA_AVX2
#define STRATA_AVX2 __attribute__((target("avx2,fma")))
#endif

namespace strata::cpu::avx2 {

STRATA_AVX2 inline __m256 load8(const float* p) {
  return _mm256_loadu_ps(p);
}

// bf16 is the high half of an f32, so widening is a zero-extend and a shift.
STRATA_AVX2 inline __m256 load8(const bf16* p) {
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

STRATA_AVX2 inline void store8(float* p, __m256 v) {
  _mm256_storeu_ps(p, v);
}

// Round to nearest even, quieting NaNs, exactly as strata::bf16's scalar constructor does.
STRATA_AVX2 inline void store8(bf16* p, __m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff)));
  const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                         _mm256_set1_epi32(0x7f800000));
  r = _mm256_blendv_epi8(r, _mm256_or_si256(u, _mm256_set1_epi32(0x00400000)), nan);
  r = _mm256_srli_epi32(r, 16);
  // packus interleaves the two 128-bit halves; the permute gathers lanes 0..3 and 4..7 back.
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(packed));
}

STRATA_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

STRATA_AVX2 inline float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

}  // namespace strata::cpu::avx2
