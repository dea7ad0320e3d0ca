#include "parallel/grad_reducer.h"

#include <algorithm>

#include "core/autograd/grad_mode.h"
#include "core/error.h"
#include "core/ops.h"

namespace strata::parallel {

struct GradReducer::State {
  struct Slot {
    std::string name;
    Tensor param;
    size_t bucket = 0;
    int64_t offset = 0;  // in the bucket's buffer, in elements
    bool ready = false;
  };
  struct Bucket {
    Tensor buffer;
    std::vector<size_t> slots;
    size_t pending = 0;
    std::unique_ptr<Work> work;
  };

  Communicator* comm = nullptr;
  std::vector<Slot> slots;
  std::vector<Bucket> buckets;
  bool sync = true;
  size_t next_launch = 0;
  int launched_in_backward = 0;
  int last_launched_in_backward = 0;

  Tensor slot_view(const Slot& s) const {
    return buckets[s.bucket].buffer.narrow(0, s.offset, s.param.numel()).view(s.param.shape());
  }

  void launch(size_t b) {
    buckets[b].work = comm->all_reduce_async(buckets[b].buffer, ReduceOp::Sum,
                                             "dp.grad_bucket." + std::to_string(b));
  }

  // Bucket order, never readiness order: every rank issues the same collectives in sequence.
  void launch_ready() {
    while (next_launch < buckets.size() && buckets[next_launch].pending == 0) {
      launch(next_launch++);
      ++launched_in_backward;
    }
  }

