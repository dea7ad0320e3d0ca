"""Holds a PyTorch reference to the thread count it is asked for. Import before torch.

torch.set_num_threads sizes torch's own OpenMP pool, but a BLAS that torch calls may keep its own
threads: Debian's torch 1.13 multiplies through OpenBLAS's pthreads pool, which starts with one
thread per core whatever torch is told, so its "1 thread" runs used both cores here (process CPU
time twice the wall time). The pools read these variables when the libraries load, hence before
torch is imported."""
import os
import sys


def pin_threads_from_argv(argv=None):
    argv = sys.argv if argv is None else argv
    threads = "1"
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            threads = argv[i + 1]
        elif arg.startswith("--threads="):
            threads = arg.split("=", 1)[1]
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = threads
    return int(threads)
