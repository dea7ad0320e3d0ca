#pragma once
// Choosing and describing the device a run trains on (core/device.h is the Device value itself).
// In a build without CUDA they report no GPU and reject a CUDA device with an error naming the
// build flag.
#include <string>

#include "core/device.h"
#include "core/dtype.h"

namespace strata {

// Whether this build has the CUDA backend (-DSTRATA_CUDA=ON). The GPUs visible to the process
// are Runtime::get().cuda_device_count().
bool cuda_built();

// "cpu", "cuda" or "cuda:N". Plain "cuda" is GPU local_rank % count, so the ranks of an mpirun
// job on one node take one GPU each. Throws naming `what` (the option) for an unknown name, a
// build without CUDA (rebuild with -DSTRATA_CUDA=ON), no visible GPU, or an index out of range.
Device resolve_device(const std::string& spec, const std::string& what = "run.device",
                      int local_rank = 0);

// "cpu" or the GPU's name as the driver reports it ("NVIDIA H100 80GB HBM3").
std::string device_name(Device device);

// The nominal dense peak of `device` for matrix products computing in `compute`, in TFLOP/s,
// from a small table by device name: bf16 tensor cores, and for f32 the TF32 tensor-core figure
// (the ceiling of an f32 GEMM on these GPUs; an f32 run that does not use TF32 reads lower):
// H100 SXM and H200 989 / 494, H100 NVL 835 / 418, H100 PCIe 756 / 378, A100 312 / 156. 0 when
// unknown (another GPU, f64, or the CPU, whose peak the trainer measures instead).
double nominal_peak_tflops(Device device, DType compute);

// Waits for the work queued on `device` (nothing to wait for on the CPU); for timing.
void synchronize(Device device);

}  // namespace strata
