#include "train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/io/hdf5_file.h"
#include "train/checksum.h"

namespace strata::train {
namespace fs = std::filesystem;

namespace {

constexpr const char* kStateFile = "state.h5";
constexpr const char* kDoneFile = "DONE";
constexpr const char* kTrain = "/train";
constexpr const char* kTmpPrefix = ".tmp-";
constexpr const char* kOldPrefix = ".old-";
constexpr const char* kCorruptHint =
    ": the file is corrupt; delete it or resume from an earlier checkpoint";
// Attributes of /train that the format itself owns.
const char* const kReserved[] = {"format_version", "manifest", "attrs_checksum", "checksum"};

// Names become HDF5 path components and manifest tokens: no '/', no whitespace, not "." or "..".
void check_name(const char* what, const std::string& name) {
  STRATA_CHECK(!name.empty() && name != "." && name != "..", "save_checkpoint: ", what, " name '",
               name, "' is not allowed");
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    STRATA_CHECK(ok, "save_checkpoint: ", what, " name '", name, "' contains '", c,
                 "'; allowed are letters, digits, '_', '.' and '-'");
  }
}

uint64_t tensor_hash(const Tensor& t) {
  const Tensor c = t.detach().contiguous();
  return mix64(c.raw_data(), size_t(c.numel()) * c.element_size());
}

// One trainer-state attribute in the manifest; the value is kept as text for hashing/printing.
struct Attr {
  std::string type;  // "int", "double", "string"
  std::string key;
};

// The canonical bytes behind attrs_checksum: the manifest, then each value (doubles by bit
// pattern, so the hash does not depend on printing precision).
std::string attr_bytes(const std::string& manifest, const std::vector<Attr>& attrs,
                       const io::H5File& f) {
  std::string out = manifest;
  for (const Attr& a : attrs) {
    out += '\n';
    out += a.key;
    out += '=';
    if (a.type == "int") {
      out += std::to_string(f.attr_int(kTrain, a.key));
    } else if (a.type == "double") {
      out += std::to_string(std::bit_cast<uint64_t>(f.attr_double(kTrain, a.key)));
    } else {
      const std::string v = f.attr_string(kTrain, a.key);
      out += std::to_string(v.size()) + ':' + v;
    }
  }
  return out;
}

// ---- durability ---------------------------------------------------------------------------------

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

// ---- directory listing --------------------------------------------------------------------------

std::optional<int64_t> parse_step(const std::string& name) {
  if (name.rfind("step_", 0) != 0 || name.size() == 5 || name.size() > 5 + 18) return std::nullopt;
  int64_t step = 0;
  for (size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

// step_ directories of run_dir, by ascending step.
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

// ---- writing ------------------------------------------------------------------------------------

void write_state(const fs::path& file, int64_t step, const CheckpointState& s) {
  std::map<std::string, std::string> types;  // key -> type, to reject a key in two maps
  auto add_key = [&](const std::string& key, const char* type) {
    check_name("trainer-state", key);
    for (const char* r : kReserved)
      STRATA_CHECK(key != r, "save_checkpoint: trainer-state key '", key, "' is reserved");
    STRATA_CHECK(types.emplace(key, type).second, "save_checkpoint: trainer-state key '", key,
                 "' is given as both ", types[key], " and ", type);
  };
  for (const auto& [k, v] : s.ints)
    if (k != "step") add_key(k, "int");
  add_key("step", "int");
  for (const auto& [k, v] : s.doubles) add_key(k, "double");
  for (const auto& [k, v] : s.strings) add_key(k, "string");
  if (auto it = s.ints.find("step"); it != s.ints.end())
    STRATA_CHECK(it->second == step, "save_checkpoint: state.ints[\"step\"] is ", it->second,
                 " but the checkpoint is for step ", step);

  io::H5File f = io::H5File::open(file.string(), io::H5File::Mode::Truncate);
  std::string manifest;
  auto put_tensor = [&](const std::string& path, const Tensor& t) {
    STRATA_CHECK(t.defined(), "save_checkpoint: tensor '", path, "' is undefined");
    f.write(path, t);
    f.set_attr(path, "checksum", checksum_string(tensor_hash(t)));
    manifest += "tensor " + path + "\n";
  };
  for (const auto& [name, t] : s.model) {
    check_name("parameter", name);
    put_tensor("/model/" + name, t);
  }
  for (const auto& [name, states] : s.optim) {
    check_name("parameter", name);
    for (const auto& [state_name, t] : states) {
      check_name("optimizer state", state_name);
      put_tensor("/optim/" + name + "/" + state_name, t);
    }
  }

  Tensor version = Tensor::empty({}, DType::i64);
  version.data<int64_t>()[0] = kCheckpointFormatVersion;
  f.write(kTrain, version);
  f.set_attr(kTrain, "checksum", checksum_string(tensor_hash(version)));
  f.set_attr(kTrain, "format_version", kCheckpointFormatVersion);
  std::vector<Attr> attrs;
  for (const auto& [key, type] : types) {
    if (type == "int")
      f.set_attr(kTrain, key, key == "step" ? step : s.ints.at(key));
    else if (type == "double")
      f.set_attr(kTrain, key, s.doubles.at(key));
    else
      f.set_attr(kTrain, key, s.strings.at(key));
    attrs.push_back({type, key});
    manifest += type + " " + key + "\n";
  }
  f.set_attr(kTrain, "manifest", manifest);
  const std::string bytes = attr_bytes(manifest, attrs, f);
  f.set_attr(kTrain, "attrs_checksum", checksum_string(mix64(bytes.data(), bytes.size())));
  f.flush();
}

// ---- reading ------------------------------------------------------------------------------------

template <class... Args>
[[noreturn]] void fail(const fs::path& dir, const Args&... args) {
  STRATA_FAIL("checkpoint '", dir.string(), "': ", args...);
}

// An open checkpoint whose header (marker, version, manifest, trainer state) has been verified.
struct Opened {
  io::H5File file;
  std::vector<std::string> tensors;
  std::vector<Attr> attrs;
};

Opened open_verified(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail(dir, "no such directory");
  if (!has_done(dir))
    fail(dir,
         "no DONE marker: the save was interrupted (or the directory is not a checkpoint); "
         "resume from an earlier checkpoint");
  const fs::path file = dir / kStateFile;
  if (!fs::is_regular_file(file, ec)) fail(dir, "missing ", kStateFile);
  std::optional<io::H5File> f;
  try {
    f.emplace(io::H5File::open(file.string(), io::H5File::Mode::Read));
  } catch (const std::exception& e) {
    fail(dir, e.what(), kCorruptHint);
  }
  try {
    if (!f->exists(kTrain) || !f->has_attr(kTrain, "format_version"))
      fail(dir, "no /train format_version: not a Strata checkpoint, or", kCorruptHint);
    const int64_t version = f->attr_int(kTrain, "format_version");
    if (version != kCheckpointFormatVersion)
      fail(dir, "format version ", version, " is not supported (this build reads version ",
           kCheckpointFormatVersion, "); use a Strata release that matches the file");
    Opened o{std::move(*f), {}, {}};
    const std::string manifest = o.file.attr_string(kTrain, "manifest");
    std::istringstream in(manifest);
    std::string type, name;
    while (in >> type >> name) {
      if (type == "tensor")
        o.tensors.push_back(name);
      else if (type == "int" || type == "double" || type == "string")
        o.attrs.push_back({type, name});
      else
        fail(dir, "unknown manifest entry '", type, " ", name, "'", kCorruptHint);
    }
    const std::string bytes = attr_bytes(manifest, o.attrs, o.file);
    const auto want = parse_checksum(o.file.attr_string(kTrain, "attrs_checksum"));
    if (!want || *want != mix64(bytes.data(), bytes.size()))
      fail(dir, "checksum mismatch in the /train attributes", kCorruptHint);
    return o;
  } catch (const Error& e) {
    if (std::string_view(e.what()).rfind("checkpoint '", 0) == 0) throw;
    fail(dir, e.what(), kCorruptHint);
  }
}

// Reads one dataset and checks its checksum; throws naming the dataset.
Tensor read_verified(const fs::path& dir, const io::H5File& f, const std::string& path) {
  Tensor t;
  std::string stored;
  try {
    t = f.read(path);
    stored = f.attr_string(path, "checksum");
  } catch (const std::exception& e) {
    fail(dir, "cannot read ", path, " (", e.what(), ")", kCorruptHint);
  }
  const auto want = parse_checksum(stored);
  if (!want) fail(dir, "unreadable checksum '", stored, "' on ", path, kCorruptHint);
  if (*want != tensor_hash(t)) fail(dir, "checksum mismatch in ", path, kCorruptHint);
  return t;
}

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

// ---- public -------------------------------------------------------------------------------------

std::string checkpoint_dir_name(int64_t step) {
  STRATA_CHECK(step >= 0, "checkpoint: step must be >= 0, got ", step);
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%09lld", static_cast<long long>(step));
  return buf;
}

fs::path save_checkpoint(const fs::path& run_dir, int64_t step, const CheckpointState& state,
                         int keep_last) {
  const std::string name = checkpoint_dir_name(step);
  std::error_code ec;
  if (!fs::is_directory(run_dir, ec)) {
    fs::create_directories(run_dir, ec);
    STRATA_CHECK(!ec, "save_checkpoint: cannot create run directory '", run_dir.string(),
                 "': ", ec.message());
    fs::path abs = fs::absolute(run_dir).lexically_normal();
    if (!abs.has_filename()) abs = abs.parent_path();  // "runs/a/" names "runs/a"
    fsync_path(abs.parent_path(), true);
  }
  const fs::path tmp = run_dir / (kTmpPrefix + name);
  const fs::path final_dir = run_dir / name;
  fs::remove_all(tmp, ec);
  fs::create_directory(tmp, ec);
  STRATA_CHECK(!ec, "save_checkpoint: cannot create '", tmp.string(), "': ", ec.message());

  // Order matters for crash safety: the data is durable before DONE exists, and DONE before the
  // directory gets a name that readers look at.
  write_state(tmp / kStateFile, step, state);
  fsync_path(tmp / kStateFile, false);
  write_synced(tmp / kDoneFile, "step " + std::to_string(step) + "\nformat_version " +
                                    std::to_string(kCheckpointFormatVersion) + "\n");
  fsync_path(tmp, true);
  publish(tmp, final_dir);
  fsync_path(run_dir, true);
  prune(run_dir, final_dir, keep_last);
  return final_dir;
}

CheckpointState load_checkpoint(const fs::path& dir) {
  Opened o = open_verified(dir);
  read_verified(dir, o.file, kTrain);
  CheckpointState s;
  for (const std::string& path : o.tensors) {
    Tensor t = read_verified(dir, o.file, path);
    if (path.rfind("/model/", 0) == 0) {
      s.model[path.substr(7)] = std::move(t);
    } else if (path.rfind("/optim/", 0) == 0 && path.find('/', 7) != std::string::npos) {
      const size_t slash = path.find('/', 7);
      s.optim[path.substr(7, slash - 7)][path.substr(slash + 1)] = std::move(t);
    } else {
      fail(dir, "unexpected dataset ", path, " in the manifest", kCorruptHint);
    }
  }
  try {
    for (const Attr& a : o.attrs) {
      if (a.type == "int")
        s.ints[a.key] = o.file.attr_int(kTrain, a.key);
      else if (a.type == "double")
        s.doubles[a.key] = o.file.attr_double(kTrain, a.key);
      else
        s.strings[a.key] = o.file.attr_string(kTrain, a.key);
    }
  } catch (const Error& e) {
    fail(dir, e.what(), kCorruptHint);
  }
  return s;
}

void verify_checkpoint(const fs::path& dir) {
  Opened o = open_verified(dir);
  for (const std::string& path : o.tensors) read_verified(dir, o.file, path);
  read_verified(dir, o.file, kTrain);
}

std::optional<fs::path> find_latest_checkpoint(const fs::path& run_dir, std::string* warnings) {
  auto warn = [&](const std::string& line) {
    if (warnings)
      *warnings += line + "\n";
    else
      std::cerr << line << "\n";
  };
  auto dirs = list_step_dirs(run_dir);
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
    const fs::path& dir = it->second;
    try {
      verify_checkpoint(dir);
      return dir;
    } catch (const std::exception& e) {
      warn(std::string("strata: warning: skipping ") + e.what() +
           " (trying an earlier checkpoint)");
    }
  }
  return std::nullopt;
}

std::string describe_checkpoint(const fs::path& dir, bool* ok) {
  std::ostringstream os;
  int problems = 0;
  auto problem = [&](const std::string& what) {
    ++problems;
    os << "  PROBLEM: " << what << "\n";
  };
  std::error_code ec;
  os << "checkpoint " << dir.string() << "\n";
  const auto size = fs::file_size(dir / kStateFile, ec);
  os << "  " << kStateFile << ": "
     << (ec ? std::string("missing") : std::to_string(size) + " bytes") << "\n  " << kDoneFile
     << " marker: " << (has_done(dir) ? "present" : "MISSING") << "\n";
  std::optional<Opened> o;
  try {
    o.emplace(open_verified(dir));
  } catch (const std::exception& e) {
    problem(e.what());
  }
  if (o) {
    os << "  format_version: " << kCheckpointFormatVersion << "\n\ntrainer state (/train):\n";
    for (const Attr& a : o->attrs) {
      os << "  " << a.key << " (" << a.type << ") = ";
      if (a.type == "int") {
        os << o->file.attr_int(kTrain, a.key) << "\n";
      } else if (a.type == "double") {
        os << std::setprecision(17) << o->file.attr_double(kTrain, a.key) << "\n";
      } else {
        const std::string v = o->file.attr_string(kTrain, a.key);
        if (v.find('\n') == std::string::npos) {
          os << "\"" << v << "\"\n";
        } else {
          // Multi-line values (the config) are shown as an indented block.
          os << "(" << v.size() << " bytes)\n";
          std::istringstream lines(v);
          for (std::string line; std::getline(lines, line);) os << "    | " << line << "\n";
        }
      }
    }
    int64_t elements = 0, bytes = 0;
    std::ostringstream rows;
    for (const std::string& path : o->tensors) {
      rows << "  " << path;
      try {
        const Shape shape = o->file.shape_of(path);
        const DType dt = o->file.dtype_of(path);
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        elements += n;
        bytes += n * int64_t(dtype_size(dt));
        rows << "  " << dtype_name(dt) << " " << shape_str(shape);
        read_verified(dir, o->file, path);
        rows << "  checksum ok\n";
      } catch (const std::exception& e) {
        rows << "  BAD\n";
        problem(e.what());
      }
    }
    os << "\ntensors (" << o->tensors.size() << ", " << elements << " elements, " << bytes
       << " bytes):\n"
       << rows.str();
  }
  os << "\nverification: "
     << (problems == 0 ? std::string("OK")
                       : "FAILED (" + std::to_string(problems) + " problem" +
                             (problems == 1 ? "" : "s") + ")")
     << "\n";
  if (ok) *ok = problems == 0;
  return os.str();
}

}  // namespace strata::train
