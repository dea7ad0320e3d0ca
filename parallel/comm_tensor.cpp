#include "parallel/comm_tensor.h"

#include "core/error.h"

namespace strata::parallel {

void check_comm_tensor(const Tensor& t, std::string_view op, std::string_view what, bool in_place,
                       bool moves_only, CommTransport transport) {
  STRATA_CHECK(t.defined(), op, " '", what, "': got an undefined tensor");
  STRATA_CHECK(transport != CommTransport::Mpi || t.device().is_cpu(), op, " '", what,
               "': the MPI communicator carries CPU tensors, got one on ", t.device().str(),
               "; for CUDA tensors build the groups with NCCL (Topology::create(layout, "
               "CommBackend::Nccl)), or copy the tensor to the CPU first");
  STRATA_CHECK(transport != CommTransport::Nccl || !t.device().is_cpu(), op, " '", what,
               "': the NCCL communicator carries CUDA tensors, got one on cpu; move it to this "
               "rank's GPU (Topology::device()) first, or pass CPU tensors to a group of "
               "Topology::create(layout, CommBackend::Nccl), which sends them over MPI");
  const DType d = t.dtype();
  const bool ok = d == DType::f32 || d == DType::f64 || d == DType::bf16 || d == DType::i32 ||
                  d == DType::i64 || (moves_only && d == DType::b8);
  STRATA_CHECK(ok, op, " '", what, "': dtype ", dtype_name(d),
               " is not supported (f32, f64, bf16, i32, i64", moves_only ? ", b8" : "", ")");
  STRATA_CHECK(!in_place || t.is_contiguous(), op, " '", what,
               "': the tensor is written in place and must be contiguous (call .contiguous() "
               "first and copy the result back)");
}

int64_t comm_dim(const Tensor& t, int64_t dim, std::string_view op, std::string_view what) {
  const int64_t n = t.dim();
  const int64_t d = dim < 0 ? dim + n : dim;
  STRATA_CHECK(d >= 0 && d < n, op, " '", what, "': dim ", dim, " is out of range for a tensor of ",
               n, " dimensions");
  return d;
}

void check_scatter_dim(const Tensor& t, int64_t dim, int group_size, std::string_view what) {
  STRATA_CHECK(t.size(dim) % group_size == 0, "reduce_scatter '", what, "': size ", t.size(dim),
               " of dim ", dim, " is not divisible by the group size ", group_size);
}

}  // namespace strata::parallel
