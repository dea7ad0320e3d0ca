#include "train/checkpoint_dir.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>

#include "core/error.h"
#include "train/checkpoint.h"

namespace strata::train::detail {
namespace fs = std::filesystem;

namespace {

constexpr const char* kTmpPrefix = ".tmp-";
constexpr const char* kOldPrefix = ".old-";

void fsync_path(const fs::path& p, bool directory) {
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0));
  STRATA_CHECK(fd >= 0, "save_checkpoint: cannot open '", p.string(),
               "' to fsync it: ", std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  STRATA_CHECK(rc == 0, "save_checkpoint: fsync of '", p.string(),
               "' failed: ", std::strerror(err));
}

void write_synced(const fs::path& p, const std::string& text) {
  {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    STRATA_CHECK(out.good(), "save_checkpoint: cannot write '", p.string(), "'");
  }
  fsync_path(p, false);
}

// Puts the complete directory `from` at `to`, replacing an existing `to` atomically where the
// filesystem can exchange (renameat2); otherwise the old one is moved aside first.
void publish(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  if (!fs::exists(to, ec)) {
    STRATA_CHECK(::rename(from.c_str(), to.c_str()) == 0, "save_checkpoint: cannot rename '",
                 from.string(), "' to '", to.string(), "': ", std::strerror(errno));
    return;
  }
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_EXCHANGE) == 0) {
    fs::remove_all(from, ec);  // now the old checkpoint
    return;
  }
  const fs::path aside = to.parent_path() / (kOldPrefix + to.filename().string());
  fs::remove_all(aside, ec);
  STRATA_CHECK(::rename(to.c_str(), aside.c_str()) == 0, "save_checkpoint: cannot move '",
               to.string(), "' aside: ", std::strerror(errno));
  STRATA_CHECK(::rename(from.c_str(), to.c_str()) == 0, "save_checkpoint: cannot rename '",
               from.string(), "' to '", to.string(), "': ", std::strerror(errno));
  fs::remove_all(aside, ec);
}

std::optional<int64_t> parse_step(const std::string& name) {
  if (name.rfind("step_", 0) != 0 || name.size() == 5 || name.size() > 5 + 18) return std::nullopt;
  int64_t step = 0;
  for (size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

void prune(const fs::path& run_dir, const fs::path& keep, int keep_last) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(run_dir, ec)) {
    const std::string name = e.path().filename().string();
    // Leftovers of interrupted saves; nothing else writes these names.
    if (name.rfind(std::string(kTmpPrefix) + "step_", 0) == 0 ||
        name.rfind(std::string(kOldPrefix) + "step_", 0) == 0)
      fs::remove_all(e.path(), ec);
  }
  if (keep_last <= 0) return;
  std::vector<fs::path> complete;
  for (const auto& [step, dir] : list_step_dirs(run_dir))
    if (has_done(dir)) complete.push_back(dir);
  if (complete.size() <= size_t(keep_last)) return;
  for (size_t i = 0; i + size_t(keep_last) < complete.size(); ++i) {
    if (complete[i] == keep) continue;
    fs::remove_all(complete[i], ec);
    if (ec)
      std::cerr << "strata: warning: could not delete old checkpoint '" << complete[i].string()
                << "': " << ec.message() << "\n";
  }
}

}  // namespace

fs::path tmp_dir(const fs::path& run_dir, const std::string& name) {
  return run_dir / (kTmpPrefix + name);
}

fs::path begin_save(const fs::path& run_dir, const std::string& name) {
  std::error_code ec;
  if (!fs::is_directory(run_dir, ec)) {
    fs::create_directories(run_dir, ec);
    STRATA_CHECK(!ec, "save_checkpoint: cannot create run directory '", run_dir.string(),
                 "': ", ec.message());
    fs::path abs = fs::absolute(run_dir).lexically_normal();
    if (!abs.has_filename()) abs = abs.parent_path();  // "runs/a/" names "runs/a"
    fsync_path(abs.parent_path(), true);
  }
  const fs::path tmp = tmp_dir(run_dir, name);
  fs::remove_all(tmp, ec);
  fs::create_directory(tmp, ec);
  STRATA_CHECK(!ec, "save_checkpoint: cannot create '", tmp.string(), "': ", ec.message());
  return tmp;
}

void seal(const fs::path& tmp, int64_t step) {
  // Order matters for crash safety: the data is durable before DONE exists, and DONE before the
  // directory gets a name that readers look at.
  fsync_path(tmp / kStateFile, false);
  write_synced(tmp / kDoneFile, "step " + std::to_string(step) + "\nformat_version " +
                                    std::to_string(kCheckpointFormatVersion) + "\n");
  fsync_path(tmp, true);
}

fs::path publish_and_prune(const fs::path& run_dir, const fs::path& tmp, const std::string& name,
                           int keep_last) {
  const fs::path final_dir = run_dir / name;
  publish(tmp, final_dir);
  fsync_path(run_dir, true);
  prune(run_dir, final_dir, keep_last);
  return final_dir;
}

std::vector<std::pair<int64_t, fs::path>> list_step_dirs(const fs::path& run_dir) {
  std::vector<std::pair<int64_t, fs::path>> out;
  std::error_code ec;
  if (!fs::is_directory(run_dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(run_dir, ec)) {
    if (!e.is_directory(ec)) continue;
    if (auto step = parse_step(e.path().filename().string())) out.emplace_back(*step, e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool has_done(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / kDoneFile, ec);
}

}  // namespace strata::train::detail
