// The CUDA backend's memory, random, element-wise, reduction and indexing kernels against the CPU
// backend on the same inputs: every method, every dtype it takes, contiguous, strided (transposed,
// sliced) and broadcast (stride 0) operands. Results that are exact on both sides (copies,
// comparisons, IEEE + - * /, max/min, argmax, Philox uniforms and dropout masks, index ops and the
// accumulating index ops, whose CUDA order equals the CPU's) must match bit for bit; transcendental
// results within per-dtype tolerances.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/random/philox.h"
#include "tests/cuda/backend_compare_util.h"

namespace strata::cuda_test {
namespace {

const std::vector<DType> kFloat = {DType::f32, DType::f64, DType::bf16};
const std::vector<DType> kAll = {DType::f32, DType::f64, DType::bf16,
                                 DType::i32, DType::i64, DType::b8};

std::string name(DType t) {
  return std::string(dtype_name(t));
}

// Host values: floats uniform in [lo, hi], integers in [ilo, ihi], bools half true.
Tensor host_rand(const Shape& shape, DType dtype, uint64_t seed, double lo = -2, double hi = 2,
                 int64_t ilo = -20, int64_t ihi = 20) {
  Tensor t = Tensor::empty(shape, dtype);
  std::mt19937_64 gen(seed);
  dispatch_all(dtype, "host_rand", [&]<class T>() {
    T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) {
      if constexpr (std::is_same_v<T, bool>) {
        p[i] = (gen() & 1) != 0;
      } else if constexpr (std::is_integral_v<T>) {
        p[i] = T(ilo + int64_t(gen() % uint64_t(ihi - ilo + 1)));
      } else {
        const double u = double(gen() >> 11) * 0x1.0p-53;
        const double v = lo + (hi - lo) * u;
        if constexpr (std::is_same_v<T, bf16>)
          p[i] = bf16(float(v));
        else
          p[i] = T(v);
      }
    }
  });
  return t;
}

// An input of logical shape `shape` (3-D) laid out as `kind`, on the host and the GPU alike.
enum class Layout { Contiguous, Transposed, Sliced, Broadcast, Scalar };
const std::vector<Layout> kLayouts = {Layout::Contiguous, Layout::Transposed, Layout::Sliced,
                                      Layout::Broadcast, Layout::Scalar};

std::string name(Layout l) {
  switch (l) {
    case Layout::Contiguous:
      return "contiguous";
    case Layout::Transposed:
      return "transposed";
    case Layout::Sliced:
      return "sliced";
    case Layout::Broadcast:
      return "broadcast";
    case Layout::Scalar:
      return "scalar";
  }
  return "?";
}

struct Pair {
  Tensor host, dev;
};

Pair make_input(const Shape& s, DType dtype, Layout kind, uint64_t seed, double lo = -2,
                double hi = 2) {
  const int64_t a = s[0], b = s[1], c = s[2];
  Shape base_shape, strides;
  int64_t offset = 0;
  switch (kind) {
    case Layout::Contiguous:
      base_shape = {a, b, c};
      strides = {b * c, c, 1};
      break;
    case Layout::Transposed:  // a [c, b, a] buffer read as [a, b, c]
      base_shape = {c, b, a};
      strides = {1, a, a * b};
      break;
    case Layout::Sliced:  // every other element of a wider buffer, from element 1
      base_shape = {a, b, 2 * c + 1};
      strides = {b * (2 * c + 1), 2 * c + 1, 2};
      offset = 1;
      break;
    case Layout::Broadcast:  // [1, b, 1] expanded
      base_shape = {1, b, 1};
      strides = {0, 1, 0};
      break;
    case Layout::Scalar:
      base_shape = {1};
      strides = {0, 0, 0};
      break;
  }
  const Tensor base = host_rand(base_shape, dtype, seed, lo, hi);
  const Tensor hv = make_view(base, s, strides, offset);
  return {hv, same_view(upload(base), hv)};
}

// A contiguous host copy of any GPU tensor (strided ones go through a CUDA copy first).
Tensor fetch(const Tensor& dev) {
  if (dev.is_contiguous()) return download(dev);
  Tensor c = Tensor::empty(dev.shape(), dev.dtype(), gpu());
  gpu_backend().copy(dev, c);
  return download(c);
}

// Element-wise identity of two host tensors of one dtype: the same bits, except that any NaN
// meets any NaN (NaN payloads differ between x86 and CUDA).
void expect_same(const Tensor& got_host, const Tensor& want_host, const std::string& what) {
  ASSERT_EQ(got_host.dtype(), want_host.dtype()) << what;
  ASSERT_EQ(shape_str(got_host.shape()), shape_str(want_host.shape())) << what;
  const Tensor g = got_host.contiguous(), w = want_host.contiguous();
  int bad = 0;
  dispatch_all(g.dtype(), "expect_same", [&]<class T>() {
    const T* gp = g.data<T>();
    const T* wp = w.data<T>();
    for (int64_t i = 0; i < g.numel(); ++i) {
      bool ok;
      double gv, wv;
      if constexpr (std::is_same_v<T, bf16>) {
        gv = double(float(gp[i]));
        wv = double(float(wp[i]));
        ok = gp[i].bits == wp[i].bits || (std::isnan(gv) && std::isnan(wv));
      } else if constexpr (std::is_floating_point_v<T>) {
        gv = double(gp[i]);
        wv = double(wp[i]);
        ok = std::memcmp(&gp[i], &wp[i], sizeof(T)) == 0 || (std::isnan(gv) && std::isnan(wv));
      } else {
        gv = double(gp[i]);
        wv = double(wp[i]);
        ok = gp[i] == wp[i];
      }
      if (!ok && ++bad <= 5)
        ADD_FAILURE() << what << ": element " << i << " got " << gv << ", expected " << wv;
    }
  });
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << g.numel() << " elements differ";
}

Tensor host_empty(const Shape& s, DType t) {
  return Tensor::empty(s, t);
}
Tensor dev_empty(const Shape& s, DType t) {
  return Tensor::empty(s, t, gpu());
}

Tensor host_index(const std::vector<int64_t>& v, const Shape& s) {
  Tensor t = Tensor::empty(s, DType::i64);
  std::memcpy(t.raw_data(), v.data(), v.size() * sizeof(int64_t));
  return t;
}

const Shape kShape = {6, 7, 33};

// --- memory -------------------------------------------------------------------------------------

TEST(CudaMemory, CopyConvertsEveryDtypePairOverAnyLayout) {
  STRATA_SKIP_WITHOUT_GPU();
  for (DType from : kAll)
    for (DType to : kAll)
      for (Layout l : kLayouts) {
        // Values that every dtype holds without undefined conversions (no NaN into integers).
        const Pair src = make_input(kShape, from, l, 11, -100, 100);
        Tensor want = host_empty(kShape, to);
        cpu_backend().copy(src.host, want);
        Tensor got = dev_empty(kShape, to);
        gpu_backend().copy(src.dev, got);
        expect_same(download(got), want, "copy " + name(from) + "->" + name(to) + " " + name(l));
      }
}

TEST(CudaMemory, CopyIntoStridedDestination) {
  STRATA_SKIP_WITHOUT_GPU();
  for (DType t : {DType::f32, DType::bf16, DType::i64})
    for (Layout dl : {Layout::Transposed, Layout::Sliced}) {
      const Pair src = make_input(kShape, t, Layout::Contiguous, 3);
      const Pair dst = make_input(kShape, DType::f64, dl, 4);
      cpu_backend().copy(src.host, dst.host);
      gpu_backend().copy(src.dev, dst.dev);
      expect_same(fetch(dst.dev), dst.host.contiguous(), "strided dst " + name(t) + " " + name(dl));
    }
}

TEST(CudaMemory, CopySpecialFloatValues) {
  STRATA_SKIP_WITHOUT_GPU();
  const std::vector<double> v = {0.0,    -0.0, INFINITY,       -INFINITY,      NAN,  1e-40,
                                 3.4e38, 1e39, 1.0 + 0x1.0p-9, 1.0 + 0x1.8p-8, -2.5, 65504.0};
  const Tensor src = from_vector(v, {int64_t(v.size())});
  for (DType to : {DType::f32, DType::bf16, DType::b8}) {
    Tensor want = host_empty(src.shape(), to);
    cpu_backend().copy(src, want);
    Tensor got = dev_empty(src.shape(), to);
    gpu_backend().copy(upload(src), got);
    expect_same(download(got), want, "special f64->" + name(to));
  }
}

TEST(CudaMemory, CopyAcrossDevicesIsAnInternalError) {
  STRATA_SKIP_WITHOUT_GPU();
  const Tensor h = host_rand({4}, DType::f32, 1);
  Tensor d = dev_empty({4}, DType::f32);
  EXPECT_THROW(gpu_backend().copy(h, d), Error);
  EXPECT_THROW(gpu_backend().copy(d, host_empty({4}, DType::f32)), Error);
}

TEST(CudaMemory, FillEveryDtypeAndLayout) {
  STRATA_SKIP_WITHOUT_GPU();
  for (DType t : kAll)
    for (Layout l : {Layout::Contiguous, Layout::Transposed, Layout::Sliced})
      for (double value : {0.0, 1.5, -3.25, 1.0 + 0x1.8p-8}) {
        const Pair dst = make_input(kShape, t, l, 9);
        cpu_backend().fill(dst.host, value);
        gpu_backend().fill(dst.dev, value);
        expect_same(fetch(dst.dev), dst.host.contiguous(),
                    "fill " + name(t) + " " + name(l) + " " + std::to_string(value));
      }
}

std::vector<RandomKey> random_keys() {
  RandomKey a{1234, uint32_t(RngStream::Init), 0, 0};
  RandomKey b{~uint64_t(0) - 5, uint32_t(RngStream::Dropout), (uint64_t(3) << 32) | 17, 3};
  RandomKey c{42, 7, 9, 1000001};
  return {a, b, c};
}

TEST(CudaRandom, UniformIsBitIdenticalToCpu) {
  STRATA_SKIP_WITHOUT_GPU();
  for (DType t : kFloat)
    for (const RandomKey& key : random_keys())
      for (int64_t n : {int64_t(1), int64_t(7), int64_t(1001), int64_t(1) << 20}) {
        Tensor want = host_empty({n}, t);
        cpu_backend().uniform(want, key, -0.5, 2.0);
        Tensor got = dev_empty({n}, t);
        gpu_backend().uniform(got, key, -0.5, 2.0);
        expect_same(download(got), want,
                    "uniform " + name(t) + " n=" + std::to_string(n) + " offset " +
                        std::to_string(key.index_offset));
      }
}

// Box-Muller runs in f64 on both sides, but CUDA's log and cos are not glibc's (both within 2
// ulp of the exact value): f64 results agree to ~1e-15, and f32/bf16 results, rounded from those,
// are identical except where the f64 value sits within a few f64 ulp of a rounding boundary.
TEST(CudaRandom, NormalMatchesCpu) {
  STRATA_SKIP_WITHOUT_GPU();
  for (DType t : kFloat)
    for (const RandomKey& key : random_keys()) {
      const int64_t n = (int64_t(1) << 20) + 3;
      Tensor want = host_empty({n}, t);
      cpu_backend().normal(want, key, 0.25, 0.02);
      Tensor got = dev_empty({n}, t);
      gpu_backend().normal(got, key, 0.25, 0.02);
      const Tensor g = download(got);
      const std::string what = "normal " + name(t);
      const Tol tol = t == DType::f64   ? Tol{1e-14, 0}
                      : t == DType::f32 ? Tol{0x1.0p-22, 0}
                                        : Tol{0x1.0p-8, 0};
      expect_close(g, want, tol, what);
      // Nearly every element is identical.
      int64_t differ = 0;
      const auto gv = values(g), wv = values(want);
      for (size_t i = 0; i < gv.size(); ++i) differ += gv[i] != wv[i];
      if (t != DType::f64) {
        EXPECT_LE(differ, 8) << what;
      }
    }
}

// (row_first, row_stride): identity, and two data-parallel ranks' row sets.
const std::vector<std::pair<int64_t, int64_t>> kRowMaps = {{0, 1}, {1, 3}, {4, 2}};

TEST(CudaRandom, DropoutMasksAreBitIdenticalToCpu) {
  STRATA_SKIP_WITHOUT_GPU();
  const Shape s = {6, 7, 33};
  for (DType t : kFloat)
    for (double p : {0.1, 0.5})
      for (RandomKey key : random_keys())
        for (auto [first, stride] : kRowMaps) {
          key.row_first = first;
          key.row_stride = stride;
          const Pair x = make_input(s, t, Layout::Contiguous, 21);
          Tensor want = host_empty(s, t);
          cpu_backend().dropout(x.host, p, key, want);
          Tensor got = dev_empty(s, t);
          gpu_backend().dropout(x.dev, p, key, got);
          expect_same(download(got), want,
                      "dropout " + name(t) + " p=" + std::to_string(p) + " rows " +
                          std::to_string(first) + "/" + std::to_string(stride));
        }
}

// --- element-wise -------------------------------------------------------------------------------

const std::vector<UnaryOp> kUnaryOps = {
    UnaryOp::Neg,        UnaryOp::Exp,      UnaryOp::Log,     UnaryOp::Sqrt,
    UnaryOp::Rsqrt,      UnaryOp::Tanh,     UnaryOp::Sigmoid, UnaryOp::Relu,
    UnaryOp::GeluExact,  UnaryOp::GeluTanh, UnaryOp::Silu,    UnaryOp::Abs,
    UnaryOp::LogSigmoid, UnaryOp::Pow,      UnaryOp::Clamp,   UnaryOp::Affine,
    UnaryOp::Reciprocal, UnaryOp::Sin,      UnaryOp::Cos,     UnaryOp::Square};

bool positive_domain(UnaryOp op) {
  return op == UnaryOp::Log || op == UnaryOp::Sqrt || op == UnaryOp::Rsqrt || op == UnaryOp::Pow ||
         op == UnaryOp::Reciprocal;
}

UnaryParams params_for(UnaryOp op) {
  switch (op) {
    case UnaryOp::Pow:
      return {1.7, 0};
    case UnaryOp::Clamp:
      return {-0.5, 0.75};
    case UnaryOp::Affine:
      return {-1.5, 0.25};
    default:
      return {};
  }
}

// bf16 element-wise results round once from an f32 value that may itself differ by an f32 ulp.
Tol elementwise_tol(DType t) {
  return t == DType::bf16 ? Tol{8e-3, 1e-6} : tol_for(t);
}

TEST(CudaElementwise, UnaryMatchesCpuOverLayouts) {
  STRATA_SKIP_WITHOUT_GPU();
  for (UnaryOp op : kUnaryOps)
    for (DType t : kFloat)
      for (Layout l : kLayouts) {
        const double lo = positive_domain(op) ? 0.1 : -4, hi = 4;
        const Pair x = make_input(kShape, t, l, 5, lo, hi);
        const UnaryParams p = params_for(op);
        Tensor want = host_empty(kShape, t);
        cpu_backend().unary(op, x.host, want, p);
        Tensor got = dev_empty(kShape, t);
        gpu_backend().unary(op, x.dev, got, p);
        expect_close(download(got), want, elementwise_tol(t),
                     "unary " + std::to_string(int(op)) + " " + name(t) + " " + name(l));
      }
}

TEST(CudaElementwise, UnaryOnIntegersIsExact) {
  STRATA_SKIP_WITHOUT_GPU();
  for (UnaryOp op : {UnaryOp::Neg, UnaryOp::Abs, UnaryOp::Affine, UnaryOp::Square, UnaryOp::Clamp})
    for (DType t : {DType::i32, DType::i64})
      for (Layout l : {Layout::Contiguous, Layout::Transposed}) {
        const Pair x = make_input(kShape, t, l, 6);
        const UnaryParams p = op == UnaryOp::Clamp ? UnaryParams{-5, 7} : UnaryParams{3, -2};
        Tensor want = host_empty(kShape, t);
        cpu_backend().unary(op, x.host, want, p);
        Tensor got = dev_empty(kShape, t);
        gpu_backend().unary(op, x.dev, got, p);
        expect_same(download(got), want, "int unary " + std::to_string(int(op)) + " " + name(t));
      }
}

TEST(CudaElementwise, UnaryBackwardMatchesCpu) {
  STRATA_SKIP_WITHOUT_GPU();
  for (UnaryOp op : kUnaryOps)
    for (DType t : kFloat)
      for (Layout l : {Layout::Contiguous, Layout::Transposed, Layout::Broadcast}) {
        const double lo = positive_domain(op) ? 0.1 : -4, hi = 4;
        const Pair x = make_input(kShape, t, Layout::Contiguous, 7, lo, hi);
        const Pair dy = make_input(kShape, t, l, 8);
        const UnaryParams p = params_for(op);
        Tensor y = host_empty(kShape, t);
        cpu_backend().unary(op, x.host, y, p);
        const Tensor yd = upload(y);
        Tensor want = host_empty(kShape, t);
        cpu_backend().unary_backward(op, x.host, y, dy.host, want, p);
        Tensor got = dev_empty(kShape, t);
        gpu_backend().unary_backward(op, x.dev, yd, dy.dev, got, p);
        expect_close(
            download(got), want, elementwise_tol(t),
            "unary_backward " + std::to_string(int(op)) + " " + name(t) + " dy " + name(l));
      }
}

const std::vector<BinaryOp> kArith = {BinaryOp::Add, BinaryOp::Sub,     BinaryOp::Mul,
                                      BinaryOp::Div, BinaryOp::Maximum, BinaryOp::Minimum};
const std::vector<BinaryOp> kCompare = {BinaryOp::Eq, BinaryOp::Ne, BinaryOp::Lt,
                                        BinaryOp::Le, BinaryOp::Gt, BinaryOp::Ge};

// IEEE + - * / and comparisons are exact on both sides: bit-identical results.
TEST(CudaElementwise, BinaryIsBitIdenticalToCpu) {
  STRATA_SKIP_WITHOUT_GPU();
  const std::vector<std::pair<Layout, Layout>> layouts = {{Layout::Contiguous, Layout::Contiguous},
                                                          {Layout::Transposed, Layout::Broadcast},
                                                          {Layout::Scalar, Layout::Sliced},
                                                          {Layout::Contiguous, Layout::Scalar}};
  for (DType t : {DType::f32, DType::f64, DType::bf16, DType::i32, DType::i64})
    for (auto [la, lb] : layouts) {
      // Narrow integer ranges give equal pairs and zero divisors.
      const Pair a = make_input(kShape, t, la, 31, -3, 3);
      const Pair b = make_input(kShape, t, lb, 32, -3, 3);
      for (BinaryOp op : kArith) {
        Tensor want = host_empty(kShape, t);
        cpu_backend().binary(op, a.host, b.host, want);
        Tensor got = dev_empty(kShape, t);
        gpu_backend().binary(op, a.dev, b.dev, got);
        expect_same(
            download(got), want,
            "binary " + std::to_string(int(op)) + " " + name(t) + " " + name(la) + "," + name(lb));
      }
      for (BinaryOp op : kCompare) {
        Tensor want = host_empty(kShape, DType::b8);
        cpu_backend().binary(op, a.host, b.host, want);
        Tensor got = dev_empty(kShape, DType::b8);
        gpu_backend().binary(op, a.dev, b.dev, got);
        expect_same(download(got), want, "compare " + std::to_string(int(op)) + " " + name(t));
      }
    }
}

TEST(CudaElementwise, BinaryPropagatesNaNAsCpu) {
  STRATA_SKIP_WITHOUT_GPU();
  const std::vector<double> av = {NAN, 1, NAN, -0.0, INFINITY, 2};
  const std::vector<double> bv = {1, NAN, NAN, 0.0, 3, -INFINITY};
  for (DType t : kFloat) {
    const Tensor a = from_vector(av, {6}).to(t), b = from_vector(bv, {6}).to(t);
    for (BinaryOp op : {BinaryOp::Maximum, BinaryOp::Minimum, BinaryOp::Add}) {
      Tensor want = host_empty({6}, t);
      cpu_backend().binary(op, a, b, want);
      Tensor got = dev_empty({6}, t);
      gpu_backend().binary(op, upload(a), upload(b), got);
      expect_same(download(got), want, "nan binary " + std::to_string(int(op)) + " " + name(t));
    }
    for (BinaryOp op : kCompare) {
      Tensor want = host_empty({6}, DType::b8);
      cpu_backend().binary(op, a, b, want);
      Tensor got = dev_empty({6}, DType::b8);
      gpu_backend().binary(op, upload(a), upload(b), got);
      expect_same(download(got), want, "nan compare " + std::to_string(int(op)) + " " + name(t));
    }
  }
}

TEST(CudaElementwise, BoolOps) {
  STRATA_SKIP_WITHOUT_GPU();
  const Pair a = make_input(kShape, DType::b8, Layout::Transposed, 41);
  const Pair b = make_input(kShape, DType::b8, Layout::Broadcast, 42);
  for (BinaryOp op : {BinaryOp::LogicalAnd, BinaryOp::LogicalOr, BinaryOp::Eq, BinaryOp::Ne}) {
    Tensor want = host_empty(kShape, DType::b8);
    cpu_backend().binary(op, a.host, b.host, want);
    Tensor got = dev_empty(kShape, DType::b8);
    gpu_backend().binary(op, a.dev, b.dev, got);
    expect_same(download(got), want, "bool " + std::to_string(int(op)));
  }
}

TEST(CudaElementwise, WhereEveryDtype) {
  STRATA_SKIP_WITHOUT_GPU();
  for (DType t : kAll)
    for (Layout lc : {Layout::Contiguous, Layout::Broadcast, Layout::Transposed}) {
      const Pair c = make_input(kShape, DType::b8, lc, 51);
      const Pair a = make_input(kShape, t, Layout::Sliced, 52);
      const Pair b = make_input(kShape, t, Layout::Scalar, 53);
      Tensor want = host_empty(kShape, t);
      cpu_backend().where(c.host, a.host, b.host, want);
      Tensor got = dev_empty(kShape, t);
      gpu_backend().where(c.dev, a.dev, b.dev, got);
      expect_same(download(got), want, "where " + name(t) + " cond " + name(lc));
    }
}

TEST(CudaElementwise, GatedAndBackwardMatchCpu) {
  STRATA_SKIP_WITHOUT_GPU();
  const Shape s = {5, 3001};
  for (GatedAct act : {GatedAct::GeluExact, GatedAct::GeluTanh, GatedAct::Silu})
    for (DType t : kFloat) {
      const Tensor g = host_rand(s, t, 61, -6, 6), u = host_rand(s, t, 62),
                   dy = host_rand(s, t, 63);
      const std::string what = "gated " + std::to_string(int(act)) + " " + name(t);
      Tensor want = host_empty(s, t);
      cpu_backend().gated(act, g, u, want);
      Tensor got = dev_empty(s, t);
      gpu_backend().gated(act, upload(g), upload(u), got);
      expect_close(download(got), want, elementwise_tol(t), what);
      Tensor wdg = host_empty(s, t), wdu = host_empty(s, t);
      cpu_backend().gated_backward(act, g, u, dy, wdg, wdu);
      Tensor gdg = dev_empty(s, t), gdu = dev_empty(s, t);
      gpu_backend().gated_backward(act, upload(g), upload(u), upload(dy), gdg, gdu);
      expect_close(download(gdg), wdg, elementwise_tol(t), what + " dgate");
      expect_close(download(gdu), wdu, elementwise_tol(t), what + " dup");
    }
}

// --- reductions ---------------------------------------------------------------------------------

Shape kept_shape(const Shape& s, const std::vector<int64_t>& dims) {
  Shape k = s;
  for (int64_t d : dims) k[d] = 1;
  return k;
}

void check_reduce(ReduceOp op, const Pair& x, const std::vector<int64_t>& dims,
                  const std::string& what) {
  const DType t = x.host.dtype();
  const Shape ks = kept_shape(x.host.shape(), dims);
  Tensor want = host_empty(ks, t);
  cpu_backend().reduce(op, x.host, dims, want);
  Tensor got = dev_empty(ks, t);
  gpu_backend().reduce(op, x.dev, dims, got);
  const Tensor g = download(got);
  if (op == ReduceOp::Max || op == ReduceOp::Min || !is_floating(t)) {
    expect_same(g, want, what);
  } else {
    // Both accumulate in f64; only the order differs.
    expect_close(g, want, t == DType::bf16 ? Tol{4e-3, 1e-6} : Tol{1e-6, 1e-9}, what);
  }
  // Run to run the same bits.
  Tensor again = dev_empty(ks, t);
  gpu_backend().reduce(op, x.dev, dims, again);
  expect_same(download(again), g, what + " (rerun)");
}

TEST(CudaReduce, EveryOpDtypeAndDimSet) {
  STRATA_SKIP_WITHOUT_GPU();
  const std::vector<std::vector<int64_t>> dim_sets = {{},     {0},    {1},    {2},
                                                      {0, 1}, {0, 2}, {1, 2}, {0, 1, 2}};
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min})
    for (DType t : {DType::f32, DType::f64, DType::bf16, DType::i32, DType::i64}) {
      if (op == ReduceOp::Mean && !is_floating(t)) continue;
      for (Layout l : {Layout::Contiguous, Layout::Transposed, Layout::Sliced, Layout::Broadcast})
        for (const auto& dims : dim_sets) {
          const Pair x = make_input(kShape, t, l, 71);
          std::string ds;
          for (int64_t d : dims) ds += std::to_string(d);
          check_reduce(op, x, dims,
                       "reduce " + std::to_string(int(op)) + " " + name(t) + " " + name(l) +
                           " dims {" + ds + "}");
        }
    }
}

