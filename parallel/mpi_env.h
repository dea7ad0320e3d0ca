#pragma once
// The MPI environment of one process, as an RAII object: construct it first thing in main (the
// `strata` command, each MPI test binary), destroy it last. It asks for MPI_THREAD_MULTIPLE
// because the communicators' timeout watchdog calls MPI from its own thread.
#include <shared_mutex>

namespace strata::parallel {

class MpiEnv {
 public:
  // MPI_Init_thread unless MPI is already initialised (then this object leaves it alone, and
  // does not finalise it either). Throws strata::Error if MPI cannot give MPI_THREAD_MULTIPLE.
  MpiEnv(int& argc, char**& argv);
  ~MpiEnv();
  MpiEnv(const MpiEnv&) = delete;
  MpiEnv& operator=(const MpiEnv&) = delete;

  int world_rank() const;
  int world_size() const;

  // MPI_Init has run and MPI_Finalize has not.
  static bool active();

  // Held by a background thread around its MPI calls. MPI_Finalize (in ~MpiEnv) waits until no
  // Use is held, and a Use taken once finalisation has begun is false: a communicator that
  // outlives MpiEnv (a function-local static, say) must not have its watchdog thread call
  // MPI_Test while or after MPI finalises, which crashed processes at exit.
  class Use {
   public:
    Use();
    explicit operator bool() const { return ok_; }

   private:
    std::shared_lock<std::shared_mutex> lock_;
    bool ok_ = false;
  };
  // The process was started by a launcher (mpirun, srun) that expects it to join a job; without
  // one, a program may skip MPI entirely and use Topology::single().
  static bool launched_by_mpi();

 private:
  bool owns_ = false;
};

}  // namespace strata::parallel
