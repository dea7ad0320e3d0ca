#pragma once
// A fast streaming 64-bit checksum for shards and tokenizer fingerprints. Not cryptographic: it
// catches truncation, bit rot and files from another run, which is all a shard check needs. Four
// independent lanes over 8-byte words keep it near memory speed; the result does not depend on how
// the input is split across update() calls.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace strata::data {

class Hasher64 {
 public:
  void update(const void* data, size_t n) {
    auto p = static_cast<const unsigned char*>(data);
    total_ += n;
    if (fill_ > 0) {
      const size_t take = std::min(n, sizeof(buf_) - fill_);
      std::memcpy(buf_ + fill_, p, take);
      fill_ += take;
      p += take;
      n -= take;
      if (fill_ < sizeof(buf_)) return;
      block(buf_);
      fill_ = 0;
    }
    while (n >= sizeof(buf_)) {
      block(p);
      p += sizeof(buf_);
      n -= sizeof(buf_);
    }
    std::memcpy(buf_, p, n);
    fill_ = n;
  }
  void update(std::string_view s) { update(s.data(), s.size()); }

  uint64_t digest() const {
    uint64_t h = total_ * kP1;
    for (int l = 0; l < 4; ++l) h = mix(h ^ mix(lane_[l] + uint64_t(l)));
    for (size_t i = 0; i < fill_; ++i) h = (h ^ buf_[i]) * kP2;
    return mix(h);
  }

  static std::string hex(uint64_t v) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string s(16, '0');
    for (int i = 15; i >= 0; --i, v >>= 4) s[size_t(i)] = kDigits[v & 15];
    return s;
  }

 private:
  static constexpr uint64_t kP1 = 0x9E3779B97F4A7C15ull;
  static constexpr uint64_t kP2 = 0xC2B2AE3D27D4EB4Full;
  static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
  // splitmix64's finaliser: every input bit reaches every output bit.
  static uint64_t mix(uint64_t x) {
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    return x ^ (x >> 31);
  }
  void block(const unsigned char* p) {
    for (int l = 0; l < 4; ++l) {
      uint64_t w;
      std::memcpy(&w, p + 8 * l, 8);  // little-endian machines only; shards are little-endian too
      lane_[l] = rotl(lane_[l] + w * kP2, 31) * kP1;
    }
  }

  uint64_t lane_[4] = {kP1, kP2, kP1 ^ kP2, ~kP1};
  unsigned char buf_[32] = {};
  size_t fill_ = 0;
  uint64_t total_ = 0;
};

inline uint64_t hash64(std::string_view s) {
  Hasher64 h;
  h.update(s);
  return h.digest();
}

}  // namespace strata::data
