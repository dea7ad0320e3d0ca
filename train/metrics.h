#pragma once
// Run observability: one JSON object per line in <run_dir>/metrics.jsonl (appended across
// resumes), and the human progress line.
#include <fstream>
#include <map>
#include <string>

namespace strata::train {

class MetricsLog {
 public:
  // Opens <path> for appending; creates parent directories.
  explicit MetricsLog(const std::string& path);
  // Writes {"kind": kind, key: value, ...} with numbers printed round-trip exact.
  void write(const std::string& kind, const std::map<std::string, double>& values);

 private:
  std::ofstream out_;
};

// "1h02m" / "3m05s" / "12s".
std::string format_duration(double seconds);
// "123.4 MiB".
std::string format_bytes(double bytes);

}  // namespace strata::train
