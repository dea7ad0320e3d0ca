// A program that misbehaves on purpose under mpirun, for watchdog_test.sh: one rank stalls,
// stops itself, dies, or never sends, while the others wait in a collective (or a receive) with a
// 1 s timeout. The others must end the job with a message naming the call; nobody may hang.
//   watchdog_probe stall|stop|kill|kill_mid|recv
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "core/ops.h"
#include "parallel/mpi_communicator.h"
#include "parallel/mpi_env.h"

using namespace strata;
using namespace strata::parallel;

int main(int argc, char** argv) {
  MpiEnv env(argc, argv);
  const std::string mode = argc > 1 ? argv[1] : "";
  const int rank = env.world_rank();
  {
    auto comm = MpiCommunicator::world("world");
    comm->set_timeout(std::chrono::seconds(1));
    Tensor t = ones({4});
    comm->all_reduce(t, parallel::ReduceOp::Sum, "test.warmup");
    comm->all_reduce(t, parallel::ReduceOp::Sum, "test.warmup");
    if (mode == "stall") {
      if (rank == 1) std::this_thread::sleep_for(std::chrono::seconds(20));
      comm->all_reduce(t, parallel::ReduceOp::Sum, "test.stalled");
    } else if (mode == "stop") {
      if (rank == 1) raise(SIGSTOP);
      comm->all_reduce(t, parallel::ReduceOp::Sum, "test.stopped");
    } else if (mode == "kill") {
      if (rank == 1) raise(SIGKILL);
      comm->all_reduce(t, parallel::ReduceOp::Sum, "test.killed");
    } else if (mode == "kill_mid") {
      // 64 MiB: the other ranks are inside the exchange when this one dies after posting its part.
      Tensor big = ones({16 << 20});
      auto work = comm->all_reduce_async(big, parallel::ReduceOp::Sum, "test.killed_mid");
      if (rank == 1) {
        for (int i = 0; i < 3; ++i) work->done();  // let some of the exchange happen
        raise(SIGKILL);
      }
      work->wait();
    } else if (mode == "recv") {
      if (rank == 0) {
        Tensor in = empty({4});
        comm->recv(in, 1, "test.activation");
      } else {
        std::this_thread::sleep_for(std::chrono::seconds(20));
      }
    } else {
      std::fprintf(stderr, "watchdog_probe: unknown mode '%s'\n", mode.c_str());
      return 2;
    }
  }
  std::printf("watchdog_probe: rank %d finished mode %s without a timeout\n", rank, mode.c_str());
  return 0;
}
