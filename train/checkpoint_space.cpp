#include "train/checkpoint_space.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string_view>

#include "core/error.h"
#include "train/checkpoint.h"

namespace strata::train::detail {
namespace fs = std::filesystem;

namespace {

std::mutex probe_mutex;
SpaceProbe probe;

SpaceProbe current_probe() {
  std::lock_guard<std::mutex> lock(probe_mutex);
  return probe;
}

// run_dir itself once the first save created it; before that, the parent it will be made in.
fs::path nearest_existing(const fs::path& dir) {
  std::error_code ec;
  fs::path p = fs::absolute(dir, ec).lexically_normal();
  if (ec) p = dir;
  while (!p.empty() && !fs::exists(p, ec)) {
    if (p == p.parent_path()) break;
    p = p.parent_path();
  }
  return p;
}

// Bytes an unprivileged writer may still use there (statvfs f_bavail); nullopt when unknown.
std::optional<uint64_t> available_bytes(const fs::path& dir) {
  const fs::path at = nearest_existing(dir);
  if (const SpaceProbe p = current_probe(); p.available) return p.available(at);
  std::error_code ec;
  const fs::space_info s = fs::space(at, ec);
  if (ec) return std::nullopt;
  return uint64_t(s.available);
}

// The mount point of the filesystem holding `dir`: the highest ancestor on the same device.
std::string mount_point(const fs::path& dir) {
  fs::path p = nearest_existing(dir);
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return p.string();
  const dev_t dev = st.st_dev;
  while (p.has_parent_path() && p.parent_path() != p) {
    struct stat up {};
    if (::stat(p.parent_path().c_str(), &up) != 0 || up.st_dev != dev) break;
    p = p.parent_path();
  }
  return p.string();
}

// "1.1 MiB (1147150 bytes)", "512 bytes".
std::string bytes_text(uint64_t n) {
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = double(n);
  int unit = -1;
  while (v >= 1024 && unit < 3) v /= 1024, ++unit;
  if (unit < 0) return std::to_string(n) + " bytes";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, units[unit]);
  return std::string(buf) + " (" + std::to_string(n) + " bytes)";
}

// "'runs/x' (filesystem mounted at '/'): checkpoint step_N needs about 1.1 MiB (1147150 bytes,
// 525568 of them tensors) and 700.0 KiB (716800 bytes) are available"
std::string space_text(const fs::path& run_dir, const std::string& name, const SpaceNeed& need,
                       std::optional<uint64_t> available) {
  std::string needs = bytes_text(need.bytes);
  needs.insert(needs.size() - (needs.back() == ')' ? 1 : 0),
               ", " + std::to_string(need.tensor_bytes) + " of them tensors");
  return strata::detail::concat(
      "'", run_dir.string(), "' (filesystem mounted at '", mount_point(run_dir), "'): checkpoint ",
      name, " needs about ", needs, " and ",
      available ? bytes_text(*available) : std::string("an unknown number of bytes"),
      available && *available == 1 ? " is" : " are", " available");
}

constexpr const char* kSpaceFix =
    ". Free space there, keep fewer checkpoints (log.keep_last), or put the run directory "
    "(run.dir) on a larger filesystem; the previous checkpoints are kept";

}  // namespace

SpaceNeed space_need(uint64_t tensor_bytes, uint64_t datasets, uint64_t state_bytes) {
  // Measured HDF5 1.10 overhead: under 800 bytes per dataset (object header, checksum
  // attribute, group entry) and the state's attributes stored once, plus the superblock and
  // root group (tests/train/checkpoint_safety_test.cpp, EstimateBoundsTheFile). The allowance
  // is more than twice that, so `bytes` stays an upper bound.
  SpaceNeed n;
  n.tensor_bytes = tensor_bytes;
  n.bytes = tensor_bytes + 2048 * (datasets + 4) + 2 * state_bytes + (64 << 10);
  return n;
}

SpaceNeed space_need(const CheckpointState& s) {
  uint64_t bytes = 0, datasets = 0, state = 0;
  auto add = [&](const Tensor& t) {
    if (t.defined()) bytes += uint64_t(t.numel()) * t.element_size();
    ++datasets;
  };
  for (const auto& [name, t] : s.model) {
    add(t);
    state += name.size();
  }
  for (const auto& [name, states] : s.optim) {
    for (const auto& [state_name, t] : states) {
      add(t);
      state += name.size() + state_name.size();
    }
  }
  for (const auto& [k, v] : s.strings) state += k.size() + v.size();
  for (const auto& [k, v] : s.ints) state += k.size() + 8;
  for (const auto& [k, v] : s.doubles) state += k.size() + 8;
  return space_need(bytes, datasets, state);
}

void check_space(const fs::path& run_dir, const std::string& name, const SpaceNeed& need) {
  const std::optional<uint64_t> available = available_bytes(run_dir);
  if (!available || *available >= need.bytes) return;
  STRATA_FAIL("save_checkpoint: not enough space in ", space_text(run_dir, name, need, available),
              kSpaceFix);
}

void reserve_space(const fs::path& file, const fs::path& run_dir, const std::string& name,
                   const SpaceNeed& need) {
  if (!current_probe().reserve) return;
  const int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
  STRATA_CHECK(fd >= 0, "save_checkpoint: cannot open '", file.string(),
               "' to reserve its space: ", std::strerror(errno));
  const int rc = ::fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, off_t(need.bytes));
  const int err = errno;
  ::close(fd);
  if (rc == 0) return;
  // Filesystems without preallocation (some network ones) keep only the check_space check.
  if (err == EOPNOTSUPP || err == ENOSYS || err == EINVAL) return;
  if (err == ENOSPC || err == EDQUOT)
    STRATA_FAIL("save_checkpoint: not enough space in ",
                space_text(run_dir, name, need, available_bytes(run_dir)), " (", std::strerror(err),
                ")", kSpaceFix);
  STRATA_FAIL("save_checkpoint: cannot reserve ", bytes_text(need.bytes), " for '", file.string(),
              "': ", std::strerror(err));
}

void release_reserve(const fs::path& file) {
  // Truncating to the current size frees the blocks allocated past it (ext4, xfs, tmpfs).
  const int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  struct stat st {};
  if (::fstat(fd, &st) == 0) (void)::ftruncate(fd, st.st_size);
  ::close(fd);
}

void fail_save(const fs::path& run_dir, const fs::path& tmp, const std::string& name,
               const SpaceNeed& need, const std::exception& error) {
  std::error_code ec;
  fs::remove_all(tmp, ec);
  const std::string what = error.what();
  // The space checks' own errors already say everything.
  if (what.rfind("save_checkpoint: not enough space", 0) == 0) throw Error(what);
  const std::optional<uint64_t> available = available_bytes(run_dir);
  const bool full = what.find(std::strerror(ENOSPC)) != std::string::npos ||
                    what.find(std::strerror(EDQUOT)) != std::string::npos ||
                    (available && *available < need.bytes);
  STRATA_FAIL("save_checkpoint: writing checkpoint ", name, " failed: ", what, "; in ",
              space_text(run_dir, name, need, available),
              full ? kSpaceFix
                   : "; the partial checkpoint was removed and the previous ones are "
                     "kept",
              full ? " (the partial checkpoint was removed)" : "");
}

void set_space_probe_for_tests(SpaceProbe p) {
  std::lock_guard<std::mutex> lock(probe_mutex);
  probe = std::move(p);
}

}  // namespace strata::train::detail