// Long rows (block per output), tall columns split over several blocks (bias gradients), and NaN.
TEST(CudaReduce, LargeShapesAndNaN) {
  STRATA_SKIP_WITHOUT_GPU();
  for (DType t : kFloat) {
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max}) {
      const Pair rows = make_input({3, 1, 70001}, t, Layout::Contiguous, 81);
      check_reduce(op, rows, {2}, "long rows " + name(t));
      const Pair cols = make_input({20011, 1, 77}, t, Layout::Contiguous, 82);
      check_reduce(op, cols, {0}, "tall columns " + name(t));
      check_reduce(op, cols, {0, 1}, "tall columns {0,1} " + name(t));
    }
    Tensor h = host_rand({4, 300}, t, 83);
    dispatch_floating(t, "nan", [&]<class T>() { h.data<T>()[2 * 300 + 17] = T(NAN); });
    Tensor d = upload(h);
    for (ReduceOp op : {ReduceOp::Max, ReduceOp::Min, ReduceOp::Sum}) {
      check_reduce(op, {h, d}, {1}, "nan rows " + name(t));
      check_reduce(op, {h, d}, {0}, "nan columns " + name(t));
    }
  }
}

TEST(CudaReduce, ArgmaxTiesNaNAndLayouts) {
  STRATA_SKIP_WITHOUT_GPU();
  for (DType t : kAll)
    for (Layout l : {Layout::Contiguous, Layout::Transposed, Layout::Sliced})
      for (int64_t dim : {0, 1, 2}) {
        // A narrow value range makes ties common.
        const Pair x = make_input(kShape, t, l, 91, -2, 2);
        Shape ks = kept_shape(kShape, {dim});
        Tensor want = host_empty(ks, DType::i64);
        cpu_backend().argmax(x.host, dim, want);
        Tensor got = dev_empty(ks, DType::i64);
        gpu_backend().argmax(x.dev, dim, got);
        expect_same(download(got), want,
                    "argmax " + name(t) + " " + name(l) + " dim " + std::to_string(dim));
      }
  for (DType t : kFloat)
    for (int64_t n : {int64_t(40), int64_t(5000)}) {
      Tensor h = host_rand({3, n}, t, 92, -1, 1);
      dispatch_floating(t, "nan", [&]<class T>() {
        T* p = h.data<T>();
        p[0] = T(NAN);               // row 0: NaN first -> 0
        p[n + 5] = T(NAN);           // row 1: NaN skipped
        p[2 * n + n - 1] = T(3.0f);  // row 2: max last
        p[2 * n + 1] = T(3.0f);      //        and earlier: the first wins
      });
      Tensor want = host_empty({3, 1}, DType::i64);
      cpu_backend().argmax(h, 1, want);
      Tensor got = dev_empty({3, 1}, DType::i64);
      gpu_backend().argmax(upload(h), 1, got);
      expect_same(download(got), want, "argmax special " + name(t) + " n " + std::to_string(n));
    }
}

