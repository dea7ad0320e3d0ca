// Loading and verifying checkpoints in a parallel job (parallel_checkpoint.h). Each rank opens the
// file read-only with HDF5's POSIX driver and reads its own hyperslabs independently: ranks of a
// pipeline need different datasets, which collective MPI-IO reads would have to coordinate, and
// an independent hyperslab read already moves only the rank's bytes.
#include <algorithm>
#include <iostream>
#include <set>

#include "core/io/hdf5_file.h"
#include "train/checkpoint_dir.h"
#include "train/checkpoint_format.h"
#include "train/parallel_agreement.h"
#include "train/parallel_checkpoint.h"

namespace strata::train {
namespace fs = std::filesystem;

namespace {

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// This rank's slice of dataset `path`, as `sh` places it.
Tensor read_slice(const fs::path& dir, const detail::Opened& o, const std::set<std::string>& have,
                  const std::string& path, const models::Sharding& sh) {
  if (!have.count(path))
    detail::fail(dir, "no dataset ", path,
                 "; the checkpoint was saved from a different model (or without optimizer "
                 "state)");
  const Shape global = o.file.shape_of(path);
  if (global != sh.global_shape)
    detail::fail(dir, path, " has the global shape ", shape_str(global), " but this model has ",
                 shape_str(sh.global_shape), "; the checkpoint is of a different model config");
  std::vector<int64_t> offset(global.size(), 0);
  if (sh.parts > 1) {
    STRATA_CHECK(sh.dim >= 0 && sh.dim < int64_t(global.size()) && sh.part >= 0 &&
                     sh.part < sh.parts && global[size_t(sh.dim)] % sh.parts == 0,
                 "load_sharded_checkpoint: ", path, ": bad Sharding (part ", sh.part, " of ",
                 sh.parts, " along dim ", sh.dim, " of ", shape_str(global), ")");
    offset[size_t(sh.dim)] = sh.offset();
  }
  try {
    return o.file.read_slab(path, offset, sh.local_shape());
  } catch (const Error& e) {
    detail::fail(dir, "cannot read ", path, " (", e.what(), ")", detail::kCorruptHint);
  }
}

// The datasets shared out over the ranks, each read and checked by one.
void verify_shared_out(const fs::path& dir, parallel::Communicator& world) {
  detail::on_all_ranks(world, "checkpoint.verify", [&] {
    const detail::Opened o = detail::open_verified(dir);
    // Share the datasets out by bytes (largest-first would balance better, but file order keeps
    // the assignment obvious); every rank computes the same assignment from the same file.
    std::vector<std::string> paths = o.tensors;
    paths.push_back(detail::kTrain);
    std::vector<int64_t> load(size_t(world.size()), 0);
    for (const std::string& path : paths) {
      int64_t bytes = 0;
      try {
        bytes = numel(o.file.shape_of(path)) * int64_t(dtype_size(o.file.dtype_of(path)));
      } catch (const Error& e) {
        detail::fail(dir, "cannot read ", path, " (", e.what(), ")", detail::kCorruptHint);
      }
      const auto r = size_t(std::min_element(load.begin(), load.end()) - load.begin());
      load[r] += std::max<int64_t>(bytes, 1);
      if (int(r) == world.rank()) detail::read_verified(dir, o.file, path);
    }
  });
}

}  // namespace

CheckpointState load_sharded_checkpoint(const fs::path& dir, const ShardRequest& request,
                                        parallel::Communicator& world, bool verify) {
  if (verify) verify_checkpoint(dir, world);
  CheckpointState out;
  detail::on_all_ranks(world, "checkpoint.load", [&] {
    const detail::Opened o = detail::open_verified(dir);
    const std::set<std::string> have(o.tensors.begin(), o.tensors.end());
    for (const auto& [name, sh] : request.model)
      out.model[name] = read_slice(dir, o, have, "/model/" + name, sh);
    for (const auto& [name, states] : request.optim)
      for (const auto& [state, sh] : states)
        out.optim[name][state] = read_slice(dir, o, have, "/optim/" + name + "/" + state, sh);
    try {
      for (const detail::Attr& a : o.attrs) {
        if (a.type == "int")
          out.ints[a.key] = o.file.attr_int(detail::kTrain, a.key);
        else if (a.type == "double")
          out.doubles[a.key] = o.file.attr_double(detail::kTrain, a.key);
        else
          out.strings[a.key] = o.file.attr_string(detail::kTrain, a.key);
      }
    } catch (const Error& e) {
      detail::fail(dir, e.what(), detail::kCorruptHint);
    }
  });
  return out;
}

void verify_checkpoint(const fs::path& dir, parallel::Communicator& world) {
  // Every rank records the verdict the ranks agreed on, for retention (checkpoint_dir.h).
  try {
    verify_shared_out(dir, world);
  } catch (const Error&) {
    detail::record_verdict(dir, false);
    throw;
  }
  detail::record_verdict(dir, true);
}

std::optional<fs::path> find_latest_checkpoint(const fs::path& run_dir,
                                               parallel::Communicator& world,
                                               std::string* warnings) {
  // Rank 0's listing, so every rank tries the same candidates in the same order.
  std::string listing;
  if (world.rank() == 0)
    for (const auto& [step, dir] : detail::list_step_dirs(run_dir)) listing += dir.string() + '\0';
  listing = detail::broadcast_string(world, listing, 0, "checkpoint.list");
  std::vector<fs::path> dirs;
  for (size_t at = 0; at < listing.size();) {
    const size_t end = listing.find('\0', at);
    dirs.emplace_back(listing.substr(at, end - at));
    at = end + 1;
  }
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
    try {
      verify_checkpoint(*it, world);
      return *it;
    } catch (const std::exception& e) {
      const std::string line =
          std::string("strata: warning: skipping ") + e.what() + " (trying an earlier checkpoint)";
      if (warnings)
        *warnings += line + "\n";
      else if (world.rank() == 0)
        std::cerr << line << "\n";
    }
  }
  return std::nullopt;
}

}  // namespace strata::train
