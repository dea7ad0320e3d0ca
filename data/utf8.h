#pragma once
// Streaming UTF-8 repair: invalid sequences become U+FFFD and are counted, so `strata prepare`
// never hands a tokenizer malformed text and can report how much it fixed. A sequence split
// across two chunks is carried over, so the result does not depend on the chunk size.
#include <cstdint>
#include <string>
#include <string_view>

namespace strata::data {

class Utf8Repair {
 public:
  // Appends the repaired form of `in` to `out`; an incomplete sequence at the end is held back.
  void feed(std::string_view in, std::string& out);
  // Flushes a held-back incomplete sequence (as U+FFFD) at the end of a document or file.
  void finish(std::string& out);
  uint64_t replaced() const { return replaced_; }

 private:
  std::string pending_;
  uint64_t replaced_ = 0;
};

// One-shot form: returns the repaired text and adds the number of replacements to *replaced.
std::string repair_utf8(std::string_view in, uint64_t* replaced = nullptr);

}  // namespace strata::data