TEST(CudaReduce, CumsumForwardAndReverse) {
  STRATA_SKIP_WITHOUT_GPU();
  for (DType t : {DType::f32, DType::f64, DType::bf16, DType::i32, DType::i64})
    for (Layout l : {Layout::Contiguous, Layout::Transposed, Layout::Broadcast})
      for (int64_t dim : {0, 1, 2})
        for (bool reverse : {false, true}) {
          const Pair x = make_input(kShape, t, l, 101);
          Tensor want = host_empty(kShape, t);
          cpu_backend().cumsum(x.host, dim, reverse, want);
          Tensor got = dev_empty(kShape, t);
          gpu_backend().cumsum(x.dev, dim, reverse, got);
          const std::string what = "cumsum " + name(t) + " " + name(l) + " dim " +
                                   std::to_string(dim) + (reverse ? " reverse" : "");
          if (is_floating(t))
            expect_close(download(got), want, t == DType::bf16 ? Tol{4e-3, 1e-6} : Tol{1e-6, 1e-9},
                         what);
          else
            expect_same(download(got), want, what);
        }
  const Pair longx = make_input({2, 1, 5003}, DType::f32, Layout::Contiguous, 102);
  Tensor want = host_empty({2, 1, 5003}, DType::f32);
  cpu_backend().cumsum(longx.host, 2, false, want);
  Tensor got = dev_empty({2, 1, 5003}, DType::f32);
  gpu_backend().cumsum(longx.dev, 2, false, got);
  expect_close(download(got), want, Tol{1e-6, 1e-9}, "cumsum long");
}

