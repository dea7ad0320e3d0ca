#include "train/checkpoint_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>

#include "core/error.h"
#include "train/checkpoint.h"
#include "train/checkpoint_space.h"

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

// What identifies the files behind a verdict: a rewrite, a replacement or an in-place change
// gives another identity (times are the kernel's, so a change within the same clock tick of a
// save could pass unnoticed; real damage comes later).
struct FileIdentity {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  int64_t mtime_ns = 0, ctime_ns = 0;
  bool operator==(const FileIdentity&) const = default;
};

std::optional<std::pair<FileIdentity, FileIdentity>> identity(const fs::path& dir) {
  std::pair<FileIdentity, FileIdentity> out;
  for (auto [file, id] : {std::pair{kStateFile, &out.first}, std::pair{kDoneFile, &out.second}}) {
    struct stat st {};
    if (::stat((dir / file).c_str(), &st) != 0) return std::nullopt;
    *id = {st.st_dev, st.st_ino, st.st_size,
           int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec,
           int64_t(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec};
  }
  return out;
}

struct Verdict {
  std::pair<FileIdentity, FileIdentity> files;
  bool good = false;
};
std::mutex verdicts_mutex;
std::map<std::string, Verdict> verdicts;  // by absolute directory path
int64_t verified_by_retention = 0;

std::string verdict_key(const fs::path& dir) {
  std::error_code ec;
  const fs::path abs = fs::absolute(dir, ec);
  return (ec ? dir : abs).lexically_normal().string();
}

bool verifies(const fs::path& dir) {
  if (const auto known = known_verdict(dir)) return *known;
  {
    std::lock_guard<std::mutex> lock(verdicts_mutex);
    ++verified_by_retention;
  }
  try {
    verify_checkpoint(dir);  // records the verdict
    return true;
  } catch (const std::exception&) {
    record_verdict(dir, false);
    return false;
  }
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
  const auto dirs = list_step_dirs(run_dir);
  int counted = 0;
  // Newest first: verification stops as soon as keep_last good checkpoints are counted, and
  // everything complete below that point goes unread.
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
    const fs::path& dir = it->second;
    if (dir == keep) {
      ++counted;
      continue;
    }
    if (!has_done(dir)) continue;  // not a checkpoint (yet): resume skips it, retention too
    if (counted < keep_last) {
      if (verifies(dir)) ++counted;
      continue;
    }
    fs::remove_all(dir, ec);
    if (ec)
      std::cerr << "strata: warning: could not delete old checkpoint '" << dir.string()
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
  release_reserve(tmp / kStateFile);
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
  // Written and checksummed from memory by this process: counted without being read back.
  record_verdict(final_dir, true);
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

void record_verdict(const fs::path& dir, bool good) {
  const auto files = identity(dir);
  std::lock_guard<std::mutex> lock(verdicts_mutex);
  if (files)
    verdicts[verdict_key(dir)] = {*files, good};
  else
    verdicts.erase(verdict_key(dir));
}

std::optional<bool> known_verdict(const fs::path& dir) {
  const auto files = identity(dir);
  if (!files) return std::nullopt;
  std::lock_guard<std::mutex> lock(verdicts_mutex);
  const auto it = verdicts.find(verdict_key(dir));
  if (it == verdicts.end() || it->second.files != *files) return std::nullopt;
  return it->second.good;
}

int64_t retention_verifications() {
  std::lock_guard<std::mutex> lock(verdicts_mutex);
  return verified_by_retention;
}

}  // namespace strata::train::detail
