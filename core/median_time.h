#pragma once
// Wall time of a piece of host work as the median of repeated runs, after warm-up runs that are
// not counted (page faults, thread start, packed weights). The benches and `strata calibrate`
// time with it; a GPU bench times on its stream instead.
#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

namespace strata {

inline double median_seconds(int reps, int warmup, const std::function<void()>& fn) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto a = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace strata
