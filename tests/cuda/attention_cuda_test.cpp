// CUDA fused attention (forward, lse and every gradient) against the CPU backend on the same
// inputs: causal and not, Lq != Lk both ways, bias broadcast over batch or heads (T5) or stored
// key-major, key masks that hide whole rows, head dims on the exact and the generic kernel paths,
// strided q/k/v. f32 within 1e-4 and f64 within 1e-10 of the CPU; bf16 (which the CPU kernel does
// not take) within 2e-2 of the CPU's f32 result on the bf16-rounded inputs. Tolerances are
// relative to the largest reference magnitude (at least 1).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/cuda/cuda_context.h"
#include "core/error.h"
#include "core/ops/factory.h"
#include "core/ops/shape.h"
#include "core/tensor.h"
#include "tests/cuda/backend_compare_util.h"

namespace strata {
namespace {

const Device kGpu = Device::cuda(0);

std::vector<double> values(const Tensor& t) {
  return t.to(DType::f64).to_vector<double>();
}

// max |a - b| <= tol * max(1, max |b|), with -inf required at the same places.
void expect_close(const Tensor& got, const Tensor& want, double tol, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const auto g = values(got), w = values(want);
  double ref = 1, err = 0;
  size_t worst = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    if (std::isinf(w[i])) {
      EXPECT_EQ(g[i], w[i]) << what << " element " << i;
      continue;
    }
    ref = std::max(ref, std::abs(w[i]));
    const double e = std::abs(g[i] - w[i]);
    ASSERT_FALSE(std::isnan(g[i])) << what << " element " << i << " is NaN";
    if (e > err) err = e, worst = i;
  }
  EXPECT_LE(err, tol * ref) << what << ": worst element " << worst << " got " << g[worst]
                            << " want " << w[worst];
}

enum class BiasKind { kNone, kFull, kPerHead, kPerBatch, kKeyMajor, kShared };

struct Case {
  int64_t B, H, Lq, Lk, D;
  bool causal = false;
  BiasKind bias = BiasKind::kNone;
  bool mask = false;     // batch 0 hides a pattern of keys; the last batch hides every key
  bool strided = false;  // q, k, v stored [B, L, H, D] and viewed as [B, H, L, D]
  bool unit_scale = false;
};

std::string name(const Case& c) {
  return "B" + std::to_string(c.B) + "H" + std::to_string(c.H) + "Lq" + std::to_string(c.Lq) +
         "Lk" + std::to_string(c.Lk) + "D" + std::to_string(c.D) + (c.causal ? "_causal" : "") +
         "_bias" + std::to_string(int(c.bias)) + (c.mask ? "_mask" : "") +
         (c.strided ? "_strided" : "") + (c.unit_scale ? "_s1" : "");
}

// Inputs in f32 (rounded to the case's dtype) and the gradient seed, all on the CPU.
struct Inputs {
  Tensor q, k, v, bias, mask, dout;
};

// randn, also for shapes with no elements (which the CPU random fill refuses).
Tensor rnd(const Shape& shape, RandomKey key) {
  return numel(shape) == 0 ? zeros(shape) : randn(shape, key);
}

Tensor qkv(const Case& c, int64_t L, uint32_t stream) {
  const RandomKey key{1234, stream};
  if (!c.strided) return rnd({c.B, c.H, L, c.D}, key);
  return rnd({c.B, L, c.H, c.D}, key).permute({0, 2, 1, 3});  // inner dim stays contiguous
}

Inputs make_inputs(const Case& c) {
  Inputs in;
  in.q = qkv(c, c.Lq, 1);
  in.k = qkv(c, c.Lk, 2);
  in.v = qkv(c, c.Lk, 3);
  const RandomKey bkey{1234, 4};
  switch (c.bias) {
    case BiasKind::kNone:
      break;
    case BiasKind::kFull:
      in.bias = rnd({c.B, c.H, c.Lq, c.Lk}, bkey);
      break;
    case BiasKind::kPerHead:
      in.bias = rnd({1, c.H, c.Lq, c.Lk}, bkey);
      break;
    case BiasKind::kPerBatch:
      in.bias = rnd({c.B, 1, c.Lq, c.Lk}, bkey);
      break;
    case BiasKind::kKeyMajor:
      in.bias = rnd({c.B, c.H, c.Lk, c.Lq}, bkey).transpose(2, 3);
      break;
    case BiasKind::kShared:
      in.bias = rnd({1, 1, c.Lq, c.Lk}, bkey);
      break;
  }
  if (c.mask) {
    std::vector<uint8_t> m(c.B * c.Lk, 1);
    for (int64_t j = 0; j < c.Lk; ++j) m[j] = (j % 3 != 1);  // batch 0: a pattern of hidden keys
    for (int64_t j = 0; j < c.Lk; ++j) m[(c.B - 1) * c.Lk + j] = 0;  // last batch: all hidden
    Tensor t = Tensor::empty({c.B, c.Lk}, DType::b8);
    std::memcpy(t.raw_data(), m.data(), m.size());
    in.mask = t;
  }
  in.dout = rnd({c.B, c.H, c.Lq, c.D}, RandomKey{1234, 5});
  return in;
}

struct Result {
  Tensor out, lse, dq, dk, dv, dbias;
};

// One forward and backward through `backend_for(device)` in `dtype`, arguments shaped as the
// attention op shapes them (bias broadcast to [B, H, Lq, Lk], dbias over the unbroadcast dims).
Result run(const Case& c, const Inputs& in, DType dtype, Device device) {
  // On the GPU a strided input keeps its layout: its storage order is copied, then re-viewed
  // with the same permutation (q, k, v: [B, L, H, D] seen as [B, H, L, D]; a key-major bias).
  auto place = [&](const Tensor& t, std::vector<int64_t> perm = {}) -> Tensor {
    if (!t.defined()) return t;
    const Tensor x = t.dtype() == DType::b8 ? t : t.to(dtype);
    if (device.is_cpu()) return x;
    if (perm.empty()) return cuda_test::upload(x);
    return cuda_test::upload(x.permute(perm).contiguous())
        .permute(perm);  // perm is its own inverse
  };
  const std::vector<int64_t> qkv_perm =
      c.strided ? std::vector<int64_t>{0, 2, 1, 3} : std::vector<int64_t>{};
  const Tensor q = place(in.q, qkv_perm), k = place(in.k, qkv_perm), v = place(in.v, qkv_perm);
  const Tensor mask = place(in.mask), dout = place(in.dout);
  const Tensor bias =
      place(in.bias, c.bias == BiasKind::kKeyMajor ? std::vector<int64_t>{0, 1, 3, 2}
                                                   : std::vector<int64_t>{});
  const Tensor bias_view = bias.defined() ? broadcast_to(bias, {c.B, c.H, c.Lq, c.Lk}) : Tensor();
  const DType acc = dtype == DType::f64 ? DType::f64 : DType::f32;
  AttentionParams p{c.unit_scale ? 1.0 : 1.0 / std::sqrt(double(c.D)), c.causal};
  Result r;
  r.out = empty({c.B, c.H, c.Lq, c.D}, dtype, device);
  r.lse = empty({c.B, c.H, c.Lq}, acc, device);
  Backend& be = backend_for(device);
  be.attention(q, k, v, bias_view, mask, p, r.out, r.lse);
  r.dq = empty({c.B, c.H, c.Lq, c.D}, dtype, device);
  r.dk = empty({c.B, c.H, c.Lk, c.D}, dtype, device);
  r.dv = empty({c.B, c.H, c.Lk, c.D}, dtype, device);
  if (bias.defined()) {
    r.dbias =
        empty({bias_view.stride(0) == 0 ? 1 : c.B, bias_view.stride(1) == 0 ? 1 : c.H, c.Lq, c.Lk},
              dtype, device);
  }
  be.attention_backward(q, k, v, bias_view, mask, p, r.out, r.lse, dout, r.dq, r.dk, r.dv, r.dbias);
  if (!device.is_cpu()) {
    for (Tensor* t : {&r.out, &r.lse, &r.dq, &r.dk, &r.dv, &r.dbias})
      if (t->defined())
        *t = t->numel() > 0 ? cuda_test::download(*t) : Tensor::empty(t->shape(), t->dtype());
  }
  return r;
}

// The inputs rounded to bf16 and back, so the f32 CPU reference sees what the bf16 kernel sees.
Inputs rounded_to_bf16(const Inputs& in) {
  auto r = [](const Tensor& t) { return t.defined() ? t.to(DType::bf16).to(DType::f32) : t; };
  Inputs o = in;
  o.q = r(in.q);
  o.k = r(in.k);
  o.v = r(in.v);
  o.bias = r(in.bias);
  o.dout = r(in.dout);
  return o;
}

void compare(const Case& c, DType dtype, double tol) {
  SCOPED_TRACE(name(c) + " " + std::string(dtype_name(dtype)));
  const Inputs in = make_inputs(c);
  const Inputs ref_in = dtype == DType::bf16 ? rounded_to_bf16(in) : in;
  const DType ref_dtype = dtype == DType::bf16 ? DType::f32 : dtype;
  const Result want = run(c, ref_in, ref_dtype, Device::cpu());
  const Result got = run(c, in, dtype, kGpu);
  expect_close(got.out, want.out, tol, "out");
  expect_close(got.lse, want.lse, tol, "lse");
  expect_close(got.dq, want.dq, tol, "dq");
  expect_close(got.dk, want.dk, tol, "dk");
  expect_close(got.dv, want.dv, tol, "dv");
  if (want.dbias.defined()) expect_close(got.dbias, want.dbias, tol, "dbias");
}

std::vector<Case> cases() {
  return {
      {2, 3, 70, 70, 64, true},
      {2, 3, 70, 70, 64, false, BiasKind::kFull, true},
      {2, 2, 33, 77, 32, true, BiasKind::kPerHead},
      {3, 2, 77, 33, 80, true, BiasKind::kPerBatch, true},  // Lq > Lk: early rows see no key
      {2, 2, 50, 65, 128, false, BiasKind::kPerHead, true, false, true},
      {2, 3, 129, 64, 64, false, BiasKind::kKeyMajor, false, true},
      {2, 2, 40, 100, 80, true, BiasKind::kShared, true, true},
      {1, 2, 96, 96, 128, true, BiasKind::kNone, false, true},
      {2, 2, 45, 37, 200, false, BiasKind::kPerHead, true},  // generic path up to 256
      {2, 1, 20, 31, 24, true, BiasKind::kFull},             // D < 32
      {1, 1, 1, 1, 64, false},
  };
}

class AttentionCuda : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_F(AttentionCuda, MatchesCpuF32) {
  for (const Case& c : cases()) compare(c, DType::f32, 1e-4);
}

TEST_F(AttentionCuda, MatchesCpuBf16) {
  for (const Case& c : cases()) compare(c, DType::bf16, 2e-2);
}

TEST_F(AttentionCuda, MatchesCpuF64) {
  for (Case c : cases()) {
    if (c.D > 128) continue;  // f64 takes head dims up to 128 on CUDA
    compare(c, DType::f64, 1e-10);
  }
}

TEST_F(AttentionCuda, F64HeadDimAbove128IsAnError) {
  const Case c{1, 1, 4, 4, 160};
  const Inputs in = make_inputs(c);
  EXPECT_THROW(run(c, in, DType::f64, kGpu), Error);
}

// The CPU kernels refuse empty q or k, so these are checked against their definition: with no
// keys out = 0, lse = -inf and dq = 0; with no queries dk = dv = 0 (and dbias = 0).
TEST_F(AttentionCuda, EmptyKeysOrQueries) {
  for (DType dt : {DType::f32, DType::bf16, DType::f64}) {
    const Case no_keys{2, 2, 5, 0, 32};
    const Result a = run(no_keys, make_inputs(no_keys), dt, kGpu);
    for (double x : values(a.out)) EXPECT_EQ(x, 0.0);
    for (double x : values(a.lse)) EXPECT_EQ(x, -std::numeric_limits<double>::infinity());
    for (double x : values(a.dq)) EXPECT_EQ(x, 0.0);
    const Case no_queries{2, 2, 0, 9, 32, false, BiasKind::kPerHead};
    const Result b = run(no_queries, make_inputs(no_queries), dt, kGpu);
    for (const Tensor* t : {&b.dk, &b.dv}) {
      EXPECT_EQ(t->numel(), 2 * 2 * 9 * 32);
      for (double x : values(*t)) EXPECT_EQ(x, 0.0);
    }
  }
}

// The dbias chunk sums and every other reduction run in a fixed order: two runs give equal bits.
TEST_F(AttentionCuda, BackwardIsDeterministic) {
  for (const Case& c : {Case{4, 3, 100, 90, 64, true, BiasKind::kShared, true},
                        Case{4, 3, 100, 90, 64, false, BiasKind::kPerHead}}) {
    SCOPED_TRACE(name(c));
    const Inputs in = make_inputs(c);
    const Result a = run(c, in, DType::f32, kGpu), b = run(c, in, DType::f32, kGpu);
    for (auto [x, y] : {std::pair{a.dq, b.dq}, std::pair{a.dk, b.dk}, std::pair{a.dv, b.dv},
                        std::pair{a.dbias, b.dbias}}) {
      const auto vx = x.to_vector<float>(), vy = y.to_vector<float>();
      ASSERT_EQ(vx.size(), vy.size());
      EXPECT_EQ(0, std::memcmp(vx.data(), vy.data(), vx.size() * sizeof(float)));
    }
  }
}

}  // namespace
}  // namespace strata
