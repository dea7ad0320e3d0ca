#include "train/checksum.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "core/error.h"

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

Mix64::Mix64(uint64_t total_bytes) : total_(total_bytes) {
  for (int i = 0; i < 4; ++i) lane_[i] = (uint64_t(i) + 1) * kP1 ^ total_bytes;
}

void Mix64::update(const void* data, size_t nbytes) {
  STRATA_CHECK(fed_ + nbytes <= total_, "Mix64::update: fed ", fed_ + nbytes,
               " bytes, more than the ", total_, " announced");
  if (nbytes == 0) return;  // data may be null
  fed_ += nbytes;
  const auto* p = static_cast<const unsigned char*>(data);
  if (n_pending_ > 0) {
    const size_t take = std::min(nbytes, 32 - n_pending_);
    std::memcpy(pending_ + n_pending_, p, take);
    n_pending_ += take;
    p += take;
    nbytes -= take;
    if (n_pending_ < 32) return;
    for (int k = 0; k < 4; ++k) lane_[k] = round(lane_[k], load_le64(pending_ + 8 * k));
    n_pending_ = 0;
  }
  // Locals, so the four independent chains stay in registers.
  uint64_t l0 = lane_[0], l1 = lane_[1], l2 = lane_[2], l3 = lane_[3];
  size_t i = 0;
  for (; i + 32 <= nbytes; i += 32) {
    l0 = round(l0, load_le64(p + i));
    l1 = round(l1, load_le64(p + i + 8));
    l2 = round(l2, load_le64(p + i + 16));
    l3 = round(l3, load_le64(p + i + 24));
  }
  lane_[0] = l0, lane_[1] = l1, lane_[2] = l2, lane_[3] = l3;
  std::memcpy(pending_, p + i, nbytes - i);
  n_pending_ = nbytes - i;
}

uint64_t Mix64::finish() {
  STRATA_CHECK(fed_ == total_, "Mix64::finish: fed ", fed_, " bytes of the ", total_, " announced");
  if (n_pending_ > 0) {
    // The length is already in the seeds, so zero padding cannot make two inputs collide.
    std::memset(pending_ + n_pending_, 0, 32 - n_pending_);
    for (int k = 0; k < 4; ++k) lane_[k] = round(lane_[k], load_le64(pending_ + 8 * k));
    n_pending_ = 0;
  }
  uint64_t h = std::rotl(lane_[0], 1) + std::rotl(lane_[1], 7) + std::rotl(lane_[2], 12) +
               std::rotl(lane_[3], 18);
  h ^= total_;
  h ^= h >> 33;
  h *= kP2;
  h ^= h >> 29;
  h *= kP1;
  h ^= h >> 32;
  return h;
}

uint64_t mix64(const void* data, size_t nbytes) {
  Mix64 h(nbytes);
  h.update(data, nbytes);
  return h.finish();
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
