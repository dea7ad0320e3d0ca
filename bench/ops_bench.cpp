// Forward+backward of Strata's tensor ops (autograd included, fresh outputs every run), walking the
// op registry (core/ops/registry.h): the cases with a bench run at the shapes of
// bench/torch_ops_reference.py, so the two print comparable JSON lines.
//   strata_bench_ops [--threads N] [--reps R] [--only op,op] [--all]
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
#include "core/ops/registry.h"
#include "core/random/philox.h"

using namespace strata;

namespace {

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
  bool all = false;
  std::set<std::string> only;
  std::string only_list;
  bench::BenchFlags flags("strata_bench_ops", "Tensor ops, forward and backward; JSON lines.");
  flags.add("threads", &threads, "OpenMP threads", 1, 1024);
  flags.add("reps", &reps, "timed repetitions per op", 1, 1000000);
  flags.add("only", &only_list, "comma-separated op names to run (all)");
  flags.add_switch("all", &all,
                   "also every registry case without a bench, at its gradient-check shapes");
  flags.parse(argc, argv);
  std::stringstream ss(only_list);
  for (std::string s; std::getline(ss, s, ',');)
    if (!s.empty()) only.insert(s);
  Runtime::get().set_num_threads(threads);

  // The op registry is the list: every case with a bench (the shapes PyTorch's script runs), and
  // with --all every other case at its gradient-check shapes (per-op overhead, no reference).
  for (const OpCase& c : op_cases()) {
    if (!c.bench && !all) continue;
    const std::string name = c.bench ? c.bench->name : c.label;
    if (!only.empty() && !only.count(name)) continue;
    std::vector<Tensor> inputs = c.bench ? c.bench->make_inputs() : c.make_inputs(DType::f32, 1);
    std::vector<Tensor> leaves;
    for (const Tensor& t : inputs)
      if (t.requires_grad()) leaves.push_back(t);
    // The output gradient, made once outside the timed region; a scalar output backs off itself.
    Tensor dy;
    {
      const Tensor y = c.fn(inputs);
      if (y.numel() > 1) dy = randn(y.shape(), RandomKey{0, uint32_t(RngStream::Test), 99});
    }
    auto run = [&] {
      const Tensor y = c.fn(inputs);
      if (leaves.empty()) return;
      if (dy.defined())
        y.backward(dy);
      else
        y.backward();
    };
    const double ms = median_ms(run, leaves, warmup, reps);
    const Shape shape = c.bench ? c.bench->shape : inputs.front().shape();
    std::printf(
        "{\"bench\": \"op\", \"op\": \"%s\", \"impl\": \"strata\", \"threads\": %d, \"ms\": %.3f, "
        "\"shape\": %s, \"pass\": \"%s\"}\n",
        name.c_str(), threads, ms, shape_str(shape).c_str(), leaves.empty() ? "fwd" : "fwd+bwd");
    std::fflush(stdout);
  }
  return 0;
}
