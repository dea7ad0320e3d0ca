#include "core/ops/shape.h"

#include <numeric>

#include "core/autograd/node.h"
#include "core/backend.h"
#include "core/ops/factory.h"
#include "core/ops/reduce.h"

namespace strata {

namespace {

// Resolves one -1 entry against numel.
Shape infer_shape(const Shape& shape, int64_t n, const char* op) {
  Shape out = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      STRATA_CHECK(infer < 0, op, ": more than one -1 in ", shape_str(shape));
      infer = int64_t(i);
    } else {
      STRATA_CHECK(out[i] >= 0, op, ": negative size in ", shape_str(shape));
      known *= out[i];
    }
  }
  if (infer >= 0) {
    STRATA_CHECK(known > 0 && n % known == 0, op, ": cannot infer -1 in ", shape_str(shape),
                 " for ", n, " elements");
    out[infer] = n / known;
  }
  STRATA_CHECK(numel(out) == n, op, ": shape ", shape_str(shape), " has ", numel(out),
               " elements but the tensor has ", n);
  return out;
}

// Strides for viewing x as `shape` without a copy, if its layout allows it. Old dims are
// grouped into chunks that are contiguous among themselves; each chunk must be covered exactly by
// a run of new dims, which then take strides inside the chunk.
bool view_strides(const Tensor& x, const Shape& shape, Shape& strides) {
  strides.assign(shape.size(), 1);
  if (x.is_contiguous() || x.numel() == 0) {
    strides = contiguous_strides(shape);
    return true;
  }
  const Shape& os = x.shape();
  const Shape& ost = x.strides();
  int64_t view_d = int64_t(shape.size()) - 1;
  int64_t chunk_base = ost.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = int64_t(os.size()) - 1; d >= 0; --d) {
    tensor_numel *= os[d];
    const bool chunk_ends = d == 0 || (os[d - 1] != 1 && ost[d - 1] != tensor_numel * chunk_base);
    if (!chunk_ends) continue;
    while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
      strides[view_d] = view_numel * chunk_base;
      view_numel *= shape[view_d];
      --view_d;
    }
    if (view_numel != tensor_numel) return false;
    if (d > 0) {
      chunk_base = ost[d - 1];
      tensor_numel = 1;
      view_numel = 1;
    }
  }
  return view_d == -1;
}

void record_reshape_like(const char* op, const Tensor& x, Tensor& out) {
  const Shape in_shape = x.shape();
  autograd::record(op, {x}, {&out}, {},
                   [in_shape](const std::vector<Tensor>& g, const std::vector<Tensor>&,
                              const std::vector<bool>&) -> std::vector<Tensor> {
                     return {reshape(g[0], in_shape)};
                   });
}

}  // namespace

Tensor broadcast_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  const int64_t n = int64_t(shape.size()), r = x.dim();
  STRATA_CHECK(r <= n, "expand: cannot expand ", shape_str(x.shape()), " to fewer dims ",
               shape_str(shape));
  Shape strides(n, 0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t xi = i - (n - r);
    if (xi < 0) continue;
    if (x.shape()[xi] == shape[i]) {
      strides[i] = x.strides()[xi];
    } else {
      STRATA_CHECK(x.shape()[xi] == 1, "expand: dim ", i, " of ", shape_str(x.shape()),
                   " has size ", x.shape()[xi], " and cannot expand to ", shape[i]);
    }
  }
  return make_view(x, shape, strides, x.offset());
}

Tensor view(const Tensor& x, const Shape& shape) {
  const Shape s = infer_shape(shape, x.numel(), "view");
  Shape strides;
  STRATA_CHECK(view_strides(x, s, strides), "view: tensor of shape ", shape_str(x.shape()),
               " with strides ", shape_str(x.strides()), " cannot be viewed as ", shape_str(s),
               " without a copy; use reshape()");
  Tensor out = make_view(x, s, strides, x.offset());
  record_reshape_like("view", x, out);
  return out;
}

Tensor reshape(const Tensor& x, const Shape& shape) {
  const Shape s = infer_shape(shape, x.numel(), "reshape");
  Shape strides;
  if (view_strides(x, s, strides)) {
    Tensor out = make_view(x, s, strides, x.offset());
    record_reshape_like("reshape", x, out);
    return out;
  }
  return view(contiguous(x), s);
}