  void on_grad_ready(size_t i, const Tensor& grad) {
    if (!sync) return;
    Slot& s = slots[i];
    STRATA_CHECK(!s.ready, "GradReducer: the gradient of '", s.name,
                 "' became final twice before finish(): run every micro-batch but the last under "
                 "no_sync(), and call finish() after the last backward");
    NoGradGuard ng;
    slot_view(s).copy_(grad);
    s.ready = true;
    if (--buckets[s.bucket].pending == 0) launch_ready();
  }
};

GradReducer::NoSync::NoSync(GradReducer& r) : r_(&r) {
  r_->set_sync(false);
}

GradReducer::NoSync& GradReducer::NoSync::operator=(NoSync&& o) noexcept {
  if (this != &o) {
    if (r_) r_->set_sync(true);
    r_ = std::exchange(o.r_, nullptr);
  }
  return *this;
}

GradReducer::NoSync::~NoSync() {
  if (r_) r_->set_sync(true);
}

GradReducer::GradReducer(const std::vector<std::pair<std::string, Tensor>>& params,
                         Communicator& dp, GradReducerOptions options)
    : state_(std::make_shared<State>()) {
  STRATA_CHECK(options.bucket_bytes > 0, "GradReducer: bucket_bytes must be positive, got ",
               options.bucket_bytes);
  State& st = *state_;
  st.comm = &dp;
  for (const auto& [name, p] : params)
    if (p.requires_grad()) st.slots.push_back({name, p});
  std::reverse(st.slots.begin(), st.slots.end());

  // Fill buckets in slot order; a new bucket starts when the dtype changes or the next parameter
  // would overflow a non-empty bucket.
  std::vector<int64_t> numel;
  int64_t bytes = 0;
  for (size_t i = 0; i < st.slots.size(); ++i) {
    State::Slot& s = st.slots[i];
    const int64_t nb = s.param.numel() * int64_t(s.param.element_size());
    const bool fresh = st.buckets.empty() ||
                       st.slots[st.buckets.back().slots.front()].param.dtype() != s.param.dtype() ||
                       bytes + nb > options.bucket_bytes;
    if (fresh) {
      st.buckets.emplace_back();
      numel.push_back(0);
      bytes = 0;
    }
    s.bucket = st.buckets.size() - 1;
    s.offset = numel.back();
    numel.back() += s.param.numel();
    bytes += nb;
    st.buckets.back().slots.push_back(i);
  }
  for (size_t b = 0; b < st.buckets.size(); ++b) {
    const Tensor& first = st.slots[st.buckets[b].slots.front()].param;
    // On the parameters' device, so a GPU run reduces over NCCL without a trip to the host.
    st.buckets[b].buffer = zeros({numel[b]}, first.dtype(), first.device());
    st.buckets[b].pending = st.buckets[b].slots.size();
  }

  // Every rank must bucket the same parameters alike: compare a signature (max and -min over the
  // group in one all-reduce), so that a mismatch throws on every rank rather than on some.
  uint64_t h = 1469598103934665603ull;  // FNV-1a over names, sizes and dtypes
  auto mix = [&h](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
  for (const auto& s : st.slots) {
    for (char ch : s.name) mix(uint8_t(ch));
    mix(uint64_t(s.param.numel()));
    mix(uint64_t(s.param.dtype()));
  }
  const int64_t sig[2] = {int64_t(h >> 1), int64_t(st.slots.size())};
  Tensor check = from_vector<int64_t>({sig[0], sig[1], -sig[0], -sig[1]}, {4});
  dp.all_reduce(check, ReduceOp::Max, "dp.grad_reducer.layout");
  const auto c = check.to_vector<int64_t>();
  STRATA_CHECK(c[0] == -c[2] && c[1] == -c[3], "GradReducer: the ranks of group '", dp.name(),
               "' disagree on the parameters to reduce (names, sizes or dtypes; this rank has ",
               st.slots.size(), "); every data-parallel rank must build the same model");

  const std::weak_ptr<State> weak = state_;
  for (size_t i = 0; i < st.slots.size(); ++i)
    st.slots[i].param.register_grad_ready_hook([weak, i](const Tensor& grad) {
      if (auto s = weak.lock()) s->on_grad_ready(i, grad);
    });
}

GradReducer::~GradReducer() {
  for (auto& b : state_->buckets)
    if (b.work) b.work->wait();
}

void GradReducer::set_sync(bool on) {
  state_->sync = on;
}
bool GradReducer::sync() const {
  return state_->sync;
}

void GradReducer::finish() {
  State& st = *state_;
  STRATA_CHECK(st.sync,
               "GradReducer::finish: called inside no_sync(); end the NoSync scope "
               "before the last micro-batch's backward");
  NoGradGuard ng;
  // Parameters whose hook did not fire in this pass: their accumulated grad, or zeros.
  for (size_t b = st.next_launch; b < st.buckets.size(); ++b) {
    for (size_t i : st.buckets[b].slots) {
      State::Slot& s = st.slots[i];
      if (s.ready) continue;
      const Tensor g = s.param.grad();
      if (g.defined())
        st.slot_view(s).copy_(g);
      else
        st.slot_view(s).zero_();
      s.ready = true;
    }
    st.buckets[b].pending = 0;
  }
  st.last_launched_in_backward = st.launched_in_backward;
  while (st.next_launch < st.buckets.size()) st.launch(st.next_launch++);

  const double scale = 1.0 / double(st.comm->size());
  for (auto& b : st.buckets) {
    b.work->wait();
    b.work.reset();
    if (st.comm->size() > 1) b.buffer.mul_(scale);
  }
  for (auto& s : st.slots) {
    const Tensor avg = st.slot_view(s);
    Tensor g = s.param.grad();
    if (g.defined() && g.is_contiguous())
      g.copy_(avg);
    else
      s.param.set_grad(avg.clone());
    s.ready = false;
  }
  for (auto& b : st.buckets) b.pending = b.slots.size();
  st.next_launch = 0;
  st.launched_in_backward = 0;
}

std::vector<std::vector<std::string>> GradReducer::bucket_names() const {
  std::vector<std::vector<std::string>> out;
  for (const auto& b : state_->buckets) {
    out.emplace_back();
    for (size_t i : b.slots) out.back().push_back(state_->slots[i].name);
  }
  return out;
}

int GradReducer::launched_during_backward() const {
  return state_->last_launched_in_backward;
}

void broadcast_parameters(const std::vector<std::pair<std::string, Tensor>>& params,
                          Communicator& dp) {
  NoGradGuard ng;
  for (const auto& [name, p] : params) {
    Tensor t = p;
    STRATA_CHECK(t.is_contiguous(), "broadcast_parameters: '", name, "' is not contiguous");
    dp.broadcast(t, 0, "dp.broadcast_parameters");
  }
}

}  // namespace strata::parallel