// --- indexing -----------------------------------------------------------------------------------

std::vector<int64_t> random_indices(int64_t count, int64_t size, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::vector<int64_t> v(count);
  for (auto& i : v) i = int64_t(gen() % uint64_t(size));
  return v;
}

TEST(CudaIndex, IndexSelectEveryDimDtypeAndLayout) {
  STRATA_SKIP_WITHOUT_GPU();
  for (DType t : kAll)
    for (Layout l : {Layout::Contiguous, Layout::Transposed, Layout::Sliced})
      for (int64_t dim : {0, 1, 2}) {
        const Pair x = make_input(kShape, t, l, 111);
        const auto iv = random_indices(13, kShape[dim], 112 + dim);  // repeats included
        const Tensor ih = host_index(iv, {13});
        Shape os = kShape;
        os[dim] = 13;
        Tensor want = host_empty(os, t);
        cpu_backend().index_select(x.host, dim, ih, want);
        Tensor got = dev_empty(os, t);
        gpu_backend().index_select(x.dev, dim, upload(ih), got);
        expect_same(download(got), want,
                    "index_select " + name(t) + " " + name(l) + " dim " + std::to_string(dim));
      }
}

TEST(CudaIndex, OutOfRangeIndicesThrowBeforeWriting) {
  STRATA_SKIP_WITHOUT_GPU();
  const Pair x = make_input({5, 4, 1}, DType::f32, Layout::Contiguous, 121);
  const Tensor bad = upload(host_index({0, 4, 5, 1}, {4}));
  Tensor out = dev_empty({4, 4, 1}, DType::f32);
  try {
    gpu_backend().index_select(x.dev, 0, bad, out);
    ADD_FAILURE() << "index_select accepted index 5 for a dim of size 5";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("index 5 at position 2"), std::string::npos) << e.what();
  }
  Tensor acc = upload(host_rand({5, 4, 1}, DType::f32, 122));
  const Tensor before = download(acc);
  EXPECT_THROW(gpu_backend().index_add(acc, 0, bad, upload(host_rand({4, 4, 1}, DType::f32, 3))),
               Error);
  expect_same(download(acc), before, "index_add left untouched");
  const Tensor neg = upload(host_index({-1}, {1, 1, 1}));
  EXPECT_THROW(gpu_backend().gather(x.dev, 0, neg, dev_empty({1, 1, 1}, DType::f32)), Error);
}

