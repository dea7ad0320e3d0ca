#include "train/checksum.h"

#include <bit>
#include <cstring>

namespace strata::train {
namespace {

static_assert(std::endian::native == std::endian::little,
              "mix64 reads little-endian words with memcpy; a big-endian host needs a byte swap");

constexpr uint64_t kP1 = 0x9E3779B185EBCA87ull;
constexpr uint64_t kP2 = 0xC2B2AE3D27D4EB4Full;

uint64_t load_le64(const unsigned char* p) {
  uint64_t w = 0;
  std::memcpy(&w, p, 8);  // hosts are little-endian (x86-64, aarch64), as the format is
  return w;
}

uint64_t round(uint64_t lane, uint64_t word) {
  return std::rotl(lane + word * kP2, 31) * kP1;
}

}  // namespace

uint64_t mix64(const void* data, size_t nbytes) {
  const auto* p = static_cast<const unsigned char*>(data);
  const uint64_t n = nbytes;
  uint64_t lane[4];
  for (int i = 0; i < 4; ++i) lane[i] = (uint64_t(i) + 1) * kP1 ^ n;
  size_t i = 0;
  for (; i + 32 <= nbytes; i += 32)
    for (int k = 0; k < 4; ++k) lane[k] = round(lane[k], load_le64(p + i + 8 * k));
  if (i < nbytes) {
    // The length is already in the seeds, so zero padding cannot make two inputs collide.
    unsigned char tail[32] = {};
    std::memcpy(tail, p + i, nbytes - i);
    for (int k = 0; k < 4; ++k) lane[k] = round(lane[k], load_le64(tail + 8 * k));
  }
  uint64_t h = std::rotl(lane[0], 1) + std::rotl(lane[1], 7) + std::rotl(lane[2], 12) +
               std::rotl(lane[3], 18);
  h ^= n;
  h ^= h >> 33;
  h *= kP2;
  h ^= h >> 29;
  h *= kP1;
  h ^= h >> 32;
  return h;
}

std::string checksum_string(uint64_t hash) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "mix64:";
  for (int shift = 60; shift >= 0; shift -= 4) out += kHex[(hash >> shift) & 0xF];
  return out;
}

std::optional<uint64_t> parse_checksum(std::string_view text) {
  constexpr std::string_view prefix = "mix64:";
  if (text.size() != prefix.size() + 16 || text.substr(0, prefix.size()) != prefix)
    return std::nullopt;
  uint64_t h = 0;
  for (char c : text.substr(prefix.size())) {
    int d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else
      return std::nullopt;
    h = (h << 4) | uint64_t(d);
  }
  return h;
}

}  // namespace strata::train
