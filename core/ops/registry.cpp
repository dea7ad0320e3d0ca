#include "core/ops/registry.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <unordered_set>

#include "core/ops.h"
#include "core/random/philox.h"

namespace strata {

namespace {

using Inputs = std::vector<Tensor>;

// A leaf with standard-normal entries that requires grad.
Tensor leaf(const Shape& shape, DType dt, uint64_t seed, uint64_t salt) {
  Tensor t = randn(shape, RandomKey{seed, uint32_t(RngStream::Test), salt}, DType::f64).to(dt);
  return t.set_requires_grad(true);
}
// Entries in [0.5, 2.5): for log, sqrt, division and other ops with a restricted domain.
Tensor positive_leaf(const Shape& shape, DType dt, uint64_t seed, uint64_t salt) {
  Tensor t =
      rand(shape, RandomKey{seed, uint32_t(RngStream::Test), salt}, DType::f64, 0.5, 2.5).to(dt);
  return t.set_requires_grad(true);
}
Tensor int_tensor(const std::vector<int64_t>& v, const Shape& shape) {
  return from_vector(v, shape);
}
Tensor bool_tensor(const std::vector<bool>& v, const Shape& shape) {
  return from_vector(v, shape);
}

void add(std::vector<OpCase>& cases, std::string label, std::function<Inputs(DType, uint64_t)> make,
         std::function<Tensor(const Inputs&)> fn) {
  cases.push_back(OpCase{std::move(label), std::move(make), std::move(fn)});
}

// f32 leaves for the benches, keyed as bench/torch_ops_reference.py's inputs are sized.
Tensor bench_leaf(const Shape& shape, uint64_t salt, double scale = 1.0) {
  Tensor t = randn(shape, RandomKey{0, uint32_t(RngStream::Test), salt});
  if (scale != 1.0) t = t * scale;
  return t.set_requires_grad(true);
}

// The cases bench/ops_bench.cpp races PyTorch on, at the reference script's shapes (BERT-base and
// T5 sizes: batch 4 x 512 tokens, 12 heads of 64, d_model 768, d_ff 3072, T5's 32k vocabulary).
void attach_benches(std::vector<OpCase>& cases) {
  auto at = [&](std::string_view label, OpBench bench) {
    auto it =
        std::find_if(cases.begin(), cases.end(), [&](const OpCase& c) { return c.label == label; });
    STRATA_CHECK(it != cases.end(), "op registry: no case ", label, " to bench");
    it->bench = std::move(bench);
  };
  at("softmax/last", {"softmax", {4, 12, 512, 512}, [] {
                        return Inputs{bench_leaf({4, 12, 512, 512}, 1)};
                      }});
  at("layer_norm/affine",
     {"layer_norm", {4096, 768}, [] {
        return Inputs{bench_leaf({4096, 768}, 3), bench_leaf({768}, 4), bench_leaf({768}, 5)};
      }});
  at("rms_norm/weight", {"rms_norm", {4096, 768}, [] {
                           return Inputs{bench_leaf({4096, 768}, 7), bench_leaf({768}, 8)};
                         }});
  at("gelu_tanh/contiguous", {"gelu_tanh", {4096, 3072}, [] {
                                return Inputs{bench_leaf({4096, 3072}, 9)};
                              }});
  at("cross_entropy/mean_ignore",
     {"cross_entropy", {2048, 32128}, [] {
        std::vector<int64_t> t(2048);
        for (int64_t i = 0; i < 2048; ++i)
          t[size_t(i)] =
              i % 10 == 0 ? -100 : int64_t(Philox(1, RngStream::Test, 0).bits(uint64_t(i)) % 32128);
        return Inputs{bench_leaf({2048, 32128}, 11, 3.0), from_vector(t, {2048})};
      }});
  auto qkv = [] {
    return Inputs{bench_leaf({4, 12, 512, 64}, 12), bench_leaf({4, 12, 512, 64}, 13),
                  bench_leaf({4, 12, 512, 64}, 14)};
  };
  at("attention/scaled", {"attention", {4, 12, 512, 64}, qkv});
  at("attention/causal", {"attention_causal", {4, 12, 512, 64}, qkv});
}

std::vector<OpCase> build_cases() {
  std::vector<OpCase> c;

  // Unary ops: contiguous and on a transposed (non-contiguous) view.
  struct U {
    const char* name;
    std::function<Tensor(const Tensor&)> f;
    bool positive;
  };
  const std::vector<U> unaries = {
      {"neg", [](const Tensor& x) { return neg(x); }, false},
      {"exp", [](const Tensor& x) { return exp(x); }, false},
      {"log", [](const Tensor& x) { return log(x); }, true},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, true},
      {"rsqrt", [](const Tensor& x) { return rsqrt(x); }, true},
      {"tanh", [](const Tensor& x) { return tanh(x); }, false},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, false},
      {"relu", [](const Tensor& x) { return relu(x); }, false},
      {"gelu", [](const Tensor& x) { return gelu(x); }, false},
      {"gelu_tanh", [](const Tensor& x) { return gelu(x, true); }, false},
      {"silu", [](const Tensor& x) { return silu(x); }, false},
      {"abs", [](const Tensor& x) { return abs(x); }, false},
      {"log_sigmoid", [](const Tensor& x) { return log_sigmoid(x); }, false},
      {"pow", [](const Tensor& x) { return pow(x, 2.5); }, true},
      {"clamp", [](const Tensor& x) { return clamp(x, -0.7, 0.9); }, false},
      {"affine", [](const Tensor& x) { return affine(x, -1.5, 0.25); }, false},
      {"reciprocal", [](const Tensor& x) { return reciprocal(x); }, true},
      {"sin", [](const Tensor& x) { return sin(x); }, false},
      {"cos", [](const Tensor& x) { return cos(x); }, false},
      {"square", [](const Tensor& x) { return square(x); }, false},
  };
  for (const U& u : unaries) {
    const bool pos = u.positive;
    add(
        c, std::string(u.name) + "/contiguous",
        [pos](DType dt, uint64_t s) -> Inputs {
          return {pos ? positive_leaf({3, 5}, dt, s, 1) : leaf({3, 5}, dt, s, 1)};
        },
        [f = u.f](const Inputs& in) { return f(in[0]); });
    add(
        c, std::string(u.name) + "/transposed",
        [pos](DType dt, uint64_t s) -> Inputs {
          return {pos ? positive_leaf({5, 3}, dt, s, 2) : leaf({5, 3}, dt, s, 2)};
        },
        [f = u.f](const Inputs& in) { return f(in[0].t()); });
  }