Tensor transpose(const Tensor& x, int64_t d0, int64_t d1) {
  d0 = wrap_dim(d0, x.dim(), "transpose");
  d1 = wrap_dim(d1, x.dim(), "transpose");
  Shape shape = x.shape(), strides = x.strides();
  std::swap(shape[d0], shape[d1]);
  std::swap(strides[d0], strides[d1]);
  Tensor out = make_view(x, shape, strides, x.offset());
  autograd::record("transpose", {x}, {&out}, {},
                   [d0, d1](const std::vector<Tensor>& g, const std::vector<Tensor>&,
                            const std::vector<bool>&) -> std::vector<Tensor> {
                     return {transpose(g[0], d0, d1)};
                   });
  return out;
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  STRATA_CHECK(int64_t(dims.size()) == x.dim(), "permute: ", dims.size(),
               " dims given for a tensor of rank ", x.dim());
  std::vector<int64_t> d(dims.size()), inverse(dims.size());
  std::vector<bool> used(dims.size());
  Shape shape(dims.size()), strides(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) {
    d[i] = wrap_dim(dims[i], x.dim(), "permute");
    STRATA_CHECK(!used[d[i]], "permute: dim ", d[i], " appears twice in ", shape_str(dims));
    used[d[i]] = true;
    shape[i] = x.shape()[d[i]];
    strides[i] = x.strides()[d[i]];
    inverse[d[i]] = int64_t(i);
  }
  Tensor out = make_view(x, shape, strides, x.offset());
  autograd::record("permute", {x}, {&out}, {},
                   [inverse](const std::vector<Tensor>& g, const std::vector<Tensor>&,
                             const std::vector<bool>&) -> std::vector<Tensor> {
                     return {permute(g[0], inverse)};
                   });
  return out;
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  dim = wrap_dim(dim, x.dim(), "narrow");
  const int64_t n = x.shape()[dim];
  if (start < 0) start += n;
  STRATA_CHECK(start >= 0 && length >= 0 && start + length <= n, "narrow: range [", start, ", ",
               start + length, ") is outside dim ", dim, " of size ", n, " (shape ",
               shape_str(x.shape()), ")");
  Shape shape = x.shape();
  shape[dim] = length;
  Tensor out = make_view(x, shape, x.strides(), x.offset() + start * x.strides()[dim]);
  const Shape in_shape = x.shape();
  autograd::record(
      "narrow", {x}, {&out}, {},
      [in_shape, dim, start, length](const std::vector<Tensor>& g, const std::vector<Tensor>&,
                                     const std::vector<bool>&) -> std::vector<Tensor> {
        Tensor gx = zeros(in_shape, g[0].dtype(), g[0].device());
        gx.narrow(dim, start, length).copy_(g[0]);
        return {gx};
      });
  return out;
}

Tensor select(const Tensor& x, int64_t dim, int64_t index) {
  dim = wrap_dim(dim, x.dim(), "select");
  return squeeze(narrow(x, dim, index, 1), dim);
}

Tensor expand(const Tensor& x, const Shape& shape) {
  Shape s = shape;
  const int64_t off = int64_t(s.size()) - x.dim();
  for (int64_t i = 0; i < int64_t(s.size()); ++i)
    if (s[i] == -1 && i >= off) s[i] = x.shape()[i - off];
  Tensor out = broadcast_to(x, s);
  if (out.is_same(x)) return x;
  const Shape in_shape = x.shape();
  autograd::record("expand", {x}, {&out}, {},
                   [in_shape](const std::vector<Tensor>& g, const std::vector<Tensor>&,
                              const std::vector<bool>&) -> std::vector<Tensor> {
                     return {sum_to(g[0], in_shape)};
                   });
  return out;
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  dim = wrap_dim(dim, x.dim(), "squeeze");
  STRATA_CHECK(x.shape()[dim] == 1, "squeeze: dim ", dim, " of ", shape_str(x.shape()),
               " has size ", x.shape()[dim], ", expected 1");
  Shape shape = x.shape(), strides = x.strides();
  shape.erase(shape.begin() + dim);
  strides.erase(strides.begin() + dim);
  Tensor out = make_view(x, shape, strides, x.offset());
  record_reshape_like("squeeze", x, out);
  return out;
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  dim = wrap_dim(dim, x.dim() + 1, "unsqueeze");
  Shape shape = x.shape(), strides = x.strides();
  const int64_t st = dim < x.dim() ? x.strides()[dim] * x.shape()[dim] : 1;
  shape.insert(shape.begin() + dim, 1);
  strides.insert(strides.begin() + dim, st);
  Tensor out = make_view(x, shape, strides, x.offset());
  record_reshape_like("unsqueeze", x, out);
  return out;
}

Tensor flatten(const Tensor& x, int64_t start, int64_t end) {
  if (x.dim() == 0) return reshape(x, {1});
  start = wrap_dim(start, x.dim(), "flatten");
  end = wrap_dim(end, x.dim(), "flatten");
  STRATA_CHECK(start <= end, "flatten: start dim ", start, " is after end dim ", end);
  Shape shape(x.shape().begin(), x.shape().begin() + start);
  int64_t n = 1;
  for (int64_t i = start; i <= end; ++i) n *= x.shape()[i];
  shape.push_back(n);
  shape.insert(shape.end(), x.shape().begin() + end + 1, x.shape().end());
  return reshape(x, shape);
}

