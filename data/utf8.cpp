#include "data/utf8.h"

namespace strata::data {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

// Length of the valid sequence starting at s[i] (1..4), 0 when invalid, -1 when it may be valid
// but is cut off by the end of the buffer. Follows RFC 3629: no overlongs, no surrogates,
// nothing above U+10FFFF.
int sequence_length(std::string_view s, size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return 1;
  int len;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  for (int k = 1; k < len; ++k) {
    if (i + size_t(k) >= s.size()) return -1;
    const auto b = static_cast<unsigned char>(s[i + size_t(k)]);
    const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) return 0;
  }
  return len;
}

}  // namespace

void Utf8Repair::feed(std::string_view in, std::string& out) {
  std::string joined;
  if (!pending_.empty()) {
    joined = pending_;
    joined.append(in);
    in = joined;
    pending_.clear();
  }
  out.reserve(out.size() + in.size());
  size_t i = 0, run = 0;  // [run, i) is a stretch of valid bytes not yet copied
  while (i < in.size()) {
    const auto b = static_cast<unsigned char>(in[i]);
    if (b < 0x80) {
      ++i;
      continue;
    }
    const int len = sequence_length(in, i);
    if (len > 0) {
      i += size_t(len);
      continue;
    }
    out.append(in.substr(run, i - run));
    if (len < 0) {
      pending_.assign(in.substr(i));
      return;
    }
    out.append(kReplacement);
    ++replaced_;
    ++i;
    run = i;
  }
  out.append(in.substr(run));
}

void Utf8Repair::finish(std::string& out) {
  if (pending_.empty()) return;
  out.append(kReplacement);
  ++replaced_;
  pending_.clear();
}

std::string repair_utf8(std::string_view in, uint64_t* replaced) {
  Utf8Repair r;
  std::string out;
  r.feed(in, out);
  r.finish(out);
  if (replaced) *replaced += r.replaced();
  return out;
}

}  // namespace strata::data
