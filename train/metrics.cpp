#include "train/metrics.h"

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/error.h"

namespace strata::train {

MetricsLog::MetricsLog(const std::string& path) {
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  out_.open(path, std::ios::app);
  STRATA_CHECK(out_, "metrics: cannot open '", path, "' for appending");
}

void MetricsLog::write(const std::string& kind, const std::map<std::string, double>& values) {
  out_ << "{\"kind\": \"" << kind << "\"";
  for (const auto& [k, v] : values) {
    char buf[40];
    if (std::isfinite(v))
      std::snprintf(buf, sizeof buf, "%.17g", v);
    else
      std::snprintf(buf, sizeof buf, "null");
    out_ << ", \"" << k << "\": " << buf;
  }
  out_ << "}\n";
  out_.flush();
}

std::string format_duration(double s) {
  char buf[32];
  const long t = long(std::max(0.0, s) + 0.5);
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
  else if (t >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%lds", t);
  return buf;
}

std::string format_bytes(double b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", b / (1024.0 * 1024.0));
  return buf;
}

}  // namespace strata::train
