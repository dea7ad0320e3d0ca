#pragma once
// mix64: the 64-bit checksum stored with every checkpoint dataset. It guards against torn writes
// and bit rot, not against tampering (it is not cryptographic). Defined byte-exactly in
// docs/checkpoints.md (with a Python reference) so files can be verified outside Strata:
// four 64-bit lanes consume 32-byte blocks of little-endian words (a zero-padded final block),
// the length is mixed into the seeds, and the lanes are folded and avalanched at the end.
// Four independent lanes keep it near memory speed, unlike byte-serial FNV-1a.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace strata::train {

uint64_t mix64(const void* data, size_t nbytes);

// mix64 of a byte string fed in pieces (a tensor whose slices lie on different processes):
// update() with consecutive pieces, then finish() gives mix64 of their concatenation. The length
// seeds the lanes, so the total is given up front.
class Mix64 {
 public:
  explicit Mix64(uint64_t total_bytes);
  void update(const void* data, size_t nbytes);
  // Throws strata::Error unless exactly total_bytes were fed.
  uint64_t finish();

 private:
  uint64_t lane_[4];
  uint64_t total_;
  uint64_t fed_ = 0;
  unsigned char pending_[32];
  size_t n_pending_ = 0;
};

// "mix64:" followed by 16 lower-case hex digits: the attribute value stored in files, naming the
// algorithm so another one can be added later without ambiguity.
std::string checksum_string(uint64_t hash);
// The hash in a checksum_string, or nullopt when the text is not one (e.g. an unknown algorithm).
std::optional<uint64_t> parse_checksum(std::string_view text);

}  // namespace strata::train
