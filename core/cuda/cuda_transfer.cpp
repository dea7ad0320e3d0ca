#include "core/cuda/cuda_transfer.h"

#include "core/backend.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_context.h"
#include "core/cuda/pinned_allocator.h"

namespace strata::cuda {

namespace {

// Both contiguous, same dtype and size; devices differ.
void copy_bytes(const Tensor& s, const Tensor& d) {
  const size_t n = size_t(s.numel()) * s.element_size();
  const void* sp = s.raw_data();
  void* dp = d.raw_data();
  if (s.device().is_cpu()) {
    const int dev = d.device().index;
    const cudaStream_t st = stream(dev);
    DeviceGuard guard(dev);
    STRATA_CUDA_CHECK(cudaMemcpyAsync(dp, sp, n, cudaMemcpyHostToDevice, st));
    Allocator* alloc = s.storage().allocator();
    if (alloc != nullptr && alloc->is_pinned()) {
      static_cast<CachingPinnedAllocator*>(alloc)->record_stream(s.storage().data(), dev, st);
    } else {
      STRATA_CUDA_CHECK(cudaStreamSynchronize(st));  // pageable source: see the header
    }
  } else if (d.device().is_cpu()) {
    const int dev = s.device().index;
    const cudaStream_t st = stream(dev);
    DeviceGuard guard(dev);
    STRATA_CUDA_CHECK(cudaMemcpyAsync(dp, sp, n, cudaMemcpyDeviceToHost, st));
    STRATA_CUDA_CHECK(cudaStreamSynchronize(st));  // the host reads dst next
  } else {
    const int sdev = s.device().index, ddev = d.device().index;
    const cudaStream_t sst = stream(sdev), dst_stream = stream(ddev);
    cudaEvent_t ready, done;
    {
      DeviceGuard guard(sdev);
      STRATA_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
      STRATA_CUDA_CHECK(cudaEventRecord(ready, sst));
    }
    {
      DeviceGuard guard(ddev);
      STRATA_CUDA_CHECK(cudaStreamWaitEvent(dst_stream, ready, 0));
      STRATA_CUDA_CHECK(cudaMemcpyPeerAsync(dp, ddev, sp, sdev, n, dst_stream));
      STRATA_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
      STRATA_CUDA_CHECK(cudaEventRecord(done, dst_stream));
    }
    {
      DeviceGuard guard(sdev);
      STRATA_CUDA_CHECK(cudaStreamWaitEvent(sst, done, 0));
    }
    // Destroying a recorded event is safe: CUDA releases it once it has completed.
    STRATA_CUDA_CHECK(cudaEventDestroy(ready));
    STRATA_CUDA_CHECK(cudaEventDestroy(done));
  }
}

}  // namespace

void copy_between(const Tensor& src, const Tensor& dst) {
  STRATA_CHECK(src.shape() == dst.shape(), "copy: source ", shape_str(src.shape()),
               " and destination ", shape_str(dst.shape()), " differ");
  STRATA_CHECK(src.device() != dst.device() && (!src.device().is_cpu() || !dst.device().is_cpu()),
               "copy_between: expected tensors on two devices, one of them a GPU; got ",
               src.device().str(), " and ", dst.device().str());
  if (src.numel() == 0) return;
  // Source side: contiguous, in dst's dtype (the conversion runs where the data is).
  Tensor s = src;
  if (src.dtype() != dst.dtype() || !src.is_contiguous()) {
    s = Tensor::empty(src.shape(), dst.dtype(), src.device());
    backend_for(src.device()).copy(src, s);
  }
  // Destination side: straight into dst when its layout allows, else through a contiguous buffer.
  Tensor d = dst.is_contiguous() ? dst : Tensor::empty(dst.shape(), dst.dtype(), dst.device());
  copy_bytes(s, d);
  if (!d.is_same(dst)) backend_for(dst.device()).copy(d, dst);
}

}  // namespace strata::cuda
