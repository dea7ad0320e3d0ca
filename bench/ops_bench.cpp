// Forward+backward of Strata's tensor ops (autograd included, fresh outputs every run) on the
// shapes of bench/torch_ops_reference.py, so the two print comparable JSON lines.
//   strata_bench_ops [--threads N] [--reps R] [--only op,op]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_flags.h"
#include "core/ops.h"
#include "core/random/philox.h"

using namespace strata;

namespace {

Tensor leaf(const Shape& s, uint64_t salt, double scale = 1.0) {
  Tensor t = randn(s, RandomKey{0, uint32_t(RngStream::Test), salt});
  if (scale != 1.0) t = t * scale;
  return t.set_requires_grad(true);
}

// Gradients are cleared outside the timed region (as torch_ops_reference.py does), so every run
// writes fresh .grad tensors instead of adding into the previous ones.
double median_ms(const std::function<void()>& fn, const std::vector<Tensor>& leaves, int warmup,
                 int reps) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    for (Tensor leaf : leaves) leaf.set_grad({});
    const auto a = std::chrono::steady_clock::now();
    fn();
    t.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  prefer_passive_omp_wait(argv);
  int threads = 1, reps = 10, warmup = 3;
  std::set<std::string> only;
  std::string only_list;
  bench::BenchFlags flags("strata_bench_ops", "Tensor ops, forward and backward; JSON lines.");
  flags.add("threads", &threads, "OpenMP threads", 1, 1024);
  flags.add("reps", &reps, "timed repetitions per op", 1, 1000000);
  flags.add("only", &only_list, "comma-separated op names to run (all)");
  flags.parse(argc, argv);
  std::stringstream ss(only_list);
  for (std::string s; std::getline(ss, s, ',');)
    if (!s.empty()) only.insert(s);
  Runtime::get().set_num_threads(threads);

  struct Op {
    Shape shape;
    std::function<void()> run;
    std::vector<Tensor> leaves;
  };
  std::vector<std::pair<std::string, Op>> ops;

  Tensor x_sm = leaf({4, 12, 512, 512}, 1), dy_sm = leaf({4, 12, 512, 512}, 2).detach();
  ops.push_back({"softmax", {{4, 12, 512, 512}, [&] { softmax(x_sm).backward(dy_sm); }, {x_sm}}});

  Tensor x_ln = leaf({4096, 768}, 3), w_ln = leaf({768}, 4), b_ln = leaf({768}, 5);
  Tensor dy_ln = leaf({4096, 768}, 6).detach();
  ops.push_back({"layer_norm",
                 {{4096, 768},
                  [&] { layer_norm(x_ln, w_ln, b_ln, 1e-5).backward(dy_ln); },
                  {x_ln, w_ln, b_ln}}});
  Tensor x_rms = leaf({4096, 768}, 7), w_rms = leaf({768}, 8);
  ops.push_back(
      {"rms_norm",
       {{4096, 768}, [&] { rms_norm(x_rms, w_rms, 1e-6).backward(dy_ln); }, {x_rms, w_rms}}});

  Tensor x_gelu = leaf({4096, 3072}, 9), dy_gelu = leaf({4096, 3072}, 10).detach();
  ops.push_back(
      {"gelu_tanh", {{4096, 3072}, [&] { gelu(x_gelu, true).backward(dy_gelu); }, {x_gelu}}});

  Tensor logits = leaf({2048, 32128}, 11, 3.0);
  std::vector<int64_t> tv(2048);
  for (int64_t i = 0; i < 2048; ++i)
    tv[i] = i % 10 == 0 ? -100 : int64_t(Philox(1, RngStream::Test, 0).bits(i) % 32128);
  Tensor target = from_vector(tv, {2048});
  ops.push_back({"cross_entropy",
                 {{2048, 32128}, [&] { cross_entropy(logits, target).backward(); }, {logits}}});

  Tensor q = leaf({4, 12, 512, 64}, 12), k = leaf({4, 12, 512, 64}, 13),
         v = leaf({4, 12, 512, 64}, 14);
  Tensor dy_att = leaf({4, 12, 512, 64}, 15).detach();
  ops.push_back(
      {"attention", {{4, 12, 512, 64}, [&] { attention(q, k, v).backward(dy_att); }, {q, k, v}}});
  AttentionOptions causal;
  causal.causal = true;
  ops.push_back(
      {"attention_causal",
       {{4, 12, 512, 64}, [&] { attention(q, k, v, causal).backward(dy_att); }, {q, k, v}}});

  for (auto& [name, op] : ops) {
    if (!only.empty() && !only.count(name)) continue;
    const double ms = median_ms(op.run, op.leaves, warmup, reps);
    std::printf(
        "{\"bench\": \"op\", \"op\": \"%s\", \"impl\": \"strata\", \"threads\": %d, \"ms\": %.3f, "
        "\"shape\": %s, \"pass\": \"fwd+bwd\"}\n",
        name.c_str(), threads, ms, shape_str(op.shape).c_str());
    std::fflush(stdout);
  }
  return 0;
}
