#pragma once
// The op registry, the one list of Strata's differentiable ops: one or more cases per op, each a
// recipe for inputs and a function of them. Tests walk it (f64 finite-difference gradient checks),
// the CUDA suite walks it (device vs CPU), and bench/ops_bench.cpp times it. autograd::record
// refuses an op name the registry does not hold, so a new op cannot ship without a case.
//
// Ops outside core register themselves as a family, from the file that implements them (an
// OpFamilyRegistration at namespace scope there): parallel/ registers its tensor-parallel
// mappings, whose cases need a process group and are checked under mpirun in tests/parallel.
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"

namespace strata {

// A case at a size worth timing: the shape bench/torch_ops_reference.py runs the same op at, so
// the two print comparable lines. Inputs are f32 leaves (those that take a gradient require it).
struct OpBench {
  std::string name;  // the reference script's name for it
  Shape shape;       // reported with the timing
  std::function<std::vector<Tensor>()> make_inputs;
};

struct OpCase {
  std::string label;  // "op/variant"
  // Builds the inputs in `dtype` for `seed`: floating inputs that should be checked require grad.
  std::function<std::vector<Tensor>(DType dtype, uint64_t seed)> make_inputs;
  std::function<Tensor(const std::vector<Tensor>&)> fn;
  // Finite-difference step and tolerance for the f64 check; ops that round internally (dtype
  // casts) need a coarser step.
  double step = 1e-6;
  double tolerance = 1e-6;
  std::optional<OpBench> bench;  // set for the cases bench/ops_bench.cpp races PyTorch on
};

// core's ops: every one of them has a case here.
const std::vector<OpCase>& op_cases();
std::vector<std::string> core_op_names();

// A family of ops that lives outside core. Registering a name twice, or a name core holds, throws.
void register_op_family(std::string_view family, std::vector<std::string> names);
// The names of a registered family (empty when none is linked in).
std::vector<std::string> op_family(std::string_view family);
inline constexpr std::string_view kTensorParallelOps = "tensor_parallel";

struct OpFamilyRegistration {
  OpFamilyRegistration(std::string_view family, std::vector<std::string> names) {
    register_op_family(family, std::move(names));
  }
};

// Every name autograd::record accepts: core's and the registered families'.
std::vector<std::string> differentiable_op_names();
bool is_registered_op(const std::string& name);

}  // namespace strata