  // Binary ops with and without broadcasting.
  struct B {
    const char* name;
    std::function<Tensor(const Tensor&, const Tensor&)> f;
  };
  const std::vector<B> binaries = {
      {"add", [](const Tensor& a, const Tensor& b) { return a + b; }},
      {"sub", [](const Tensor& a, const Tensor& b) { return a - b; }},
      {"mul", [](const Tensor& a, const Tensor& b) { return a * b; }},
      {"div", [](const Tensor& a, const Tensor& b) { return a / b; }},
      {"maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }},
      {"minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); }},
  };
  const std::vector<std::pair<Shape, Shape>> pairs = {
      {{3, 4}, {3, 4}}, {{3, 4}, {4}}, {{2, 1, 4}, {3, 1}}, {{}, {2, 3}}};
  for (const B& b : binaries)
    for (const auto& [sa, sb] : pairs) {
      add(
          c, std::string(b.name) + "/" + shape_str(sa) + "x" + shape_str(sb),
          [sa, sb, div = std::string(b.name) == "div"](DType dt, uint64_t s) -> Inputs {
            return {leaf(sa, dt, s, 3), div ? positive_leaf(sb, dt, s, 4) : leaf(sb, dt, s, 4)};
          },
          [f = b.f](const Inputs& in) { return f(in[0], in[1]); });
    }
  add(
      c, "mul/strided",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({4, 6}, dt, s, 5), leaf({3, 4}, dt, s, 6)};
      },
      [](const Inputs& in) { return in[0].narrow(1, 1, 3).t() * in[1]; });

