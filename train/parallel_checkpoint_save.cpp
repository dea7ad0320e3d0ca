// save_sharded_checkpoint: every rank's slices into one checkpoint file (parallel_checkpoint.h).
//
// 1. Catalogue: each rank describes its tensors (name, dtype, global shape, split, part); one
//    all-gather gives every rank the whole list, from which all ranks derive the same datasets
//    and, per slice, its writer (the lowest rank holding it).
// 2. Replicas: ranks holding the same slice compare hashes of their copies.
// 3. Checksums: the single-process checksum is mix64 over the global tensor's row-major bytes,
//    which no combination of per-slice hashes gives; so for each split tensor one rank (chosen
//    to balance bytes) receives the slices and hashes them in global order. Hashing the data in
//    memory, not what was written, means a misplaced slab shows up as a checksum mismatch.
// 4. Data: collective hyperslab writes into the temporary file (parallel HDF5, MPI-IO).
// 5. Rank 0 adds the checksums and /train, seals (fsync, DONE), renames and prunes.
#include <algorithm>
#include <functional>
#include <limits>
#include <optional>
#include <sstream>

#include "core/io/hdf5_file.h"
#include "core/ops/factory.h"
#include "parallel/mpi_communicator.h"
#include "train/checkpoint_dir.h"
#include "train/checkpoint_format.h"
#include "train/checkpoint_space.h"
#include "train/checksum.h"
#include "train/parallel_agreement.h"
#include "train/parallel_checkpoint.h"

namespace strata::train {
namespace fs = std::filesystem;

namespace {

constexpr const char* kWho = "save_sharded_checkpoint";

ShardedCheckpointState on_host(const ShardedCheckpointState& s) {
  ShardedCheckpointState h = s;
  for (auto& [name, st] : h.model) st.local = detail::on_host(st.local);
  for (auto& [name, states] : h.optim)
    for (auto& [state_name, st] : states) st.local = detail::on_host(st.local);
  return h;
}

// Datasets are ordered as the one-process writer writes them (model by name, then optimizer
// state by parameter and state name), so the manifests, and with them the /train checksums, agree.
struct Key {
  int kind = 0;  // 0: /model, 1: /optim
  std::string name, state;
  auto operator<=>(const Key&) const = default;
  std::string path() const { return kind == 0 ? "/model/" + name : "/optim/" + name + "/" + state; }
};

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// A slice as the catalogue describes it.
struct Piece {
  Key key;
  DType dtype = DType::f32;
  Shape global;
  int64_t dim = -1, part = 0, parts = 1;

  std::string layout() const {
    std::ostringstream os;
    os << dtype_name(dtype) << " " << shape_str(global);
    if (parts == 1)
      os << " replicated";
    else
      os << " split " << parts << " ways along dim " << dim;
    return os.str();
  }
};

struct Dataset {
  Piece desc;                             // part unused
  std::vector<std::vector<int>> holders;  // per part: the ranks holding it, ascending
  int hasher = -1;
  const ShardedTensor* mine = nullptr;  // this rank's slice, if any
  int64_t my_part = -1;

