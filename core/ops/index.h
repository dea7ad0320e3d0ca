#pragma once
// Indexing ops. Index tensors are integer (i32 or i64); an index out of range is an error naming
// the op, the offending index and the valid range.
#include "core/tensor.h"

namespace strata {

// Rows of x along `dim` picked by a 1-D index.
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// out[i][j] = x[index[i][j]][j] (dim 0), as torch.gather; index has x's rank.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
// x + scatter of src into positions index along dim (duplicates add up), as torch.scatter_add.
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
// weight[ids] : [*ids.shape, D] for weight [V, D].
Tensor embedding(const Tensor& weight, const Tensor& ids);

}  // namespace strata
