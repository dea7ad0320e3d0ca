#pragma once
// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011).
//
// Every random number in Strata is a pure function of (seed, stream, step, element index): the
// key is the 64-bit seed, the 128-bit counter is (element block, step, stream). Nothing depends on
// which thread or rank draws a value, so dropout masks, data order and initialisation come out
// identical for any thread count or parallel layout.
#include <array>
#include <cmath>
#include <cstdint>

namespace strata {

// Purposes get disjoint streams so that, say, dropout at step 7 never reuses init's numbers.
enum class RngStream : uint32_t {
  Init = 1,
  Dropout = 2,
  DataOrder = 3,
  Objective = 4,
  Sampling = 5,
  Test = 100,
};

inline std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> ctr,
                                             std::array<uint32_t, 2> key) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = uint64_t(kM0) * ctr[0];
    const uint64_t p1 = uint64_t(kM1) * ctr[2];
    ctr = {uint32_t(p1 >> 32) ^ ctr[1] ^ key[0], uint32_t(p1), uint32_t(p0 >> 32) ^ ctr[3] ^ key[1],
           uint32_t(p0)};
    key[0] += kW0;
    key[1] += kW1;
  }
  return ctr;
}

// A counter-based generator view: element i's numbers depend only on (seed, stream, step, i).
class Philox {
 public:
  // `stream` separates purposes (and sites within a purpose, e.g. one dropout layer from another).
  Philox(uint64_t seed, uint32_t stream, uint64_t step)
      : key_{uint32_t(seed), uint32_t(seed >> 32)},
        step_(uint32_t(step)),
        stream_(stream ^ (uint32_t(step >> 32) << 24)) {}
  Philox(uint64_t seed, RngStream stream, uint64_t step) : Philox(seed, uint32_t(stream), step) {}

  // Four 32-bit words for block b (elements 4b .. 4b+3 use one word each).
  std::array<uint32_t, 4> block(uint64_t b) const {
    return philox4x32_10({uint32_t(b), uint32_t(b >> 32), step_, stream_}, key_);
  }

  uint32_t bits(uint64_t i) const { return block(i >> 2)[i & 3]; }

  // Uniform in [0, 1) with 24 bits of resolution.
  float uniform(uint64_t i) const { return float(bits(i) >> 8) * 0x1.0p-24f; }

  // Uniform in [0, 1) with 53 bits, from the two words of pair i.
  double uniform_f64(uint64_t i) const {
    const auto w = block(i >> 1);
    const int o = int(i & 1) * 2;
    const uint64_t v = (uint64_t(w[o]) << 21) ^ uint64_t(w[o + 1] >> 11);
    return double(v & ((uint64_t(1) << 53) - 1)) * 0x1.0p-53;
  }

  // Standard normal for element i by Box-Muller on element i's own pair of words.
  double normal(uint64_t i) const {
    const auto w = block(i >> 1);
    const int o = int(i & 1) * 2;
    const double u1 = (double(w[o]) + 1.0) * 0x1.0p-32;  // (0, 1]: log is finite
    const double u2 = double(w[o + 1]) * 0x1.0p-32;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  std::array<uint32_t, 2> key_;
  uint32_t step_;
  uint32_t stream_;
};

}  // namespace strata