// The CUDA index_add adds every destination's contributions in the CPU's order with the CPU's
// rounding, so it is bit-identical, through both its paths: few indices (a walk) and many (sorted
// runs, the embedding backward), with heavy repetition.
TEST(CudaIndex, IndexAddIsBitIdenticalToCpu) {
  STRATA_SKIP_WITHOUT_GPU();
  struct Case {
    Shape out;
    int64_t dim, m;
  };
  const std::vector<Case> cases = {{{50, 300}, 0, 5},     {{50, 300}, 0, 5000},
                                   {{7, 50, 3}, 1, 16},   {{7, 50, 3}, 1, 2000},
                                   {{3, 9, 1}, 1, 40000}, {{1000, 1}, 0, 17}};
  for (DType t : kFloat)
    for (const Case& c : cases) {
      Shape ss = c.out;
      ss[c.dim] = c.m;
      const auto iv = random_indices(c.m, c.out[c.dim], 131 + c.m);
      const Tensor ih = host_index(iv, {c.m});
      const Tensor src = host_rand(ss, t, 132);
      Tensor want = host_rand(c.out, t, 133);
      Tensor got = upload(want);
      Tensor got2 = upload(want);
      cpu_backend().index_add(want, c.dim, ih, src);
      const Tensor id = upload(ih), sd = upload(src);
      gpu_backend().index_add(got, c.dim, id, sd);
      const std::string what = "index_add " + name(t) + " " + shape_str(c.out) + " dim " +
                               std::to_string(c.dim) + " m " + std::to_string(c.m);
      expect_same(download(got), want, what);
      gpu_backend().index_add(got2, c.dim, id, sd);
      expect_same(download(got2), download(got), what + " (rerun)");
    }
  // A strided source is made contiguous first.
  const Pair src = make_input({6, 7, 33}, DType::f32, Layout::Transposed, 134);
  const Tensor ih = host_index(random_indices(7, 4, 135), {7});
  Tensor want = host_rand({6, 4, 33}, DType::f32, 136);
  Tensor got = upload(want);
  cpu_backend().index_add(want, 1, ih, src.host);
  gpu_backend().index_add(got, 1, upload(ih), src.dev);
  expect_same(download(got), want, "index_add strided src");
}

