#pragma once
// Global-norm gradient clipping, as torch.nn.utils.clip_grad_norm_ (norm_type 2).
#include <vector>

#include "core/tensor.h"

namespace strata::optim {

class Optimizer;

// L2 norm over the gradients of all `params` (undefined gradients are skipped), accumulated in
// f64 in a fixed order, so it does not depend on the thread count.
double grad_norm(const std::vector<Tensor>& params);

// Returns the pre-clip global norm. When it exceeds max_norm, every gradient is multiplied by
// max_norm / (norm + 1e-6) (PyTorch's coefficient, clamped to 1, so gradients within the bound
// are left untouched). A non-finite norm is returned with the gradients unchanged: the caller
// decides to stop (PyTorch would multiply them by NaN).
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);
double clip_grad_norm(const Optimizer& opt, double max_norm);

// Gradients on a GPU (all on one device) are reduced there in f64 in a fixed order (block
// partials, then one fixed tree: deterministic, no atomics), and the clip factor is computed and
// applied on the device. The functions above then read the norm back (one host sync); this one
// does not: it clips as clip_grad_norm when max_norm > 0 (else only measures, as grad_norm) and
// returns the pre-clip norm as a one-element f64 tensor on the gradients' device (on the CPU for
// CPU gradients, with exactly the value the functions above return).
Tensor clip_grad_norm_tensor(const std::vector<Tensor>& params, double max_norm);

}  // namespace strata::optim
