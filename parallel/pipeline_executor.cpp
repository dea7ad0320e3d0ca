#include "parallel/pipeline_executor.h"

#include <chrono>
#include <map>
#include <memory>
#include <utility>

#include "core/autograd/engine.h"
#include "core/autograd/grad_mode.h"
#include "core/error.h"
#include "core/ops.h"

namespace strata::parallel {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Adds the time its scope takes to `total`.
class Timed {
 public:
  explicit Timed(double& total) : total_(total), t0_(Clock::now()) {}
  ~Timed() { total_ += seconds_since(t0_); }
  Timed(const Timed&) = delete;
  Timed& operator=(const Timed&) = delete;

 private:
  double& total_;
  Clock::time_point t0_;
};

std::string tag(const char* kind, int64_t micro, size_t k) {
  return std::string("pp.") + kind + "." + std::to_string(micro) + "." + std::to_string(k);
}

// What a stage keeps of a micro-batch between its forward and its backward.
struct InFlight {
  std::vector<Tensor> inputs;   // received leaves (their .grad goes back)
  std::vector<Tensor> outputs;  // sent tensors, with their history
  std::vector<Tensor> output_grads;
  Tensor scaled_loss;  // last stage: loss / m
};

// A send in flight and the buffer it reads, which must outlive it.
struct PendingSend {
  std::unique_ptr<Work> work;
  Tensor buffer;
};

}  // namespace

PipelineExecutor::PipelineExecutor(Communicator& pp, PipelineSchedule schedule)
    : pp_(pp), schedule_(std::move(schedule)) {
  STRATA_CHECK(pp_.size() == schedule_.stages(), "pipeline: the ", pp_.name(), " group has ",
               pp_.size(), " ranks but the schedule (", schedule_.str(), ") has ",
               schedule_.stages(), " stages");
  schedule_.validate();
}

