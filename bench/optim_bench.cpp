// Optimizer step time per parameter: AdamW, AdamWScale, Lion, Sophia-G (its update; the Hessian
// EMA is timed apart, as it runs every k steps) and Adafactor, on the parameter shapes of one
// BERT-base layer stack slice (bench/torch_optim_reference.py times PyTorch's implementations on
// the same shapes and prints the same JSON lines; run_optim_bench.sh races the two).
//   strata_bench_optim [--threads N] [--reps R] [--only name,name]
#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_flags.h"
#include "core/median_time.h"
#include "core/ops.h"
#include "core/random/philox.h"
#include "optim/adafactor.h"
#include "optim/adamw.h"
#include "optim/lion.h"
#include "optim/sophia.h"

using namespace strata;

namespace {

// Two BERT-base layers' matrices and vectors: 14.2 M parameters in 20 tensors.
std::vector<Shape> shapes() {
  std::vector<Shape> s;
  for (int layer = 0; layer < 2; ++layer)
    for (const Shape& x : std::vector<Shape>{{768, 768},
                                             {768, 768},
                                             {768, 768},
                                             {768, 768},
                                             {3072, 768},
                                             {768, 3072},
                                             {768},
                                             {768},
                                             {3072},
                                             {768}})
      s.push_back(x);
  return s;
}

std::vector<optim::ParamGroup> groups(std::vector<Tensor>& params) {
  std::vector<optim::NamedParam> named;
  for (size_t i = 0; i < params.size(); ++i) named.push_back({"p" + std::to_string(i), params[i]});
  return optim::make_param_groups(named, {1e-4, 0.01, 0.9, 0.999, 1e-8});
}

double median_ms(const std::function<void()>& fn, int reps) {
  return 1e3 * median_seconds(reps, 2, fn);
}

}  // namespace

int main(int argc, char** argv) {
  prefer_passive_omp_wait(argv);
  int threads = 1, reps = 10;
  std::string only_list;
  bench::BenchFlags flags("strata_bench_optim", "Optimizer step time per parameter; JSON lines.");
  flags.add("threads", &threads, "OpenMP threads", 1, 1024);
  flags.add("reps", &reps, "timed steps per optimizer", 1, 100000);
  flags.add("only", &only_list, "comma-separated optimizer names to run (all)");
  flags.parse(argc, argv);
  std::set<std::string> only;
  std::stringstream ss(only_list);
  for (std::string s; std::getline(ss, s, ',');)
    if (!s.empty()) only.insert(s);
  Runtime::get().set_num_threads(threads);

  std::vector<Tensor> params;
  int64_t count = 0;
  uint64_t salt = 0;
  for (const Shape& s : shapes()) {
    Tensor p = randn(s, RandomKey{0, uint32_t(RngStream::Test), ++salt}) * 0.02;
    p.set_grad(randn(s, RandomKey{0, uint32_t(RngStream::Test), 1000 + salt}) * 1e-3);
    count += p.numel();
    params.push_back(p);
  }

  using Make = std::function<std::unique_ptr<optim::Optimizer>()>;
  const std::vector<std::pair<std::string, Make>> optimizers = {
      {"adamw", [&] { return std::make_unique<optim::AdamW>(groups(params)); }},
      {"adamwscale", [&] { return std::make_unique<optim::AdamWScale>(groups(params)); }},
      {"lion", [&] { return std::make_unique<optim::Lion>(groups(params)); }},
      {"sophiag",
       [&] { return std::make_unique<optim::Sophia>(groups(params), optim::SophiaOptions{}); }},
      {"adafactor",
       [&] {
         return std::make_unique<optim::Adafactor>(groups(params), optim::AdafactorOptions{});
       }},
  };
  for (const auto& [name, make] : optimizers) {
    if (!only.empty() && !only.count(name)) continue;
    auto opt = make();
    const double ms = median_ms([&] { opt->step(); }, reps);
    std::printf(
        "{\"bench\": \"optim\", \"optimizer\": \"%s\", \"impl\": \"strata\", \"threads\": %d, "
        "\"params\": %lld, \"ms\": %.3f, \"ns_per_param\": %.3f}\n",
        name.c_str(), threads, (long long)count, ms, ms * 1e6 / double(count));
    if (name == "sophiag") {
      auto* sophia = dynamic_cast<optim::Sophia*>(opt.get());
      const double h = median_ms([&] { sophia->update_hessian(); }, reps);
      std::printf(
          "{\"bench\": \"optim\", \"optimizer\": \"sophiag_hessian\", \"impl\": \"strata\", "
          "\"threads\": %d, \"params\": %lld, \"ms\": %.3f, \"ns_per_param\": %.3f}\n",
          threads, (long long)count, h, h * 1e6 / double(count));
    }
    std::fflush(stdout);
  }
  return 0;
}
