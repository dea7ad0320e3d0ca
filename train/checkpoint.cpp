#include "train/checkpoint.h"

#include <cstdio>
#include <functional>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/io/hdf5_file.h"
#include "train/checkpoint_dir.h"
#include "train/checkpoint_format.h"
#include "train/checkpoint_space.h"
#include "train/checksum.h"

namespace strata::train {
namespace fs = std::filesystem;

using detail::Attr;
using detail::fail;
using detail::kCorruptHint;
using detail::kDoneFile;
using detail::kStateFile;
using detail::kTrain;
using detail::open_verified;
using detail::Opened;
using detail::read_verified;

namespace {

constexpr const char* kWho = "save_checkpoint";

void write_state(const fs::path& file, int64_t step, const CheckpointState& s,
                 const std::function<void()>& reserve) {
  const detail::TrainerState trainer{s.strings, s.ints, s.doubles};
  const detail::AttrTypes types = detail::check_trainer_state(kWho, step, trainer);

  io::H5File f = io::H5File::open(file.string(), io::H5File::Mode::Truncate);
  reserve();
  std::string manifest;
  auto put_tensor = [&](const std::string& path, const Tensor& tensor) {
    STRATA_CHECK(tensor.defined(), "save_checkpoint: tensor '", path, "' is undefined");
    // Files are device-independent: a tensor on a GPU is written from a host copy (one tensor
    // at a time), so a run saved on a GPU resumes on the CPU and back.
    const Tensor t = detail::on_host(tensor);
    f.write(path, t);
    f.set_attr(path, "checksum", checksum_string(detail::tensor_hash(t)));
    manifest += "tensor " + path + "\n";
  };
  for (const auto& [name, t] : s.model) {
    detail::check_name(kWho, "parameter", name);
    put_tensor("/model/" + name, t);
  }
  for (const auto& [name, states] : s.optim) {
    detail::check_name(kWho, "parameter", name);
    for (const auto& [state_name, t] : states) {
      detail::check_name(kWho, "optimizer state", state_name);
      put_tensor("/optim/" + name + "/" + state_name, t);
    }
  }
  detail::write_train(f, step, trainer, types, std::move(manifest));
  f.flush();
}

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// Everything load_checkpoint returns, every checksum checked.
CheckpointState read_verified_checkpoint(const fs::path& dir) {
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
  const detail::SpaceNeed need = detail::space_need(state);
  detail::check_space(run_dir, name, need);
  const fs::path tmp = detail::begin_save(run_dir, name);
  try {
    const fs::path file = tmp / kStateFile;
    write_state(file, step, state, [&] { detail::reserve_space(file, run_dir, name, need); });
    detail::seal(tmp, step);
  } catch (const std::exception& e) {
    detail::fail_save(run_dir, tmp, name, need, e);
  }
  return detail::publish_and_prune(run_dir, tmp, name, keep_last);
}

CheckpointState load_checkpoint(const fs::path& dir) {
  try {
    CheckpointState s = read_verified_checkpoint(dir);
    detail::record_verdict(dir, true);
    return s;
  } catch (const Error&) {
    detail::record_verdict(dir, false);
    throw;
  }
}

void verify_checkpoint(const fs::path& dir) {
  try {
    Opened o = open_verified(dir);
    for (const std::string& path : o.tensors) read_verified(dir, o.file, path);
    read_verified(dir, o.file, kTrain);
  } catch (const Error&) {
    detail::record_verdict(dir, false);
    throw;
  }
  detail::record_verdict(dir, true);
}

std::optional<fs::path> find_latest_checkpoint(const fs::path& run_dir, std::string* warnings) {
  auto warn = [&](const std::string& line) {
    if (warnings)
      *warnings += line + "\n";
    else
      std::cerr << line << "\n";
  };
  auto dirs = detail::list_step_dirs(run_dir);
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
     << " marker: " << (detail::has_done(dir) ? "present" : "MISSING") << "\n";
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
