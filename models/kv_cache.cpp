#include "models/kv_cache.h"

#include "core/autograd/grad_mode.h"
#include "core/error.h"
#include "core/ops.h"

namespace strata::models {

DenseKVCache::DenseKVCache(int64_t batch, int64_t kv_heads, int64_t head_dim, int64_t capacity,
                           DType dtype)
    : batch_(batch), heads_(kv_heads), head_dim_(head_dim), capacity_(capacity) {
  STRATA_CHECK(batch > 0 && kv_heads > 0 && head_dim > 0 && capacity > 0,
               "DenseKVCache: sizes must be positive, got batch ", batch, ", kv_heads ", kv_heads,
               ", head_dim ", head_dim, ", capacity ", capacity);
  k_ = zeros({batch, kv_heads, capacity, head_dim}, dtype);
  v_ = zeros({batch, kv_heads, capacity, head_dim}, dtype);
}

void DenseKVCache::append(const Tensor& k, const Tensor& v) {
  const Shape want{batch_, heads_, k.dim() == 4 ? k.size(2) : -1, head_dim_};
  STRATA_CHECK(k.dim() == 4 && k.shape() == want && v.shape() == k.shape(),
               "DenseKVCache::append: expected k and v [", batch_, ", ", heads_, ", t, ", head_dim_,
               "], got ", shape_str(k.shape()), " and ", shape_str(v.shape()));
  const int64_t t = k.size(2);
  STRATA_CHECK(length_ + t <= capacity_, "DenseKVCache::append: ", length_, " + ", t,
               " positions exceed the capacity ", capacity_);
  NoGradGuard guard;
  k_.narrow(2, length_, t).copy_(k.detach().to(k_.dtype()));
  v_.narrow(2, length_, t).copy_(v.detach().to(v_.dtype()));
  length_ += t;
}

Tensor DenseKVCache::keys() const {
  return k_.narrow(2, 0, length_);
}
Tensor DenseKVCache::values() const {
  return v_.narrow(2, 0, length_);
}

}  // namespace strata::models