  add(
      c, "where/broadcast",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({3, 4}, dt, s, 7), leaf({4}, dt, s, 8),
                bool_tensor({1, 0, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1}, {3, 4})};
      },
      [](const Inputs& in) { return where(in[2], in[0], in[1]); });
  add(
      c, "masked_fill",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({2, 5}, dt, s, 9), bool_tensor({1, 0, 1, 0, 0}, {5})};
      },
      [](const Inputs& in) { return masked_fill(in[0], in[1], -3.0); });
  for (auto [act, name] :
       {std::pair{GatedAct::GeluExact, "gelu"}, std::pair{GatedAct::GeluTanh, "gelu_tanh"},
        std::pair{GatedAct::Silu, "silu"}})
    add(
        c, std::string("gated/") + name,
        [](DType dt, uint64_t s) -> Inputs {
          return {leaf({3, 8}, dt, s, 10), leaf({3, 8}, dt, s, 11)};
        },
        [act](const Inputs& in) { return gated(act, in[0], in[1]); });

  // Reductions.
  add(
      c, "sum/all",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({3, 4}, dt, s, 12)};
      },
      [](const Inputs& in) { return sum(in[0]); });
  add(
      c, "sum/dims_keepdim",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({2, 3, 4}, dt, s, 13)};
      },
      [](const Inputs& in) {
        return sum(in[0], {0, 2}, true);
      });
  add(
      c, "sum/leading",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({5, 3, 4}, dt, s, 14)};
      },
      [](const Inputs& in) {
        return sum(in[0], {0, 1});
      });
  add(
      c, "mean/dim",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({3, 4}, dt, s, 15)};
      },
      [](const Inputs& in) { return mean(in[0], {-1}); });
  add(
      c, "amax/dim",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({3, 5}, dt, s, 16)};
      },
      [](const Inputs& in) { return amax(in[0], {1}); });
  add(
      c, "amin/all",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({3, 5}, dt, s, 17)};
      },
      [](const Inputs& in) { return amin(in[0]); });
  add(
      c, "logsumexp/dim",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({3, 5}, dt, s, 18)};
      },
      [](const Inputs& in) { return logsumexp(in[0], {1}); });
  add(
      c, "norm/dim",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({3, 5}, dt, s, 19)};
      },
      [](const Inputs& in) { return norm(in[0], {0}); });
  add(
      c, "cumsum/dim0",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({4, 3}, dt, s, 20)};
      },
      [](const Inputs& in) { return cumsum(in[0], 0); });
  add(
      c, "cumsum/transposed",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({4, 3}, dt, s, 21)};
      },
      [](const Inputs& in) { return cumsum(in[0].t(), 1); });

  // Views and copies.
  add(
      c, "view",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({2, 6}, dt, s, 22)};
      },
      [](const Inputs& in) {
        return in[0].view({3, 4});
      });
  add(
      c, "reshape/copying",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({4, 3}, dt, s, 23)};
      },
      [](const Inputs& in) {
        return in[0].t().reshape({2, 6});
      });
  add(
      c, "permute",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({2, 3, 4}, dt, s, 24)};
      },
      [](const Inputs& in) {
        return in[0].permute({2, 0, 1});
      });
  add(
      c, "narrow",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({5, 4}, dt, s, 25)};
      },
      [](const Inputs& in) { return in[0].narrow(0, 1, 3); });
  add(
      c, "select",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({3, 4}, dt, s, 26)};
      },
      [](const Inputs& in) { return in[0].select(1, 2); });
  add(
      c, "expand",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({3, 1}, dt, s, 27)};
      },
      [](const Inputs& in) {
        return in[0].expand({2, 3, 4}) * 1.0;
      });
  add(
      c, "squeeze_unsqueeze",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({3, 1, 4}, dt, s, 28)};
      },
      [](const Inputs& in) { return in[0].squeeze(1).unsqueeze(0); });
  add(
      c, "flatten",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({2, 3, 4}, dt, s, 29)};
      },
      [](const Inputs& in) { return in[0].flatten(1); });
  add(
      c, "clone",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({3, 4}, dt, s, 30)};
      },
      [](const Inputs& in) { return in[0].t().contiguous(); });
  {
    OpCase cast{"to_dtype/f32_roundtrip",
                [](DType dt, uint64_t s) -> Inputs {
                  return {leaf({3, 4}, dt, s, 31)};
                },
                [](const Inputs& in) { return in[0].to(DType::f32).to(in[0].dtype()); }};
    // f32 rounding makes the function a staircase at 1e-7: step over it.
    cast.step = 1e-2;
    cast.tolerance = 1e-4;
    c.push_back(cast);
  }
  add(
      c, "to_device/via_cpu",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({3, 4}, dt, s, 81)};
      },
      // Through the CPU and back to the input's device: two real copies when the input is on a
      // GPU (the CUDA suite), two recorded aliases on the CPU.
      [](const Inputs& in) { return in[0].to(Device::cpu()).t().to(in[0].device()) * 1.5; });
  add(
      c, "cat",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({2, 3}, dt, s, 32), leaf({2, 2}, dt, s, 33)};
      },
      [](const Inputs& in) {
        return cat({in[0], in[1]}, 1);
      });
  add(
      c, "stack",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({2, 3}, dt, s, 34), leaf({2, 3}, dt, s, 35)};
      },
      [](const Inputs& in) {
        return stack({in[0], in[1]}, 1);
      });
  add(
      c, "split",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({5, 3}, dt, s, 36)};
      },
      [](const Inputs& in) {
        auto parts = split(in[0], {2, 3}, 0);
        return cat({parts[1] * 2.0, parts[0]}, 0);
      });
  add(
      c, "chunk",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({3, 5}, dt, s, 37)};
      },
      [](const Inputs& in) {
        auto parts = chunk(in[0], 2, 1);
        return parts[0] * 3.0 + sum(exp(parts[1].narrow(1, 0, 2)), {1}, true);
      });

  // Linear algebra.
  add(
      c, "matmul/2d",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({3, 4}, dt, s, 38), leaf({4, 5}, dt, s, 39)};
      },
      [](const Inputs& in) { return matmul(in[0], in[1]); });
  add(
      c, "matmul/batched_broadcast",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({2, 1, 3, 4}, dt, s, 40), leaf({3, 4, 2}, dt, s, 41)};
      },
      [](const Inputs& in) { return matmul(in[0], in[1]); });
  add(
      c, "matmul/transposed",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({2, 4, 3}, dt, s, 42), leaf({5, 4}, dt, s, 43)};
      },
      [](const Inputs& in) { return matmul(in[0].transpose(1, 2), in[1].t()); });
  add(
      c, "linear/bias",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({2, 3, 4}, dt, s, 44), leaf({5, 4}, dt, s, 45), leaf({5}, dt, s, 46)};
      },
      [](const Inputs& in) { return linear(in[0], in[1], in[2]); });
  add(
      c, "linear/no_bias",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({3, 4}, dt, s, 47), leaf({2, 4}, dt, s, 48)};
      },
      [](const Inputs& in) { return linear(in[0], in[1]); });

  // Indexing.
  add(
      c, "index_select",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({4, 3}, dt, s, 49), int_tensor({2, 0, 2, 3}, {4})};
      },
      [](const Inputs& in) { return index_select(in[0], 0, in[1]); });
  add(
      c, "gather",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({3, 4}, dt, s, 50), int_tensor({0, 2, 2, 1, 2, 1, 0, 0}, {2, 4})};
      },
      [](const Inputs& in) { return gather(in[0], 0, in[1]); });
  add(
      c, "scatter_add",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({3, 4}, dt, s, 51), int_tensor({0, 2, 2, 1, 0, 0}, {2, 3}),
                leaf({2, 3}, dt, s, 52)};
      },
      [](const Inputs& in) { return scatter_add(in[0], 0, in[1], in[2]); });
  add(
      c, "embedding",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({6, 3}, dt, s, 53), int_tensor({5, 0, 5, 2}, {2, 2})};
      },
      [](const Inputs& in) { return embedding(in[0], in[1]); });

  // Fused NN ops.
  add(
      c, "softmax/last",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({3, 6}, dt, s, 54)};
      },
      [](const Inputs& in) { return softmax(in[0]); });
  add(
      c, "softmax/dim0",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({4, 3}, dt, s, 55)};
      },
      [](const Inputs& in) { return softmax(in[0], 0); });
  add(
      c, "log_softmax",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({3, 6}, dt, s, 56)};
      },
      [](const Inputs& in) { return log_softmax(in[0]); });
  add(
      c, "cross_entropy/mean_ignore_smoothing",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({2, 3, 7}, dt, s, 57), int_tensor({1, -100, 6, 0, 3, 3}, {2, 3})};
      },
      [](const Inputs& in) { return cross_entropy(in[0], in[1], -100, 0.1); });
  add(
      c, "cross_entropy/mean_ignore",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({4, 7}, dt, s, 81), int_tensor({1, -100, 6, 0}, {4})};
      },
      [](const Inputs& in) { return cross_entropy(in[0], in[1]); });
  add(
      c, "cross_entropy/none",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({4, 5}, dt, s, 58), int_tensor({4, 0, 2, 2}, {4})};
      },
      [](const Inputs& in) { return cross_entropy(in[0], in[1], -100, 0.0, "none"); });
  add(
      c, "layer_norm/affine",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({3, 6}, dt, s, 59), leaf({6}, dt, s, 60), leaf({6}, dt, s, 61)};
      },
      [](const Inputs& in) { return layer_norm(in[0], in[1], in[2]); });
  add(
      c, "layer_norm/plain",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({2, 2, 5}, dt, s, 62)};
      },
      [](const Inputs& in) { return layer_norm(in[0], Tensor(), Tensor()); });
  add(
      c, "rms_norm/weight",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({3, 6}, dt, s, 63), leaf({6}, dt, s, 64)};
      },
      [](const Inputs& in) { return rms_norm(in[0], in[1]); });
  add(
      c, "rms_norm/plain_transposed",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({5, 3}, dt, s, 65)};
      },
      [](const Inputs& in) { return rms_norm(in[0].t(), Tensor()); });
  add(
      c, "dropout",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({4, 8}, dt, s, 66)};
      },
      [](const Inputs& in) {
        return dropout(in[0], 0.3, RandomKey{7, uint32_t(RngStream::Dropout), 3});
      });
  add(
      c, "rope",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({2, 2, 5, 8}, dt, s, 67)};
      },
      [](const Inputs& in) { return rope(in[0], 10000.0, 3); });
  add(
      c, "attention/scaled",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({2, 2, 5, 4}, dt, s, 68), leaf({2, 2, 6, 4}, dt, s, 69),
                leaf({2, 2, 6, 4}, dt, s, 70)};
      },
      [](const Inputs& in) { return attention(in[0], in[1], in[2]); });
  add(
      c, "attention/causal",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({2, 2, 5, 4}, dt, s, 82), leaf({2, 2, 5, 4}, dt, s, 83),
                leaf({2, 2, 5, 4}, dt, s, 84)};
      },
      [](const Inputs& in) {
        AttentionOptions o;
        o.causal = true;
        return attention(in[0], in[1], in[2], o);
      });
  add(
      c, "attention/causal_bias_mask",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({2, 2, 5, 4}, dt, s, 71), leaf({2, 2, 5, 4}, dt, s, 72),
                leaf({2, 2, 5, 4}, dt, s, 73), leaf({1, 2, 5, 5}, dt, s, 74),
                bool_tensor({1, 1, 1, 1, 1, 1, 1, 0, 1, 1}, {2, 5})};
      },
      [](const Inputs& in) {
        AttentionOptions o;
        o.scale = 1.0;
        o.causal = true;
        o.bias = in[3];
        o.key_padding_mask = in[4];
        return attention(in[0], in[1], in[2], o);
      });
  add(
      c, "attention/bias_broadcast_rows",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({2, 2, 4, 4}, dt, s, 77), leaf({2, 2, 6, 4}, dt, s, 78),
                leaf({2, 2, 6, 4}, dt, s, 79), leaf({2, 1, 1, 6}, dt, s, 80)};
      },
      [](const Inputs& in) {
        AttentionOptions o;
        o.bias = in[3];  // one bias per (batch, key): broadcast over heads and query rows
        return attention(in[0], in[1], in[2], o);
      });
  add(
      c, "recompute",
      [](DType dt, uint64_t s) -> Inputs {
        return {leaf({3, 4}, dt, s, 75), leaf({4, 2}, dt, s, 76)};
      },
      [](const Inputs& in) {
        return recompute(
            [](const Inputs& x) { return tanh(matmul(x[0], x[1])) * x[0].narrow(1, 0, 2); }, in);
      });
  attach_benches(c);
  return c;
}

}  // namespace

