#pragma once
// bfloat16 storage type: the top 16 bits of an IEEE f32. Arithmetic is done in f32; conversion
// from f32 rounds to nearest even so that repeated casts are stable and unbiased.
#include <bit>
#include <cstdint>

namespace strata {

struct bf16 {
  uint16_t bits = 0;

  bf16() = default;
  explicit bf16(float f) : bits(round_from(f)) {}
  explicit operator float() const { return std::bit_cast<float>(uint32_t(bits) << 16); }

  static bf16 from_bits(uint16_t b) {
    bf16 h;
    h.bits = b;
    return h;
  }

 private:
  static uint16_t round_from(float f) {
    uint32_t u = std::bit_cast<uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return uint16_t(u >> 16);
  }
};

static_assert(sizeof(bf16) == 2);

}  // namespace strata
