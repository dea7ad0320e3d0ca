#pragma once
// Philox-4x32-10 for kernels: the same counters, keys and transforms as core/random/philox.h, so a
// CUDA random fill or dropout mask equals the CPU one bit for bit (philox.h uses std::array and is
// host-only). Plain C++ when not compiled by nvcc, so a CPU test can compare the two
// (tests/core/philox_device_test.cpp).
#include <cmath>
#include <cstdint>

#ifndef STRATA_HD
#if defined(__CUDACC__)
#define STRATA_HD __host__ __device__
#else
#define STRATA_HD
#endif
#endif

namespace strata::cuda {

struct PhiloxBlock {
  uint32_t w[4];
};

STRATA_HD inline PhiloxBlock philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                           uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = uint64_t(kM0) * c0;
    const uint64_t p1 = uint64_t(kM1) * c2;
    const uint32_t n0 = uint32_t(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = uint32_t(p0 >> 32) ^ c3 ^ k1;
    c1 = uint32_t(p1);
    c3 = uint32_t(p0);
    c0 = n0;
    c2 = n2;
    k0 += kW0;
    k1 += kW1;
  }
  return {{c0, c1, c2, c3}};
}

// Trivially copyable, so kernels take it by value. Mirrors strata::Philox member for member.
struct PhiloxDevice {
  uint32_t key0 = 0, key1 = 0;
  uint32_t step = 0;
  uint32_t stream = 0;

  STRATA_HD static PhiloxDevice make(uint64_t seed, uint32_t stream, uint64_t step) {
    PhiloxDevice p;
    p.key0 = uint32_t(seed);
    p.key1 = uint32_t(seed >> 32);
    p.step = uint32_t(step);
    p.stream = stream ^ (uint32_t(step >> 32) << 24);
    return p;
  }

  STRATA_HD PhiloxBlock block(uint64_t b) const {
    return philox4x32_10(uint32_t(b), uint32_t(b >> 32), step, stream, key0, key1);
  }

  STRATA_HD uint32_t bits(uint64_t i) const { return block(i >> 2).w[i & 3]; }

  // The transforms take the words they need, so a kernel that caches a block reuses it.
  STRATA_HD static float uniform_from(uint32_t word) { return float(word >> 8) * 0x1.0p-24f; }
  STRATA_HD static double uniform_f64_from(uint32_t hi, uint32_t lo) {
    const uint64_t v = (uint64_t(hi) << 21) ^ uint64_t(lo >> 11);
    return double(v & ((uint64_t(1) << 53) - 1)) * 0x1.0p-53;
  }
  STRATA_HD static double normal_from(uint32_t w0, uint32_t w1) {
    const double u1 = (double(w0) + 1.0) * 0x1.0p-32;  // (0, 1]: log is finite
    const double u2 = double(w1) * 0x1.0p-32;
    return ::sqrt(-2.0 * ::log(u1)) * ::cos(6.283185307179586 * u2);
  }

  // Element i's number; uniform uses word i, uniform_f64 and normal the pair of words i.
  STRATA_HD float uniform(uint64_t i) const { return uniform_from(bits(i)); }
  STRATA_HD double uniform_f64(uint64_t i) const {
    const PhiloxBlock b = block(i >> 1);
    const int o = int(i & 1) * 2;
    return uniform_f64_from(b.w[o], b.w[o + 1]);
  }
  STRATA_HD double normal(uint64_t i) const {
    const PhiloxBlock b = block(i >> 1);
    const int o = int(i & 1) * 2;
    return normal_from(b.w[o], b.w[o + 1]);
  }
};

}  // namespace strata::cuda
