#include "data/progress.h"

#include <unistd.h>

#include <algorithm>

namespace strata::data {

std::string human_bytes(double b) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4) b /= 1000, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
  return buf;
}

ProgressBar::ProgressBar(std::string label, uint64_t total, bool enabled)
    : label_(std::move(label)),
      total_(total),
      enabled_(enabled),
      tty_(::isatty(STDERR_FILENO) != 0),
      start_(Clock::now()),
      last_(start_) {}

void ProgressBar::update(uint64_t done, bool force) {
  if (!enabled_) return;
  const auto now = Clock::now();
  const double since_last = std::chrono::duration<double>(now - last_).count();
  if (!force && since_last < (tty_ ? 0.1 : 5.0)) return;
  last_ = now;
  const double secs = std::max(1e-9, std::chrono::duration<double>(now - start_).count());
  const double frac = total_ ? std::min(1.0, double(done) / double(total_)) : 1.0;
  const double rate = double(done) / secs;
  const double eta = rate > 0 ? double(total_ - std::min(done, total_)) / rate : 0;
  constexpr int kWidth = 30;
  const int filled = int(frac * kWidth);
  std::string bar(size_t(filled), '#');
  bar.append(size_t(kWidth - filled), '.');
  std::fprintf(stderr, "%s%s [%s] %5.1f%%  %s / %s  %s/s  ETA %.0fs%s", tty_ ? "\r" : "",
               label_.c_str(), bar.c_str(), 100 * frac, human_bytes(double(done)).c_str(),
               human_bytes(double(total_)).c_str(), human_bytes(rate).c_str(), eta,
               tty_ ? "   " : "\n");
  std::fflush(stderr);
}

void ProgressBar::finish(uint64_t done) {
  if (!enabled_) return;
  update(done, true);
  if (tty_) std::fputc('\n', stderr);
}

}  // namespace strata::data