Tensor clone(const Tensor& x) {
  Tensor out = empty(x.shape(), x.dtype(), x.device());
  backend_for(x.device()).copy(x, out);
  autograd::record("clone", {x}, {&out}, {},
                   [](const std::vector<Tensor>& g, const std::vector<Tensor>&,
                      const std::vector<bool>&) -> std::vector<Tensor> { return {g[0]}; });
  return out;
}

Tensor contiguous(const Tensor& x) {
  return x.is_contiguous() ? x : clone(x);
}

Tensor to_dtype(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  Tensor out = empty(x.shape(), dtype, x.device());
  backend_for(x.device()).copy(x, out);
  if (is_floating(dtype) && is_floating(x.dtype())) {
    const DType in = x.dtype();
    autograd::record(
        "to_dtype", {x}, {&out}, {},
        [in](const std::vector<Tensor>& g, const std::vector<Tensor>&,
             const std::vector<bool>&) -> std::vector<Tensor> { return {g[0].to(in)}; });
  }
  return out;
}

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  STRATA_CHECK(!xs.empty(), "cat: no tensors given");
  const Tensor& first = xs.front();
  dim = wrap_dim(dim, first.dim(), "cat");
  Shape shape = first.shape();
  shape[dim] = 0;
  std::vector<int64_t> sizes;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& t = xs[i];
    STRATA_CHECK(
        t.dim() == first.dim() && t.dtype() == first.dtype() && t.device() == first.device(),
        "cat: tensor ", i, " is ", shape_str(t.shape()), " ", dtype_name(t.dtype()), " on ",
        t.device().str(), "; tensor 0 is ", shape_str(first.shape()), " ",
        dtype_name(first.dtype()), " on ", first.device().str());
    for (int64_t d = 0; d < t.dim(); ++d)
      STRATA_CHECK(d == dim || t.shape()[d] == first.shape()[d], "cat: tensor ", i, " has shape ",
                   shape_str(t.shape()), ", expected ", shape_str(first.shape()), " except in dim ",
                   dim);
    shape[dim] += t.shape()[dim];
    sizes.push_back(t.shape()[dim]);
  }
  Tensor out = empty(shape, first.dtype(), first.device());
  int64_t off = 0;
  for (const Tensor& t : xs) {
    Shape part = shape;
    part[dim] = t.shape()[dim];
    backend_for(out.device())
        .copy(t, make_view(out, part, out.strides(), off * out.strides()[dim]));
    off += t.shape()[dim];
  }
  autograd::record("cat", xs, {&out}, {},
                   [sizes, dim](const std::vector<Tensor>& g, const std::vector<Tensor>&,
                                const std::vector<bool>& needs) -> std::vector<Tensor> {
                     std::vector<Tensor> gs(sizes.size());
                     int64_t o = 0;
                     for (size_t i = 0; i < sizes.size(); ++i) {
                       if (needs[i]) gs[i] = narrow(g[0], dim, o, sizes[i]);
                       o += sizes[i];
                     }
                     return gs;
                   });
  return out;
}

Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
  STRATA_CHECK(!xs.empty(), "stack: no tensors given");
  dim = wrap_dim(dim, xs.front().dim() + 1, "stack");
  std::vector<Tensor> parts;
  for (size_t i = 0; i < xs.size(); ++i) {
    STRATA_CHECK(xs[i].shape() == xs.front().shape(), "stack: tensor ", i, " has shape ",
                 shape_str(xs[i].shape()), ", tensor 0 has ", shape_str(xs.front().shape()));
    parts.push_back(unsqueeze(xs[i], dim));
  }
  return cat(parts, dim);
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  dim = wrap_dim(dim, x.dim(), "split");
  const int64_t total = std::accumulate(sizes.begin(), sizes.end(), int64_t(0));
  STRATA_CHECK(total == x.shape()[dim], "split: sizes ", shape_str(sizes), " sum to ", total,
               " but dim ", dim, " has size ", x.shape()[dim]);
  std::vector<Tensor> out;
  int64_t off = 0;
  for (int64_t s : sizes) {
    out.push_back(narrow(x, dim, off, s));
    off += s;
  }
  return out;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  dim = wrap_dim(dim, x.dim(), "chunk");
  STRATA_CHECK(chunks > 0, "chunk: chunks must be positive, got ", chunks);
  const int64_t n = x.shape()[dim], each = (n + chunks - 1) / chunks;
  std::vector<int64_t> sizes;
  for (int64_t off = 0; off < n; off += each) sizes.push_back(std::min(each, n - off));
  return split(x, sizes, dim);
}

}  // namespace strata
