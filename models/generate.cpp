#include "models/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/autograd/grad_mode.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/random/philox.h"

namespace strata::models {

int64_t pick_token(const std::vector<double>& logits, const GenerateOptions& opt, double u) {
  STRATA_CHECK(!logits.empty(), "generate: empty logits row");
  if (opt.greedy) return int64_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  STRATA_CHECK(opt.temperature > 0, "generate: temperature must be > 0 when sampling, got ",
               opt.temperature);
  STRATA_CHECK(opt.top_p > 0 && opt.top_p <= 1, "generate: top_p must be in (0, 1], got ",
               opt.top_p);
  // Candidates by decreasing logit; ties keep the lower id first so the order is total.
  std::vector<int64_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return logits[size_t(a)] > logits[size_t(b)]; });
  size_t keep = order.size();
  if (opt.top_k > 0) keep = std::min(keep, size_t(opt.top_k));
  const double top = logits[size_t(order[0])];
  std::vector<double> p(keep);
  double total = 0;
  for (size_t i = 0; i < keep; ++i)
    total += p[i] = std::exp((logits[size_t(order[i])] - top) / opt.temperature);
  if (opt.top_p < 1) {
    double mass = 0;
    size_t n = 0;
    while (n < keep && mass < opt.top_p * total) mass += p[n++];
    keep = std::max<size_t>(n, 1);
    total = std::accumulate(p.begin(), p.begin() + ptrdiff_t(keep), 0.0);
  }
  const double target = u * total;
  double acc = 0;
  for (size_t i = 0; i < keep; ++i) {
    acc += p[i];
    if (target < acc) return order[i];
  }
  return order[keep - 1];
}

Tensor generate(CausalLM& model, const Tensor& prompt, const GenerateOptions& opt) {
  STRATA_CHECK(prompt.dim() == 2 && prompt.size(1) >= 1 &&
                   (prompt.dtype() == DType::i64 || prompt.dtype() == DType::i32),
               "generate: expected integer prompt ids [B, L] with L >= 1, got ",
               shape_str(prompt.shape()), " ", dtype_name(prompt.dtype()));
  STRATA_CHECK(opt.max_new_tokens >= 0, "generate: max_new_tokens must be >= 0, got ",
               opt.max_new_tokens);
  NoGradGuard no_grad;
  EvalModeGuard eval(model);
  const int64_t B = prompt.size(0), L = prompt.size(1), V = model.vocab_size();
  const int64_t total = L + opt.max_new_tokens;
  std::vector<int64_t> seq = prompt.to(DType::i64).contiguous().to_vector<int64_t>();
  // One growing token list per sequence.
  std::vector<std::vector<int64_t>> rows(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b)
    rows[size_t(b)].assign(seq.begin() + b * L, seq.begin() + (b + 1) * L);
  std::vector<bool> done(size_t(B), false);

  ModelCache cache;
  if (opt.use_cache) cache = model.make_cache(B, total);
  for (int64_t step = 0; step < opt.max_new_tokens; ++step) {
    const int64_t cur = L + step;
    Tensor logits;  // [B, t, V]
    if (opt.use_cache) {
      // First step: the whole prompt (prefill); then the one newest token.
      const int64_t from = step == 0 ? 0 : cur - 1;
      std::vector<int64_t> ids;
      for (int64_t b = 0; b < B; ++b)
        ids.insert(ids.end(), rows[size_t(b)].begin() + from, rows[size_t(b)].end());
      logits = model.forward_step(from_vector<int64_t>(ids, {B, cur - from}), cache);
    } else {
      std::vector<int64_t> ids;
      for (int64_t b = 0; b < B; ++b)
        ids.insert(ids.end(), rows[size_t(b)].begin(), rows[size_t(b)].end());
      logits = model.forward(from_vector<int64_t>(ids, {B, cur}));
    }
    const Tensor last = logits.select(1, logits.size(1) - 1).to(DType::f64).contiguous();
    const std::vector<double> all = last.to_vector<double>();
    const Philox rng(opt.seed, RngStream::Sampling, uint64_t(step));
    for (int64_t b = 0; b < B; ++b) {
      int64_t tok;
      if (done[size_t(b)]) {
        tok = opt.eos_id;
      } else {
        std::vector<double> row(all.begin() + b * V, all.begin() + (b + 1) * V);
        tok = pick_token(row, opt, opt.greedy ? 0.0 : rng.uniform_f64(uint64_t(b)));
        if (opt.eos_id >= 0 && tok == opt.eos_id) done[size_t(b)] = true;
      }
      rows[size_t(b)].push_back(tok);
    }
  }
  std::vector<int64_t> out;
  out.reserve(size_t(B * total));
  for (const auto& r : rows) out.insert(out.end(), r.begin(), r.end());
  return from_vector<int64_t>(out, {B, total});
}

}  // namespace strata::models
