#pragma once
// Checks and shape arithmetic shared by the Communicator implementations, so that a bad tensor
// gets the same error from every transport (and from a one-process LocalCommunicator).
#include <string_view>

#include "core/tensor.h"

namespace strata::parallel {

// Which memory a transport reaches: MPI carries CPU tensors, NCCL CUDA tensors, and a
// one-process group (LocalCommunicator) moves nothing, so it takes either.
enum class CommTransport { Mpi, Nccl, Local };

// Throws strata::Error naming the call unless t is a defined tensor on the transport's device
// kind, of a dtype collectives carry (f32, f64, bf16, i32, i64; b8 too when `moves_only`: no
// arithmetic) and, when `in_place`, contiguous.
void check_comm_tensor(const Tensor& t, std::string_view op, std::string_view what, bool in_place,
                       bool moves_only, CommTransport transport = CommTransport::Mpi);
// Normalises a possibly negative dim of t and checks its range.
int64_t comm_dim(const Tensor& t, int64_t dim, std::string_view op, std::string_view what);
// reduce_scatter's divisibility rule: t.size(dim) % group_size == 0.
void check_scatter_dim(const Tensor& t, int64_t dim, int group_size, std::string_view what);

}  // namespace strata::parallel
