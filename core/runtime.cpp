#include "core/runtime.h"

#include <cblas.h>
#include <omp.h>

#include <unistd.h>

#include <cstdlib>
#include <sstream>

#include "core/cpu_features.h"
#include "core/error.h"

namespace strata {

Runtime& Runtime::get() {
  static Runtime runtime;
  return runtime;
}

Runtime::Runtime() {
  set_num_threads(omp_get_max_threads());
}

void Runtime::set_num_threads(int n) {
  STRATA_CHECK(n >= 1, "set_num_threads: need at least one thread, got ", n);
  num_threads_ = n;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

void Runtime::set_gemm_kernel(gemm::Kernel k) {
  STRATA_CHECK(gemm::kernel_available(k), "GEMM kernel '", gemm::kernel_name(k),
               "' cannot run on this CPU (", cpu_features_string(), ")");
  gemm_kernel_ = k;
}

Allocator& Runtime::allocator(Device d) {
  STRATA_CHECK(d.is_cpu(), "no allocator for ", d.str(), " in this build");
  return cpu_allocator_;
}

std::string Runtime::describe() const {
  std::ostringstream os;
  os << "threads=" << num_threads_ << " gemm=" << gemm::kernel_name(gemm::resolve(gemm_kernel_))
     << " cpu=" << cpu_features_string();
  return os.str();
}

void prefer_passive_omp_wait(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  setenv("OMP_WAIT_POLICY", "passive", 1);
  execv("/proc/self/exe", argv);
  // exec failed (no /proc, say): carry on with the policy libgomp already chose.
}

}  // namespace strata