const std::vector<OpCase>& op_cases() {
  static const std::vector<OpCase> cases = build_cases();
  return cases;
}

namespace {

// The ops whose gradient checks are cases of op_cases().
const std::vector<std::string>& local_op_names() {
  static const std::vector<std::string> names = {
      "neg",         "exp",     "log",         "sqrt",          "rsqrt",        "tanh",
      "sigmoid",     "relu",    "gelu",        "gelu_tanh",     "silu",         "abs",
      "log_sigmoid", "pow",     "clamp",       "affine",        "reciprocal",   "sin",
      "cos",         "square",  "add",         "sub",           "mul",          "div",
      "maximum",     "minimum", "where",       "gated",         "sum",          "mean",
      "amax",        "amin",    "cumsum",      "view",          "reshape",      "transpose",
      "permute",     "narrow",  "expand",      "squeeze",       "unsqueeze",    "clone",
      "to_dtype",    "cat",     "matmul",      "linear",        "index_select", "gather",
      "scatter_add", "softmax", "log_softmax", "cross_entropy", "layer_norm",   "rms_norm",
      "dropout",     "rope",    "attention",   "recompute",     "to_device"};
  return names;
}

// The families registered from outside core. Written only during static initialisation of the
// libraries that register (before main), read afterwards; the mutex makes either order safe.
struct Families {
  std::mutex mutex;
  std::map<std::string, std::vector<std::string>, std::less<>> names;
  std::unordered_set<std::string> all;
};
Families& families() {
  static Families f;  // constructed on first use, so registration order across files is safe
  return f;
}

}  // namespace