TEST(CudaIndex, GatherAndScatterAdd) {
  STRATA_SKIP_WITHOUT_GPU();
  for (int64_t dim : {0, 1, 2}) {
    // Index smaller than x in the other dims, as gather allows.
    Shape is = {4, 5, 20};
    is[dim] = 9;
    std::vector<int64_t> iv = random_indices(numel(is), kShape[dim], 141 + dim);
    const Tensor ih = host_index(iv, is);
    const Tensor id = upload(ih);
    for (DType t : kAll)
      for (Layout l : {Layout::Contiguous, Layout::Transposed}) {
        const Pair x = make_input(kShape, t, l, 142);
        Tensor want = host_empty(is, t);
        cpu_backend().gather(x.host, dim, ih, want);
        Tensor got = dev_empty(is, t);
        gpu_backend().gather(x.dev, dim, id, got);
        expect_same(download(got), want,
                    "gather " + name(t) + " " + name(l) + " dim " + std::to_string(dim));
      }
    for (DType t : kFloat) {
      const Tensor src = host_rand(is, t, 143);
      Tensor want = host_rand(kShape, t, 144);
      Tensor got = upload(want);
      cpu_backend().scatter_add(want, dim, ih, src);
      gpu_backend().scatter_add(got, dim, id, upload(src));
      expect_same(download(got), want, "scatter_add " + name(t) + " dim " + std::to_string(dim));
    }
  }
}

}  // namespace
}  // namespace strata::cuda_test
