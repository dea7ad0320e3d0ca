#include "optim/adafactor.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "optim/typed_update.h"

namespace strata::optim {

Adafactor::Adafactor(std::vector<ParamGroup> groups, const AdafactorOptions& options)
    : Optimizer(std::move(groups)), o_(options) {
  STRATA_CHECK(!o_.warmup_init || o_.relative_step,
               "adafactor: warmup_init needs relative_step (as HF: set optim.relative_step = "
               "true or optim.warmup_init = false)");
  STRATA_CHECK(o_.clip_threshold > 0, "adafactor: clip_threshold must be > 0, got ",
               o_.clip_threshold);
  STRATA_CHECK(o_.decay_rate < 0, "adafactor: decay_rate must be < 0 (HF: -0.8), got ",
               o_.decay_rate);
  init_state();
}

std::vector<Optimizer::StateSpec> Adafactor::state_specs(const Tensor& param) const {
  std::vector<StateSpec> specs;
  const Shape& s = param.shape();
  if (o_.momentum) specs.push_back({"exp_avg", s});
  if (s.size() >= 2) {
    specs.push_back({"exp_avg_sq_row", Shape(s.begin(), s.end() - 1)});
    Shape col(s.begin(), s.end() - 2);
    col.push_back(s.back());
    specs.push_back({"exp_avg_sq_col", col});
  } else {
    specs.push_back({"exp_avg_sq", s});
  }
  return specs;
}

double Adafactor::step_size(const Hyper& h, int64_t t, double rms) const {
  double rel = h.lr;
  if (o_.relative_step) {
    const double min_step = o_.warmup_init ? 1e-6 * double(t) : 1e-2;
    rel = std::min(min_step, 1.0 / std::sqrt(double(t)));
  }
  const double scale = o_.scale_parameter ? std::max(o_.eps2, rms) : 1.0;
  return scale * rel;
}

void Adafactor::update(const Hyper& h, const std::string& name, Tensor& param, const Tensor& grad,
                       std::vector<Tensor>& state, int64_t step) {
  const double a = step_size(h, step, o_.scale_parameter ? param_rms(name, param) : 0.0);
  const double b2t = 1.0 - std::pow(double(step), o_.decay_rate);
  const Shape& shape = param.shape();
  const int64_t n = param.numel();
  const bool factored = shape.size() >= 2;
  const size_t sq = o_.momentum ? 1 : 0;  // index of the first second-moment state
  detail::dispatch_update("adafactor", name, param, grad, [&](auto* p, const auto* g, auto s_tag) {
    using S = decltype(s_tag);
    const S beta = S(b2t), w = S(1.0 - b2t), eps1 = S(o_.eps1), one = S(1);
    std::vector<S> u(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const S gi = detail::load<S>(g[i]);
      u[i] = gi * gi + eps1;
    }
    if (factored) {
      const int64_t C = shape.back(), R = shape[shape.size() - 2];
      const int64_t B = (R * C) > 0 ? n / (R * C) : 0;
      S* row = detail::state_data<S>(state[sq]);
      S* col = detail::state_data<S>(state[sq + 1]);
      std::vector<S> rf(static_cast<size_t>(R)), cf(static_cast<size_t>(C));
      for (int64_t b = 0; b < B; ++b) {
        const S* ub = u.data() + b * R * C;
        S* rb = row + b * R;
        S* cb = col + b * C;
        // Means accumulated in double, rounded once (torch's float reductions of these short
        // rows are exact to about an ulp too).
        for (int64_t r = 0; r < R; ++r) {
          double s = 0;
          for (int64_t c = 0; c < C; ++c) s += double(ub[r * C + c]);
          rb[r] = rb[r] * beta + w * S(s / double(C));
        }
        for (int64_t c = 0; c < C; ++c) {
          double s = 0;
          for (int64_t r = 0; r < R; ++r) s += double(ub[r * C + c]);
          cb[c] = cb[c] * beta + w * S(s / double(R));
        }
        double rs = 0;
        for (int64_t r = 0; r < R; ++r) rs += double(rb[r]);
        const S row_mean = S(rs / double(R));
        for (int64_t r = 0; r < R; ++r) rf[r] = one / std::sqrt(rb[r] / row_mean);
        for (int64_t c = 0; c < C; ++c) cf[c] = one / std::sqrt(cb[c]);
        for (int64_t r = 0; r < R; ++r)
          for (int64_t c = 0; c < C; ++c) {
            const int64_t i = b * R * C + r * C + c;
            u[i] = (rf[r] * cf[c]) * detail::load<S>(g[i]);
          }
      }
    } else {
      S* v = detail::state_data<S>(state[sq]);
      for (int64_t i = 0; i < n; ++i) {
        v[i] = v[i] * beta + w * u[i];
        u[i] = (one / std::sqrt(v[i])) * detail::load<S>(g[i]);
      }
    }
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += double(u[i]) * double(u[i]);
    const double rms_u = n > 0 ? std::sqrt(ss / double(n)) : 0.0;
    const S div = std::max(S(rms_u) / S(o_.clip_threshold), one);
    const S step_s = S(a);
    for (int64_t i = 0; i < n; ++i) u[i] = (u[i] / div) * step_s;
    if (o_.momentum) {
      S* m = detail::state_data<S>(state[0]);
      const S b1 = S(h.beta1), w1 = S(1.0 - h.beta1);
      for (int64_t i = 0; i < n; ++i) {
        m[i] = m[i] * b1 + w1 * u[i];
        u[i] = m[i];
      }
    }
    const S neg_decay = S(-h.weight_decay * a);
    for (int64_t i = 0; i < n; ++i) {
      S pi = detail::load<S>(p[i]);
      if (h.weight_decay != 0.0) pi = pi + neg_decay * pi;
      detail::store(p[i], pi - u[i]);
    }
  });
}

}  // namespace strata::optim
