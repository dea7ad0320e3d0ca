#pragma once
// A progress bar on stderr: bytes done of total, bytes/s and ETA. On a terminal it redraws one
// line at most ten times a second; into a file or pipe it writes a plain line every few seconds
// so logs stay readable.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace strata::data {

class ProgressBar {
 public:
  ProgressBar(std::string label, uint64_t total, bool enabled = true);
  void update(uint64_t done, bool force = false);
  void finish(uint64_t done);  // the final line, always drawn when enabled

 private:
  using Clock = std::chrono::steady_clock;
  std::string label_;
  uint64_t total_;
  bool enabled_, tty_;
  Clock::time_point start_, last_;
};

std::string human_bytes(double bytes);

}  // namespace strata::data
