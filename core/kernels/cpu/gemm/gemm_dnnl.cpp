// The oneDNN backend: dnnl_sgemm for f32; the matmul primitive for bf16 x bf16 -> f32.
//
// Thread safety. The primitives are cached and shared by every thread that calls a GEMM (the
// ranks of an in-process communicator, batched GEMMs split over threads). oneDNN's default,
// library-managed scratchpad does not allow that: Debian builds oneDNN without
// DNNL_ENABLE_CONCURRENT_EXEC, and then one scratchpad serves all primitives of a thread and a
// primitive "should be executed in the same thread it was created in" (dnnl_types.h,
// dnnl_scratchpad_mode_library); with the option on, the same primitive still "cannot be run
// concurrently from two different threads". Two threads executing one cached bf16 matmul then
// write each other's partial sums: the tensor-parallel bf16 decoder on an AVX512-BF16 host gave
// gradients with cosine 0.85 (and -0.03 tied) against one process. So every primitive is made
// with a user-managed scratchpad, and each execution brings its own from the caching allocator
// (oneDNN: thread-safe "as long as the scratchpad buffers are not used concurrently").
#include <dnnl.h>

#include <dnnl.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>

#include "core/error.h"
#include "core/kernels/cpu/gemm/gemm_backends.h"
#include "core/runtime.h"

namespace strata::gemm::detail {
namespace {

using dnnl::memory;

// Everything a matmul primitive is specialised on. alpha and beta are baked in: oneDNN 2.6
// accepts a run-time output scale but not a run-time sum scale, and training calls GEMMs with
// a handful of (alpha, beta) pairs.
using ShapeKey =
    std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, float, float>;

// A primitive, or none when oneDNN would run a reference (unvectorised) implementation.
struct CachedMatmul {
  std::shared_ptr<const dnnl::matmul> prim;
  memory::desc a_md, b_md, c_md, scratch_md;
  std::string impl;  // oneDNN's name for the implementation, for logs
};

class MatmulCache {
 public:
  const dnnl::engine& engine() const { return engine_; }

  // Creating a primitive (descriptor, JIT) costs far more than a small GEMM, so each shape is
  // made once; the mutex makes concurrent callers (batched GEMMs in threads) safe.
  // Returns a copy (a shared handle) so an entry evicted by another thread stays alive.
  CachedMatmul get(const ShapeKey& key) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
    // Shapes vary little in training; the bound keeps a pathological caller from growing it
    // without limit.
    if (cache_.size() >= kMaxEntries) cache_.clear();
    return cache_.emplace(key, make(key)).first->second;
  }

 private:
  static constexpr size_t kMaxEntries = 512;

  // An optimised implementation, or an entry without a primitive.
  CachedMatmul make(const ShapeKey& key) const {
    const auto [ta, tb, m, n, k, lda, ldb, ldc, alpha, beta] = key;
    CachedMatmul out;
    out.a_md = memory::desc({m, k}, memory::data_type::bf16,
                            ta ? memory::dims{1, lda} : memory::dims{lda, 1});
    out.b_md = memory::desc({k, n}, memory::data_type::bf16,
                            tb ? memory::dims{1, ldb} : memory::dims{ldb, 1});
    out.c_md = memory::desc({m, n}, memory::data_type::f32, memory::dims{ldc, 1});
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
    if (beta != 0.0f) {
      dnnl::post_ops ops;
      ops.append_sum(beta);
      attr.set_post_ops(ops);
    }
    try {
      const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(out.a_md, out.b_md, out.c_md), attr,
                                            engine_);
      // On CPUs without AVX512-BF16 (or AVX512 emulation) oneDNN 2.6 answers bf16 matmul with
      // "ref:any", orders of magnitude slower than converting and running an f32 GEMM.
      const std::string impl = pd.impl_info_str();
      if (impl.find("ref") == std::string::npos) {
        out.prim = std::make_shared<const dnnl::matmul>(pd);
        out.scratch_md = pd.scratchpad_desc();
        out.impl = impl;
      }
    } catch (const dnnl::error&) {
      // unimplemented for this shape/attribute combination: leave prim empty
    }
    return out;
  }

  dnnl::engine engine_{dnnl::engine::kind::cpu, 0};
  std::mutex mutex_;
  std::map<ShapeKey, CachedMatmul> cache_;
};

MatmulCache& matmul_cache() {
  static MatmulCache cache;  // a cache of immutable primitives, not program state
  return cache;
}

}  // namespace

const std::string& dnnl_bf16_impl() {
  // A training-sized problem (256 x 256 x 256, plain layouts) stands for every shape: oneDNN
  // picks its bf16 implementation by ISA, and answers every shape with a reference one on CPUs
  // without bf16 support.
  static const std::string impl =
      matmul_cache().get(ShapeKey{false, false, 256, 256, 256, 256, 256, 256, 1.0f, 0.0f}).impl;
  return impl;
}

void dnnl_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  const dnnl_status_t st =
      ::dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  STRATA_CHECK(st == dnnl_success, "sgemm: oneDNN dnnl_sgemm failed with status ", int(st),
               " for m = ", m, ", n = ", n, ", k = ", k);
}

bool dnnl_bf16gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const bf16* a,
                   int64_t lda, const bf16* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  MatmulCache& cache = matmul_cache();
  const ShapeKey key{ta, tb, m, n, k, lda, ldb, ldc, alpha, beta};
  const CachedMatmul entry = cache.get(key);
  if (!entry.prim) return false;
  const dnnl::engine& eng = cache.engine();
  dnnl::stream stream(eng);
  // oneDNN's memory API takes non-const handles; the primitive only reads src and weights.
  memory am(entry.a_md, eng, const_cast<bf16*>(a));
  memory bm(entry.b_md, eng, const_cast<bf16*>(b));
  memory cm(entry.c_md, eng, c);
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}};
  // This execution's own scratchpad (see the top of the file); the caching allocator makes the
  // per-call allocation a free-list lookup.
  const DataPtr scratch(&Runtime::get().allocator(Device::cpu()), entry.scratch_md.get_size());
  if (scratch.get() != nullptr)
    args.emplace(DNNL_ARG_SCRATCHPAD, memory(entry.scratch_md, eng, scratch.get()));
  entry.prim->execute(stream, args);
  stream.wait();
  return true;
}

}  // namespace strata::gemm::detail
