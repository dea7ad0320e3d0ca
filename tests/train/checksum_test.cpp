#include "train/checksum.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/error.h"

namespace strata::train {
namespace {

// Pinned values: docs/checkpoints.md's Python reference prints the same ones, so a change to the
// algorithm (which would make old checkpoints unreadable) cannot slip through.
TEST(Checksum, KnownValues) {
  EXPECT_EQ(checksum_string(mix64("", 0)), "mix64:2b84c221ecd7e225");
  EXPECT_EQ(checksum_string(mix64("abc", 3)), "mix64:f57243b2a9865309");
  std::vector<unsigned char> bytes(100);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<unsigned char>(i * 7 + 1);
  EXPECT_EQ(checksum_string(mix64(bytes.data(), 32)), "mix64:ff24e83af86b2b95");
  EXPECT_EQ(checksum_string(mix64(bytes.data(), 100)), "mix64:2da426048b24dd25");
}

TEST(Checksum, ZeroPaddingAndSingleBitsChangeTheHash) {
  const char a[2] = {'a', '\0'};
  EXPECT_NE(mix64(a, 1), mix64(a, 2));
  std::vector<unsigned char> bytes(4096, 0x5a);
  const uint64_t base = mix64(bytes.data(), bytes.size());
  for (size_t pos : {size_t(0), size_t(31), size_t(32), size_t(4095)}) {
    for (int bit = 0; bit < 8; ++bit) {
      bytes[pos] ^= static_cast<unsigned char>(1 << bit);
      EXPECT_NE(mix64(bytes.data(), bytes.size()), base) << "byte " << pos << " bit " << bit;
      bytes[pos] ^= static_cast<unsigned char>(1 << bit);
    }
  }
}

// Mix64 fed in pieces of every split pattern equals the one-shot hash (parallel checkpoints hash
// a tensor from slices that arrive one at a time), and a wrong total is an error.
TEST(Checksum, StreamingEqualsOneShot) {
  std::vector<unsigned char> bytes(257);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<unsigned char>(i * 13 + 5);
  for (size_t n :
       {size_t(0), size_t(1), size_t(31), size_t(32), size_t(33), size_t(100), size_t(257)}) {
    const uint64_t want = mix64(bytes.data(), n);
    for (size_t piece : {size_t(1), size_t(3), size_t(7), size_t(32), size_t(45), size_t(300)}) {
      Mix64 h(n);
      for (size_t at = 0; at < n; at += piece) h.update(bytes.data() + at, std::min(piece, n - at));
      EXPECT_EQ(h.finish(), want) << "n " << n << " piece " << piece;
    }
  }
  Mix64 short_fed(10);
  short_fed.update(bytes.data(), 9);
  EXPECT_THROW(short_fed.finish(), Error);
  Mix64 over_fed(10);
  EXPECT_THROW(over_fed.update(bytes.data(), 11), Error);
}

TEST(Checksum, StringRoundTripAndRejects) {
  for (uint64_t h : {uint64_t(0), uint64_t(1), ~uint64_t(0), uint64_t(0x0123456789abcdefull)}) {
    const std::string s = checksum_string(h);
    ASSERT_EQ(s.size(), 6u + 16u);
    EXPECT_EQ(parse_checksum(s), h);
  }
  EXPECT_FALSE(parse_checksum("fnv1a:0123456789abcdef"));
  EXPECT_FALSE(parse_checksum("mix64:0123456789ABCDEF"));
  EXPECT_FALSE(parse_checksum("mix64:0123"));
  EXPECT_FALSE(parse_checksum(""));
}

}  // namespace
}  // namespace strata::train