  int writer(int64_t part) const { return holders[size_t(part)].front(); }
  bool i_write(int me) const { return mine != nullptr && writer(my_part) == me; }
  int64_t bytes() const { return numel(desc.global) * int64_t(dtype_size(desc.dtype)); }
};

// ---- 1. catalogue -------------------------------------------------------------------------------

void check_slice(const std::string& path, const ShardedTensor& st) {
  const models::Sharding& sh = st.sharding;
  STRATA_CHECK(st.local.defined(), kWho, ": tensor ", path, " is undefined");
  STRATA_CHECK(st.local.device().is_cpu(), kWho, ": tensor ", path, " is on ",
               st.local.device().str(), "; checkpoints take CPU tensors");
  STRATA_CHECK(sh.parts >= 1 && sh.part >= 0 && sh.part < sh.parts, kWho, ": ", path,
               " has a bad Sharding: part ", sh.part, " of ", sh.parts);
  if (sh.parts > 1) {
    STRATA_CHECK(sh.dim >= 0 && sh.dim < int64_t(sh.global_shape.size()), kWho, ": ", path,
                 " is split along dim ", sh.dim, ", outside its ", sh.global_shape.size(),
                 "-d global shape");
    STRATA_CHECK(sh.global_shape[size_t(sh.dim)] % sh.parts == 0, kWho, ": ", path, " is split ",
                 sh.parts, " ways along dim ", sh.dim, " of size ", sh.global_shape[size_t(sh.dim)],
                 ", which does not divide");
  }
  STRATA_CHECK(st.local.shape() == sh.local_shape(), kWho, ": ", path, " has the local shape ",
               shape_str(st.local.shape()), " but its Sharding (global ",
               shape_str(sh.global_shape), ", part ", sh.part, " of ", sh.parts, ") gives ",
               shape_str(sh.local_shape()),
               "; pass the slice this rank holds, with the global shape in its Sharding");
}

std::string describe(const Key& key, const ShardedTensor& st) {
  const models::Sharding& sh = st.sharding;
  std::ostringstream os;
  if (key.kind == 0)
    os << "m " << key.name;
  else
    os << "o " << key.name << ' ' << key.state;
  os << ' ' << int(st.local.dtype()) << ' ' << sh.global_shape.size();
  for (int64_t d : sh.global_shape) os << ' ' << d;
  if (sh.parts == 1)
    os << " -1 0 1\n";
  else
    os << ' ' << sh.dim << ' ' << sh.part << ' ' << sh.parts << '\n';
  return os.str();
}

std::vector<Piece> parse_catalogue(const std::string& text) {
  std::vector<Piece> out;
  std::istringstream in(text);
  std::string kind;
  while (in >> kind) {
    Piece p;
    p.key.kind = kind == "m" ? 0 : 1;
    in >> p.key.name;
    if (p.key.kind == 1) in >> p.key.state;
    int dt = 0;
    size_t rank = 0;
    in >> dt >> rank;
    p.dtype = DType(dt);
    p.global.resize(rank);
    for (auto& d : p.global) in >> d;
    in >> p.dim >> p.part >> p.parts;
    out.push_back(std::move(p));
  }
  return out;
}

// This rank's catalogue, or "!" + the first problem with its input.
std::string local_catalogue(int64_t step, const ShardedCheckpointState& s, bool rank0,
                            std::map<Key, const ShardedTensor*>& mine,
                            std::optional<detail::AttrTypes>& types) {
  try {
    std::string text;
    for (const auto& [name, st] : s.model) {
      detail::check_name(kWho, "parameter", name);
      const Key key{0, name, {}};
      check_slice(key.path(), st);
      mine[key] = &st;
      text += describe(key, st);
    }
    for (const auto& [name, states] : s.optim) {
      detail::check_name(kWho, "parameter", name);
      for (const auto& [state, st] : states) {
        detail::check_name(kWho, "optimizer state", state);
        const Key key{1, name, state};
        check_slice(key.path(), st);
        mine[key] = &st;
        text += describe(key, st);
      }
    }
    if (rank0) types = detail::check_trainer_state(kWho, step, {s.strings, s.ints, s.doubles});
    return text;
  } catch (const std::exception& e) {
    return std::string("!") + e.what();
  }
}

// The datasets of the whole job, in file order; identical on every rank (or the same error).
std::vector<Dataset> merge(const std::vector<std::string>& catalogues,
                           const std::map<Key, const ShardedTensor*>& mine) {
  for (size_t r = 0; r < catalogues.size(); ++r)
    if (!catalogues[r].empty() && catalogues[r][0] == '!')
      throw Error(catalogues[r].substr(1) + " [world rank " + std::to_string(r) + "]");
  std::map<Key, Dataset> by_key;
  std::map<Key, int> first_rank;
  for (size_t r = 0; r < catalogues.size(); ++r) {
    for (const Piece& p : parse_catalogue(catalogues[r])) {
      auto [it, fresh] = by_key.try_emplace(p.key);
      Dataset& d = it->second;
      if (fresh) {
        d.desc = p;
        d.holders.resize(size_t(p.parts));
        first_rank[p.key] = int(r);
      }
      STRATA_CHECK(p.dtype == d.desc.dtype && p.global == d.desc.global &&
                       p.parts == d.desc.parts && p.dim == d.desc.dim,
                   kWho, ": ranks disagree about ", p.key.path(), ": world rank ",
                   first_rank[p.key], " holds it as ", d.desc.layout(), ", world rank ", r, " as ",
                   p.layout(),
                   "; every rank must build the same model with the same parallel layout");
      d.holders[size_t(p.part)].push_back(int(r));
    }
  }
  std::vector<Dataset> out;
  for (auto& [key, d] : by_key) {
    for (int64_t part = 0; part < d.desc.parts; ++part)
      STRATA_CHECK(!d.holders[size_t(part)].empty(), kWho, ": slice ", part, " of ", d.desc.parts,
                   " of ", key.path(), " (", d.desc.layout(),
                   ") is held by no rank; every slice must be passed by at least one rank");
    if (auto it = mine.find(key); it != mine.end()) {
      d.mine = it->second;
      d.my_part = it->second->sharding.parts == 1 ? 0 : it->second->sharding.part;
    }
    out.push_back(std::move(d));
  }
  return out;
}

// ---- 2. replicas --------------------------------------------------------------------------------

// Hashes of this rank's slices (index: dataset), when some other rank holds the same slice or the
// hash is needed for the checksum of a replicated tensor.
using LocalHashes = std::map<size_t, uint64_t>;

void check_replicas(parallel::Communicator& world, const std::vector<Dataset>& ds,
                    LocalHashes& hashes) {
  std::vector<std::pair<size_t, int64_t>> slots;  // (dataset, part) with several holders
  for (size_t i = 0; i < ds.size(); ++i)
    for (int64_t part = 0; part < ds[i].desc.parts; ++part)
      if (ds[i].holders[size_t(part)].size() > 1) slots.emplace_back(i, part);
  if (slots.empty()) return;
  // Max over the holders of h and of ~h (= ~min h) are equal-complements iff all copies agree.
  const int64_t lowest = std::numeric_limits<int64_t>::min();
  Tensor hi = full({int64_t(slots.size())}, 0.0, DType::i64);
  Tensor lo = full({int64_t(slots.size())}, 0.0, DType::i64);
  for (size_t s = 0; s < slots.size(); ++s) {
    const Dataset& d = ds[slots[s].first];
    int64_t h = lowest, nh = lowest;
    if (d.mine && d.my_part == slots[s].second) {
      const uint64_t u = detail::tensor_hash(d.mine->local);
      hashes[slots[s].first] = u;
      h = int64_t(u);
      nh = int64_t(~u);
    }
    hi.data<int64_t>()[s] = h;
    lo.data<int64_t>()[s] = nh;
  }
  world.all_reduce(hi, parallel::ReduceOp::Max, "checkpoint.replicas");
  world.all_reduce(lo, parallel::ReduceOp::Max, "checkpoint.replicas");
  std::string bad;
  int n_bad = 0;
  for (size_t s = 0; s < slots.size(); ++s) {
    if (hi.data<int64_t>()[s] == ~lo.data<int64_t>()[s]) continue;
    if (++n_bad > 3) continue;
    const Dataset& d = ds[slots[s].first];
    bad += (bad.empty() ? "" : "; ") + d.desc.key.path();
    if (d.desc.parts > 1)
      bad += " (slice " + std::to_string(slots[s].second) + " of " + std::to_string(d.desc.parts) +
             ")";
    bad += " on world ranks";
    for (int r : d.holders[size_t(slots[s].second)]) bad += " " + std::to_string(r);
  }
  STRATA_CHECK(n_bad == 0, kWho, ": copies of a replicated slice differ between ranks: ", bad,
               n_bad > 3 ? " and " + std::to_string(n_bad - 3) + " more" : std::string(),
               ". Only one copy is written, so resuming would not continue this run; replicas "
               "(data-parallel, tensor-parallel replicated, tied weights) must stay bitwise "
               "equal. ParallelSaveOptions::check_replicas = false saves the lowest rank's copy");
}

// ---- 3. checksums -------------------------------------------------------------------------------

// Each split tensor is hashed by one of its writers, the one with the fewest bytes to hash so
// far (ties: lowest rank); a replicated tensor by its writer. The same on every rank.
void assign_hashers(std::vector<Dataset>& ds, int world_size) {
  std::vector<int64_t> load(size_t(world_size), 0);
  for (Dataset& d : ds) {
    int best = d.writer(0);
    for (int64_t part = 1; part < d.desc.parts; ++part) {
      const int w = d.writer(part);
      if (load[size_t(w)] < load[size_t(best)] ||
          (load[size_t(w)] == load[size_t(best)] && w < best))
        best = w;
    }
    d.hasher = best;
    load[size_t(best)] += d.bytes();
  }
}

// mix64 of the global tensor's row-major bytes from its slices (contiguous, in part order).
uint64_t global_hash(const Dataset& d, const std::vector<Tensor>& slices) {
  const size_t esize = dtype_size(d.desc.dtype);
  const uint64_t total = uint64_t(d.bytes());
  if (d.desc.parts == 1 || total == 0) return mix64(slices[0].raw_data(), total);
  // Row-major order visits, for each index of the dims before the split one, a run of every
  // slice in turn.
  int64_t outer = 1;
  for (int64_t i = 0; i < d.desc.dim; ++i) outer *= d.desc.global[size_t(i)];
  const size_t run = size_t(numel(slices[0].shape()) / outer) * esize;
  Mix64 h(total);
  for (int64_t o = 0; o < outer; ++o)
    for (const Tensor& s : slices)
      h.update(static_cast<const char*>(s.raw_data()) + size_t(o) * run, run);
  return h.finish();
}

std::vector<uint64_t> checksums(parallel::Communicator& world, const std::vector<Dataset>& ds,
                                LocalHashes& local) {
  const int me = world.rank();
  Tensor hashes = full({int64_t(ds.size())}, 0.0, DType::i64);
  for (size_t i = 0; i < ds.size(); ++i) {
    const Dataset& d = ds[i];
    if (d.desc.parts == 1) {
      if (d.hasher != me) continue;
      if (!local.count(i)) local[i] = detail::tensor_hash(d.mine->local);
      hashes.data<int64_t>()[i] = int64_t(local[i]);
      continue;
    }
    // Every rank walks the datasets in the same order and each slice goes to its hasher as one
    // message, so the blocking sends and receives cannot deadlock.
    const std::string what = "checkpoint.hash." + d.desc.key.path();
    if (d.hasher == me) {
      std::vector<Tensor> slices;
      models::Sharding sh{d.desc.global, d.desc.dim, 0, d.desc.parts};
      for (int64_t part = 0; part < d.desc.parts; ++part) {
        if (d.writer(part) == me) {
          slices.push_back(d.mine->local.detach().contiguous());
        } else {
          Tensor t = Tensor::empty(sh.local_shape(), d.desc.dtype);
          world.recv(t, d.writer(part), what);
          slices.push_back(t);
        }
      }
      hashes.data<int64_t>()[i] = int64_t(global_hash(d, slices));
    } else if (d.i_write(me)) {
      world.send(d.mine->local.detach().contiguous(), d.hasher, what);
    }
  }
  // One rank holds each value, the others zero: the sum is exact.
  if (world.size() > 1 && !ds.empty())
    world.all_reduce(hashes, parallel::ReduceOp::Sum, "checkpoint.checksums");
  std::vector<uint64_t> out(ds.size());
  for (size_t i = 0; i < ds.size(); ++i) out[i] = uint64_t(hashes.data<int64_t>()[i]);
  return out;
}

// ---- 4. data ------------------------------------------------------------------------------------

io::H5File create_file(const fs::path& file, parallel::Communicator& world) {
  if (auto* mpi = dynamic_cast<parallel::MpiCommunicator*>(&world))
    return io::H5File::open_parallel(file.string(), io::H5File::Mode::Truncate,
                                     int(MPI_Comm_c2f(mpi->comm())));
  STRATA_CHECK(world.size() == 1, kWho, ": the communicator '", world.name(),
               "' is not an MPI one; parallel HDF5 needs the MPI world of the job "
               "(parallel::Topology::world())");
  return io::H5File::open(file.string(), io::H5File::Mode::Truncate);
}

// `reserve` runs on every rank once the file exists, before any data is written.
void write_data(const fs::path& file, parallel::Communicator& world, const std::vector<Dataset>& ds,
                const std::function<void()>& reserve) {
  const int me = world.rank();
  io::H5File f = create_file(file, world);
  reserve();
  for (const Dataset& d : ds) {
    const std::string path = d.desc.key.path();
    f.create_dataset(path, d.desc.dtype, d.desc.global);
    if (d.bytes() == 0) continue;
    std::vector<int64_t> offset(d.desc.global.size(), 0);
    Tensor slab;
    if (d.i_write(me)) {
      slab = d.mine->local;
      if (d.desc.parts > 1)
        offset[size_t(d.desc.dim)] = d.my_part * (d.desc.global[size_t(d.desc.dim)] / d.desc.parts);
    }
    f.write_slab(path, slab, offset);
  }
  // Closing (collective) ends with MPI_File_close, which syncs every rank's writes to storage.
}

// ---- 5. rank 0 ----------------------------------------------------------------------------------

void finish_file(const fs::path& file, int64_t step, const ShardedCheckpointState& s,
                 const detail::AttrTypes& types, const std::vector<Dataset>& ds,
                 const std::vector<uint64_t>& hashes) {
  io::H5File f = io::H5File::open(file.string(), io::H5File::Mode::ReadWrite);
  std::string manifest;
  for (size_t i = 0; i < ds.size(); ++i) {
    const std::string path = ds[i].desc.key.path();
    f.set_attr(path, "checksum", checksum_string(hashes[i]));
    manifest += "tensor " + path + "\n";
  }
  detail::write_train(f, step, {s.strings, s.ints, s.doubles}, types, std::move(manifest));
  f.flush();
}

// The disk space of the whole file (checkpoint_space.h); the trainer state counts on rank 0,
// the one that checks.
detail::SpaceNeed space_need(const std::vector<Dataset>& ds, const ShardedCheckpointState& s) {
  uint64_t bytes = 0, state = 0;
  for (const Dataset& d : ds) {
    bytes += uint64_t(d.bytes());
    state += d.desc.key.path().size();
  }
  for (const auto& [k, v] : s.strings) state += k.size() + v.size();
  for (const auto& [k, v] : s.ints) state += k.size() + 8;
  for (const auto& [k, v] : s.doubles) state += k.size() + 8;
  return detail::space_need(bytes, ds.size(), state);
}

}  // namespace

fs::path save_sharded_checkpoint(const fs::path& run_dir, int64_t step,
                                 const ShardedCheckpointState& device_state,
                                 parallel::Communicator& world,
                                 const ParallelSaveOptions& options) {
  // Slices on a GPU are hashed, exchanged and written from host copies (the MPI and HDF5 steps
  // below read host memory), so the file is the one a CPU run writes.
  const ShardedCheckpointState host_state = on_host(device_state);
  const ShardedCheckpointState& state = host_state;
  const int me = world.rank();
  const bool rank0 = me == 0;
  const std::string name = checkpoint_dir_name(step);
  auto fault = [&](std::string_view point) {
    if (options.fault_injection) options.fault_injection(point);
  };

  std::map<Key, const ShardedTensor*> mine;
  std::optional<detail::AttrTypes> types;
  const std::string catalogue = local_catalogue(step, state, rank0, mine, types);
  std::vector<Dataset> ds =
      merge(detail::all_gather_strings(world, catalogue, "checkpoint.catalogue"), mine);
  assign_hashers(ds, world.size());

  LocalHashes local;
  if (options.check_replicas) check_replicas(world, ds, local);
  const std::vector<uint64_t> hashes = checksums(world, ds, local);

  const detail::SpaceNeed need = space_need(ds, state);
  const fs::path tmp = detail::tmp_dir(run_dir, name);
  const fs::path file = tmp / detail::kStateFile;
  detail::on_all_ranks(world, "checkpoint.begin", [&] {
    if (!rank0) return;
    detail::check_space(run_dir, name, need);
    detail::begin_save(run_dir, name);
  });
  try {
    detail::on_all_ranks(world, "checkpoint.written", [&] {
      write_data(file, world, ds, [&] {
        detail::on_all_ranks(world, "checkpoint.reserve", [&] {
          if (rank0) detail::reserve_space(file, run_dir, name, need);
        });
      });
      fault("written");
    });
    detail::on_all_ranks(world, "checkpoint.sealed", [&] {
      if (rank0) {
        finish_file(file, step, state, *types, ds, hashes);
        detail::seal(tmp, step);
      }
      fault("sealed");
    });
  } catch (const std::exception& e) {
    // Every rank is here (the steps above agree on failures), so rank 0 removes the partial
    // checkpoint and every rank throws its message.
    detail::on_all_ranks(world, "checkpoint.abandon", [&] {
      if (rank0) detail::fail_save(run_dir, tmp, name, need, e);
      throw Error(e.what());
    });
  }
  fs::path final_dir = run_dir / name;
  detail::on_all_ranks(world, "checkpoint.published", [&] {
    if (rank0) final_dir = detail::publish_and_prune(run_dir, tmp, name, options.keep_last);
  });
  return final_dir;
}

std::map<std::string, ShardedTensor> sharded_parameters(const models::Module& m) {
  std::map<std::string, ShardedTensor> out;
  for (const auto& [name, t] : m.named_parameters()) out[name] = {t, m.sharding(name)};
  return out;
}

std::map<std::string, models::Sharding> parameter_shardings(const models::Module& m) {
  std::map<std::string, models::Sharding> out;
  for (const auto& [name, t] : m.named_parameters()) out[name] = m.sharding(name);
  return out;
}

}  // namespace strata::train
