// Parallel checkpoint save / load (train/parallel_checkpoint.h) against the one-process writer on
// the same global tensors in the same run. Run under mpirun; every rank is one TP rank (TP = world
// size), half the tensors split by rows, half by columns. Rank 0 prints JSON lines.
//   mpirun -np 2 ./strata_bench_parallel_checkpoint [MiB per tensor, default 32] [dir]
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <vector>

#include "bench/bench_flags.h"
#include "core/ops.h"
#include "parallel/mpi_communicator.h"
#include "parallel/mpi_env.h"
#include "train/checkpoint.h"
#include "train/parallel_checkpoint.h"

using namespace strata;
namespace fs = std::filesystem;

namespace {

double median_seconds(int reps, const std::function<void()>& fn) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    MPI_Barrier(MPI_COMM_WORLD);
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    MPI_Barrier(MPI_COMM_WORLD);
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  parallel::MpiEnv env(argc, argv);
  {
    auto world = parallel::MpiCommunicator::world();
    const int rank = world->rank(), size = world->size();
    int64_t mib = 32;
    std::string dir_name =
        (fs::temp_directory_path() / "strata_parallel_checkpoint_bench").string();
    bench::BenchFlags flags("strata_bench_parallel_checkpoint",
                            "Sharded checkpoint save / load against the one-process writer.");
    flags.add("mib", &mib, "MiB of tensors", 1, 1 << 20);
    flags.add("dir", &dir_name, "where to write the checkpoints");
    flags.parse(argc, argv);
    const fs::path dir = dir_name;
    const int64_t rows = 1024 * size, cols = mib * 1024 * 1024 / 4 / rows;

    // 4 parameters and an optimizer state each, f32.
    train::CheckpointState whole;
    train::ShardedCheckpointState mine;
    train::ShardRequest want;
    for (int i = 0; i < 4; ++i) {
      const std::string name = std::string("p").append(std::to_string(i));
      const Shape shape{rows, cols - cols % size};
      const models::Sharding sh = models::Sharding::split(shape, i % 2, rank, size, name);
      for (int s = 0; s < 2; ++s) {
        const Tensor g = randn(shape, RandomKey{uint64_t(10 * i + s)});
        if (s == 0) {
          whole.model[name] = g;
          mine.model[name] = {sh.local_slice(g).contiguous(), sh};
          want.model[name] = sh;
        } else {
          whole.optim[name]["exp_avg"] = g;
          mine.optim[name]["exp_avg"] = {sh.local_slice(g).contiguous(), sh};
          want.optim[name]["exp_avg"] = sh;
        }
      }
    }
    const double bytes = 8.0 * double(rows) * double(cols - cols % size) * 4.0;
    if (rank == 0) fs::remove_all(dir);
    MPI_Barrier(MPI_COMM_WORLD);

    const int reps = 3;
    const double save = median_seconds(reps, [&] {
      train::save_sharded_checkpoint(dir / "parallel", 1, mine, *world, {1, true, {}});
    });
    const double load = median_seconds(reps, [&] {
      train::load_sharded_checkpoint(dir / "parallel" / "step_000000001", want, *world, true);
    });
    const double load_noverify = median_seconds(reps, [&] {
      train::load_sharded_checkpoint(dir / "parallel" / "step_000000001", want, *world, false);
    });
    double serial_save = 0, serial_load = 0;
    if (rank == 0) {
      std::vector<double> s, l;
      for (int i = 0; i < reps; ++i) {
        auto t0 = std::chrono::steady_clock::now();
        train::save_checkpoint(dir / "serial", 1, whole, 1);
        auto t1 = std::chrono::steady_clock::now();
        train::load_checkpoint(dir / "serial" / "step_000000001");
        auto t2 = std::chrono::steady_clock::now();
        s.push_back(std::chrono::duration<double>(t1 - t0).count());
        l.push_back(std::chrono::duration<double>(t2 - t1).count());
      }
      std::sort(s.begin(), s.end());
      std::sort(l.begin(), l.end());
      serial_save = s[s.size() / 2];
      serial_load = l[l.size() / 2];
      auto line = [&](const char* what, double sec, double ref) {
        std::printf(
            "{\"bench\":\"parallel_checkpoint\",\"ranks\":%d,\"what\":\"%s\",\"mib\":%.0f,"
            "\"seconds\":%.3f,\"gb_per_s\":%.2f,\"one_process_seconds\":%.3f,\"ratio\":%.2f}\n",
            size, what, bytes / (1 << 20), sec, bytes / sec / 1e9, ref, ref / sec);
      };
      line("save", save, serial_save);
      line("load+verify", load, serial_load);
      line("load (no verify)", load_noverify, serial_load);
    }
    // The other ranks wait here while rank 0 times the one-process writer (run with
    // OMPI_MCA_mpi_yield_when_idle=1 so that they do not spin on its cores).
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) fs::remove_all(dir);
  }
  return 0;
}