std::vector<std::string> core_op_names() {
  return local_op_names();
}

void register_op_family(std::string_view family, std::vector<std::string> names) {
  Families& f = families();
  const std::lock_guard lock(f.mutex);
  const auto& core = local_op_names();
  for (const std::string& n : names) {
    STRATA_CHECK(std::find(core.begin(), core.end(), n) == core.end(), "op registry: '", n,
                 "' of family ", family, " is a core op");
    STRATA_CHECK(f.all.insert(n).second, "op registry: '", n, "' is registered twice");
  }
  auto& list = f.names[std::string(family)];
  list.insert(list.end(), names.begin(), names.end());
}

std::vector<std::string> op_family(std::string_view family) {
  Families& f = families();
  const std::lock_guard lock(f.mutex);
  auto it = f.names.find(family);
  return it == f.names.end() ? std::vector<std::string>{} : it->second;
}

std::vector<std::string> differentiable_op_names() {
  std::vector<std::string> all = local_op_names();
  Families& f = families();
  const std::lock_guard lock(f.mutex);
  for (const auto& [family, names] : f.names) all.insert(all.end(), names.begin(), names.end());
  return all;
}

bool is_registered_op(const std::string& name) {
  static const std::unordered_set<std::string> core(local_op_names().begin(),
                                                    local_op_names().end());
  if (core.count(name)) return true;
  Families& f = families();
  const std::lock_guard lock(f.mutex);
  return f.all.count(name) > 0;
}

}  // namespace strata
