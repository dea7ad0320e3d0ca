#pragma once
// The op registry: one or more cases per differentiable op, each a recipe for inputs and a
// function of them. Tests walk it (f64 finite-difference gradient checks), the CUDA suite walks it
// (device vs CPU), and bench/ can time it. autograd::record refuses an op name that is not listed
// in differentiable_op_names(), so a new op cannot ship without a case here.
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace strata {

struct OpCase {
  std::string label;  // "op/variant"
  // Builds the inputs in `dtype` for `seed`: floating inputs that should be checked require grad.
  std::function<std::vector<Tensor>(DType dtype, uint64_t seed)> make_inputs;
  std::function<Tensor(const std::vector<Tensor>&)> fn;
  // Finite-difference step and tolerance for the f64 check; ops that round internally (dtype
  // casts) need a coarser step.
  double step = 1e-6;
  double tolerance = 1e-6;
};

const std::vector<OpCase>& op_cases();

// Every name autograd::record accepts.
const std::vector<std::string>& differentiable_op_names();
// The subset that communicates over a tensor-parallel group (parallel/tp_*.h). Their cases need a
// communicator, so they are not in op_cases(): their f64 gradient checks run under mpirun in
// tests/parallel, whose registry test requires one for each of these names.
const std::vector<std::string>& communication_op_names();
bool is_registered_op(const std::string& name);

}  // namespace strata
