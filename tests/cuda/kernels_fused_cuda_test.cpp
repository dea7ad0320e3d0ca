// The fused row kernels of CudaBackend (softmax, layer/RMS norm, cross-entropy, rope) against
// CpuBackend on the same inputs, for f32, bf16 and f64.
//
// Tolerances (backend_compare_util.h, tol_for): |gpu - cpu| <= rtol * |cpu| + atol * max|cpu|
// with f64 {1e-11, 1e-12}, f32 {2e-5, 2e-6} and bf16 {8e-3, 2e-3}: bf16 results are computed in
// f32 on both sides and rounded once, so they may land one bf16 ulp apart. Statistics that stay
// in f32 for bf16 inputs (mean, rstd, loss, lse) use the f32 tolerance.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/tensor.h"
#include "tests/cuda/backend_compare_util.h"

namespace strata::cuda_test {
namespace {

constexpr DType kDtypes[] = {DType::f32, DType::bf16, DType::f64};

DType acc_of(DType t) {
  return t == DType::f64 ? DType::f64 : DType::f32;
}

std::string label(DType t, int64_t rows, int64_t n) {
  return std::string(dtype_name(t)) + " rows=" + std::to_string(rows) + " n=" + std::to_string(n);
}

Tensor gpu_empty(const Shape& s, DType t) {
  return Tensor::empty(s, t, gpu());
}

// ---- softmax ------------------------------------------------------------------------------

void check_softmax(const Tensor& x, bool log, const std::string& what) {
  const DType t = x.dtype();
  Tensor y = Tensor::empty(x.shape(), t);
  cpu_backend().softmax(x, y, log);
  Tensor gy = gpu_empty(x.shape(), t);
  gpu_backend().softmax(upload(x), gy, log);
  expect_close(download(gy), y, tol_for(t), what + (log ? " log_softmax" : " softmax"));

  const Tensor dy = host_randn(x.shape(), t, 77);
  Tensor dx = Tensor::empty(x.shape(), t);
  cpu_backend().softmax_backward(y, dy, dx, log);
  Tensor gdx = gpu_empty(x.shape(), t);
  gpu_backend().softmax_backward(upload(y), upload(dy), gdx, log);
  expect_close(download(gdx), dx, tol_for(t), what + (log ? " log_softmax" : " softmax") + " bwd");
}

TEST(SoftmaxCuda, MatchesCpu) {
  STRATA_SKIP_WITHOUT_GPU();
  // Row lengths on both sides of the warp / block / wide-block switches.
  for (DType t : kDtypes)
    for (int64_t n : {1, 5, 64, 1000, 1024, 1025, 3000, 8192, 8193, 32128})
      for (int64_t rows : {1, 37}) {
        const Tensor x = host_randn({rows, n}, t, uint64_t(n + rows), 3.0);
        for (bool log : {false, true}) check_softmax(x, log, label(t, rows, n));
      }
}

TEST(SoftmaxCuda, SpecialValuesAsCpu) {
  STRATA_SKIP_WITHOUT_GPU();
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (int64_t n : {4, 2000}) {
    // Rows: all -inf (NaN), one -inf among finite values, +inf (NaN), NaN (NaN), a huge spread.
    std::vector<double> v(size_t(5 * n));
    for (int64_t j = 0; j < n; ++j) {
      v[size_t(j)] = -inf;
      v[size_t(n + j)] = j == 1 ? -inf : double(j % 7);
      v[size_t(2 * n + j)] = j == 2 ? inf : 1.0;
      v[size_t(3 * n + j)] = j == 3 ? nan : 1.0;
      v[size_t(4 * n + j)] = j == 0 ? 1e4 : -1e4;
    }
    for (DType t : {DType::f32, DType::f64}) {
      const Tensor x = from_vector(v, {5, n}).to(t);
      for (bool log : {false, true}) check_softmax(x, log, "special " + label(t, 5, n));
    }
  }
}

// ---- layer norm / RMS norm ------------------------------------------------------------------

enum class Affine { WeightBias, Weight, None };

void check_layer_norm(DType t, int64_t rows, int64_t n, Affine affine) {
  const std::string what =
      "layer_norm " + label(t, rows, n) + " affine=" + std::to_string(int(affine));
  const DType a = acc_of(t);
  const Tensor x = host_randn({rows, n}, t, uint64_t(3 * n + rows), 2.0);
  const Tensor w = affine != Affine::None ? host_randn({n}, t, 5) : Tensor();
  const Tensor b = affine == Affine::WeightBias ? host_randn({n}, t, 6) : Tensor();
  const Tensor gw = w.defined() ? upload(w) : Tensor(), gb = b.defined() ? upload(b) : Tensor();
  Tensor y = Tensor::empty({rows, n}, t), mean = Tensor::empty({rows}, a),
         rstd = Tensor::empty({rows}, a);
  cpu_backend().layer_norm(x, w, b, 1e-5, y, mean, rstd);
  Tensor gy = gpu_empty({rows, n}, t), gmean = gpu_empty({rows}, a), grstd = gpu_empty({rows}, a);
  const Tensor gx = upload(x);
  gpu_backend().layer_norm(gx, gw, gb, 1e-5, gy, gmean, grstd);
  expect_close(download(gy), y, tol_for(t), what + " y");
  expect_close(download(gmean), mean, tol_for(a), what + " mean");
  expect_close(download(grstd), rstd, tol_for(a), what + " rstd");

  const Tensor dy = host_randn({rows, n}, t, 8);
  Tensor dx = Tensor::empty({rows, n}, t);
  Tensor dw = w.defined() ? Tensor::empty({n}, t) : Tensor();
  Tensor db = b.defined() ? Tensor::empty({n}, t) : Tensor();
  cpu_backend().layer_norm_backward(x, w, mean, rstd, dy, dx, dw, db);
  Tensor gdx = gpu_empty({rows, n}, t);
  Tensor gdw = w.defined() ? gpu_empty({n}, t) : Tensor();
  Tensor gdb = b.defined() ? gpu_empty({n}, t) : Tensor();
  gpu_backend().layer_norm_backward(gx, gw, upload(mean), upload(rstd), upload(dy), gdx, gdw, gdb);
  expect_close(download(gdx), dx, tol_for(t), what + " dx");
  if (dw.defined()) expect_close(download(gdw), dw, tol_for(t), what + " dw");
  if (db.defined()) expect_close(download(gdb), db, tol_for(t), what + " db");
}

void check_rms_norm(DType t, int64_t rows, int64_t n, bool weight) {
  const std::string what = "rms_norm " + label(t, rows, n) + " weight=" + std::to_string(weight);
  const DType a = acc_of(t);
  const Tensor x = host_randn({rows, n}, t, uint64_t(5 * n + rows), 2.0);
  const Tensor w = weight ? host_randn({n}, t, 9) : Tensor();
  const Tensor gw = weight ? upload(w) : Tensor();
  Tensor y = Tensor::empty({rows, n}, t), rstd = Tensor::empty({rows}, a);
  cpu_backend().rms_norm(x, w, 1e-6, y, rstd);
  Tensor gy = gpu_empty({rows, n}, t), grstd = gpu_empty({rows}, a);
  const Tensor gx = upload(x);
  gpu_backend().rms_norm(gx, gw, 1e-6, gy, grstd);
  expect_close(download(gy), y, tol_for(t), what + " y");
  expect_close(download(grstd), rstd, tol_for(a), what + " rstd");

  const Tensor dy = host_randn({rows, n}, t, 10);
  Tensor dx = Tensor::empty({rows, n}, t), dw = weight ? Tensor::empty({n}, t) : Tensor();
  cpu_backend().rms_norm_backward(x, w, rstd, dy, dx, dw);
  Tensor gdx = gpu_empty({rows, n}, t), gdw = weight ? gpu_empty({n}, t) : Tensor();
  gpu_backend().rms_norm_backward(gx, gw, upload(rstd), upload(dy), gdx, gdw);
  expect_close(download(gdx), dx, tol_for(t), what + " dx");
  if (weight) expect_close(download(gdw), dw, tol_for(t), what + " dw");
}

TEST(NormCuda, LayerNormMatchesCpu) {
  STRATA_SKIP_WITHOUT_GPU();
  for (DType t : kDtypes)
    for (int64_t n : {1, 7, 768, 1024, 1500, 9000})
      for (int64_t rows : {1, 5, 300})
        for (Affine af : {Affine::WeightBias, Affine::Weight, Affine::None})
          check_layer_norm(t, rows, n, af);
}

TEST(NormCuda, RmsNormMatchesCpu) {
  STRATA_SKIP_WITHOUT_GPU();
  for (DType t : kDtypes)
    for (int64_t n : {1, 7, 512, 1025, 9000})
      for (int64_t rows : {1, 5, 300})
        for (bool weight : {true, false}) check_rms_norm(t, rows, n, weight);
}

// Many rows (several chunks of the column reduction) and a bitwise-repeatable dw / db.
TEST(NormCuda, WeightGradientsOverManyRowsAreDeterministic) {
  STRATA_SKIP_WITHOUT_GPU();
  check_layer_norm(DType::f32, 8192, 768, Affine::WeightBias);
  check_layer_norm(DType::bf16, 8192, 768, Affine::WeightBias);
  const int64_t rows = 4000, n = 640;
  const Tensor x = upload(host_randn({rows, n}, DType::f32, 1));
  const Tensor w = upload(host_randn({n}, DType::f32, 2));
  const Tensor dy = upload(host_randn({rows, n}, DType::f32, 3));
  Tensor y = gpu_empty({rows, n}, DType::f32), mean = gpu_empty({rows}, DType::f32),
         rstd = gpu_empty({rows}, DType::f32);
  gpu_backend().layer_norm(x, w, Tensor(), 1e-5, y, mean, rstd);
  std::vector<std::vector<double>> dws;
  for (int rep = 0; rep < 2; ++rep) {
    Tensor dw = gpu_empty({n}, DType::f32), db = gpu_empty({n}, DType::f32);
    gpu_backend().layer_norm_backward(x, w, mean, rstd, dy, Tensor(), dw, db);
    dws.push_back(values(download(dw)));
    dws.push_back(values(download(db)));
  }
  EXPECT_EQ(dws[0], dws[2]);
  EXPECT_EQ(dws[1], dws[3]);
}

TEST(NormCuda, NoRowsGiveZeroWeightGradients) {
  STRATA_SKIP_WITHOUT_GPU();
  const int64_t n = 33;
  const Tensor x = gpu_empty({0, n}, DType::f32), dy = gpu_empty({0, n}, DType::f32);
  const Tensor stat = gpu_empty({0}, DType::f32);
  const Tensor w = upload(host_randn({n}, DType::f32, 1));
  Tensor dw = upload(host_randn({n}, DType::f32, 2)), db = upload(host_randn({n}, DType::f32, 3));
  gpu_backend().layer_norm_backward(x, w, stat, stat, dy, gpu_empty({0, n}, DType::f32), dw, db);
  EXPECT_EQ(values(download(dw)), std::vector<double>(size_t(n), 0.0));
  EXPECT_EQ(values(download(db)), std::vector<double>(size_t(n), 0.0));
}

// ---- cross-entropy ----------------------------------------------------------------------------

constexpr int64_t kIgnore = -100;

// Class ids in [0, V) with every fifth row ignored.
Tensor make_targets(int64_t rows, int64_t V, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::vector<int64_t> v(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) v[size_t(r)] = r % 5 == 3 ? kIgnore : int64_t(gen() % V);
  return from_vector(v, {rows});
}

void check_cross_entropy(DType t, int64_t rows, int64_t V, double smoothing) {
  const std::string what =
      "cross_entropy " + label(t, rows, V) + " ls=" + std::to_string(smoothing);
  const DType a = acc_of(t);
  const Tensor logits = host_randn({rows, V}, t, uint64_t(V + rows), 4.0);
  const Tensor target = make_targets(rows, V, uint64_t(rows));
  Tensor loss = Tensor::empty({rows}, a), lse = Tensor::empty({rows}, a);
  cpu_backend().cross_entropy(logits, target, kIgnore, smoothing, loss, lse);
  const Tensor gl = upload(logits), gt = upload(target);
  Tensor gloss = gpu_empty({rows}, a), glse = gpu_empty({rows}, a);
  gpu_backend().cross_entropy(gl, gt, kIgnore, smoothing, gloss, glse);
  expect_close(download(gloss), loss, tol_for(a), what + " loss");
  expect_close(download(glse), lse, tol_for(a), what + " lse");

  const Tensor dloss = host_randn({rows}, a, 31);
  Tensor dl = Tensor::empty({rows, V}, t);
  cpu_backend().cross_entropy_backward(logits, target, lse, dloss, kIgnore, smoothing, dl);
  Tensor gdl = gpu_empty({rows, V}, t);
  gpu_backend().cross_entropy_backward(gl, gt, upload(lse), upload(dloss), kIgnore, smoothing, gdl);
  const Tensor got = download(gdl);
  expect_close(got, dl, tol_for(t), what + " dlogits");
  // Ignored rows are exactly zero.
  const std::vector<double> g = values(got);
  for (int64_t r = 3; r < rows; r += 5)
    for (int64_t j = 0; j < V; ++j) ASSERT_EQ(g[size_t(r * V + j)], 0.0) << what << " row " << r;
}

TEST(CrossEntropyCuda, MatchesCpu) {
  STRATA_SKIP_WITHOUT_GPU();
  for (DType t : kDtypes)
    for (int64_t V : {7, 1000, 5000})
      for (int64_t rows : {1, 16, 67})
        for (double ls : {0.0, 0.1}) check_cross_entropy(t, rows, V, ls);
}

// The vocabularies of T5 (32128) and GPT-2 (50257).
TEST(CrossEntropyCuda, LargeVocabulariesMatchCpu) {
  STRATA_SKIP_WITHOUT_GPU();
  for (DType t : kDtypes)
    for (int64_t V : {32128, 50257})
      for (double ls : {0.0, 0.1}) check_cross_entropy(t, 24, V, ls);
}

TEST(CrossEntropyCuda, OutOfRangeTargetThrows) {
  STRATA_SKIP_WITHOUT_GPU();
  const int64_t rows = 6, V = 10;
  const Tensor logits = upload(host_randn({rows, V}, DType::f32, 1));
  for (int64_t bad : {int64_t(10), int64_t(-1)}) {
    const Tensor target =
        upload(from_vector(std::vector<int64_t>{1, 2, kIgnore, bad, 0, bad}, {rows}));
    Tensor loss = gpu_empty({rows}, DType::f32), lse = gpu_empty({rows}, DType::f32);
    try {
      gpu_backend().cross_entropy(logits, target, kIgnore, 0.0, loss, lse);
      ADD_FAILURE() << "target " << bad << " was accepted";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("target " + std::to_string(bad) + " at row 3"), std::string::npos) << msg;
    }
  }
}

// ---- rope -----------------------------------------------------------------------------------

TEST(RopeCuda, MatchesCpu) {
  STRATA_SKIP_WITHOUT_GPU();
  const std::vector<Shape> shapes = {{2, 3, 17, 64}, {1, 1, 5, 8}, {3, 2}, {2, 4, 33, 128}};
  for (DType t : kDtypes)
    for (const Shape& s : shapes)
      for (int64_t offset : {0, 7, 100000})
        for (double base : {10000.0, 500000.0})
          for (bool inverse : {false, true}) {
            const std::string what = "rope " + std::string(dtype_name(t)) + " " + shape_str(s) +
                                     " offset=" + std::to_string(offset) +
                                     " base=" + std::to_string(base) +
                                     " inverse=" + std::to_string(inverse);
            const Tensor x = host_randn(s, t, uint64_t(offset + s.back()));
            Tensor y = Tensor::empty(s, t);
            cpu_backend().rope(x, base, offset, inverse, y);
            Tensor gy = gpu_empty(s, t);
            gpu_backend().rope(upload(x), base, offset, inverse, gy);
            // f64: at positions near 1e5 a one-ulp difference between the two libraries'
            // base^(-2i/D) moves the angle by ~1e-11 rad.
            const Tol tol = t == DType::f64 ? Tol{1e-9, 1e-10} : tol_for(t);
            expect_close(download(gy), y, tol, what);
          }
}

}  // namespace
}  // namespace strata::cuda_test