PipelineStepResult PipelineExecutor::run(StageCompute& stage) {
  const Clock::time_point t_start = Clock::now();
  const int s = pp_.rank(), p = pp_.size();
  const bool first = s == 0, last = s == p - 1;
  const int64_t m = schedule_.micro_batches();
  PipelineStepResult result;
  PipelineStats& st = result.stats;
  std::map<int64_t, InFlight> live;
  std::vector<PendingSend> sends;
  double loss_sum = 0;

  // Sends finished by now release their buffers early; the rest are waited for at the end.
  auto reap = [&] { std::erase_if(sends, [](PendingSend& ps) { return ps.work->done(); }); };

  for (const StageOp& op : schedule_.program(s)) {
    const int64_t i = op.micro;
    switch (op.kind) {
      case OpKind::RecvActivation: {
        InFlight& f = live[i];
        const auto specs = stage.input_specs(i);
        for (size_t k = 0; k < specs.size(); ++k) {
          Tensor t = Tensor::empty(specs[k].shape, specs[k].dtype, stage.stage_device());
          {
            Timed w(st.wait_s);
            pp_.recv(t, s - 1, tag("act", i, k));
          }
          if (is_floating(t.dtype())) t.set_requires_grad(true);
          f.inputs.push_back(std::move(t));
        }
        break;
      }
      case OpKind::Forward: {
        InFlight& f = live[i];
        std::vector<Tensor> out;
        {
          Timed b(st.forward_s);
          EnableGradGuard grad;
          out = stage.forward(i, f.inputs);
          if (last) {
            STRATA_CHECK(out.size() == 1 && out[0].numel() == 1,
                         "pipeline: the last stage's forward must return one scalar loss, got ",
                         out.size(), " tensors");
            loss_sum += out[0].item<double>();
            f.scaled_loss = out[0] * (1.0 / double(m));
          }
        }
        if (!last) {
          const auto specs = stage.output_specs(i);
          STRATA_CHECK(out.size() == specs.size(), "pipeline: stage ", s, " returned ", out.size(),
                       " tensors for micro-batch ", i, " but declares ", specs.size(), " outputs");
          for (size_t k = 0; k < out.size(); ++k) {
            const TensorSpec got{out[k].shape(), out[k].dtype()};
            STRATA_CHECK(got == specs[k], "pipeline: stage ", s, " output ", k, " of micro-batch ",
                         i, " is ", got.str(), " but declared ", specs[k].str());
          }
          f.outputs = std::move(out);
        }
        break;
      }
      case OpKind::SendActivation: {
        const InFlight& f = live.at(i);
        for (size_t k = 0; k < f.outputs.size(); ++k) {
          Tensor buf = f.outputs[k].detach().contiguous();
          sends.push_back({pp_.send_async(buf, s + 1, tag("act", i, k)), buf});
        }
        reap();
        break;
      }
      case OpKind::RecvGrad: {
        InFlight& f = live.at(i);
        for (size_t k = 0; k < f.outputs.size(); ++k) {
          Tensor g = Tensor::empty(f.outputs[k].shape(), f.outputs[k].dtype(), f.outputs[k].device());
          Timed w(st.wait_s);
          pp_.recv(g, s + 1, tag("grad", i, k));
          f.output_grads.push_back(std::move(g));
        }
        break;
      }
      case OpKind::Backward: {
        InFlight& f = live.at(i);
        Timed b(st.backward_s);
        std::vector<Tensor> roots, grads;
        if (last) {
          roots.push_back(f.scaled_loss);
          grads.push_back(ones(f.scaled_loss.shape(), f.scaled_loss.dtype()));
        } else {
          for (size_t k = 0; k < f.outputs.size(); ++k)
            if (f.outputs[k].requires_grad()) {
              roots.push_back(f.outputs[k]);
              grads.push_back(f.output_grads[k]);
            }
        }
        if (!roots.empty()) autograd::run_backward(roots, grads);
        f.outputs.clear();
        f.output_grads.clear();
        f.scaled_loss = Tensor();
        if (first) live.erase(i);
        break;
      }
      case OpKind::SendGrad: {
        InFlight& f = live.at(i);
        for (size_t k = 0; k < f.inputs.size(); ++k) {
          const Tensor& x = f.inputs[k];
          // An input that did not reach the outputs has no gradient: send zeros.
          Tensor g = x.grad().defined() ? x.grad().contiguous() : zeros(x.shape(), x.dtype(), x.device());
          sends.push_back({pp_.send_async(g, s - 1, tag("grad", i, k)), g});
        }
        live.erase(i);
        reap();
        break;
      }
    }
  }
  {
    Timed w(st.wait_s);
    for (auto& ps : sends) ps.work->wait();
    sends.clear();
  }
  st.wall_s = seconds_since(t_start);

  sync_tied_gradients(stage);
  Tensor loss = from_vector<double>({loss_sum / double(m)}, {1});
  if (p > 1) pp_.broadcast(loss, p - 1, "pp.loss");
  result.loss = loss.item<double>();
  return result;
}

void PipelineExecutor::sync_tied_gradients(StageCompute& stage) {
  const int s = pp_.rank(), p = pp_.size();
  const std::vector<Tensor> tied = stage.tied_parameters();
  if (p == 1) return;
  const bool first = s == 0, last = s == p - 1;
  STRATA_CHECK(tied.empty() || first || last, "pipeline: stage ", s, " of ", p,
               " holds tied parameters; only the first and the last stage may");
  if (!first && !last) return;
  const int peer = first ? p - 1 : 0;
  NoGradGuard no_grad;
  std::vector<Tensor> mine, theirs;
  std::vector<std::unique_ptr<Work>> works;
  for (size_t k = 0; k < tied.size(); ++k) {
    const Tensor& w = tied[k];
    mine.push_back(w.grad().defined() ? w.grad().contiguous() : zeros(w.shape(), w.dtype(), w.device()));
    works.push_back(pp_.send_async(mine.back(), peer, tag("tied", 0, k)));
  }
  for (size_t k = 0; k < tied.size(); ++k) {
    theirs.push_back(Tensor::empty(tied[k].shape(), mine[k].dtype(), mine[k].device()));
    pp_.recv(theirs.back(), peer, tag("tied", 0, k));
  }
  for (auto& w : works) w->wait();
  // Both replicas add in the same order (first stage's + last stage's), so they stay bitwise
  // equal.
  for (size_t k = 0; k < tied.size(); ++k) {
    Tensor w = tied[k];
    w.set_grad(first ? mine[k] + theirs[k] : theirs[k] + mine[k]);
  }
}

}  // namespace strata::parallel
