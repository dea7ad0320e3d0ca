#include "core/autograd/node.h"

#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/ops/registry.h"

namespace strata::autograd {

namespace {
std::atomic<uint64_t> next_sequence_nr{0};
}

Node::Node(std::string name) : name_(std::move(name)), sequence_nr_(next_sequence_nr++) {}

Node::~Node() {
  std::vector<std::shared_ptr<Node>> pending;
  for (Edge& e : next)
    if (e.node) pending.push_back(std::move(e.node));
  while (!pending.empty()) {
    std::shared_ptr<Node> n = std::move(pending.back());
    pending.pop_back();
    if (n.use_count() == 1) {  // last owner: take its edges so its destructor has none to follow
      for (Edge& e : n->next)
        if (e.node) pending.push_back(std::move(e.node));
      n->next.clear();
    }
  }
}

SavedTensor::SavedTensor(const Tensor& t, const std::string& op) : op_(op) {
  if (!t.defined()) return;
  data_ = t.detach();
  version_ = t.storage().version();
}

Tensor SavedTensor::unpack() const {
  if (!data_.defined()) return data_;
  STRATA_CHECK(data_.storage().version() == version_, "backward of '", op_,
               "': a tensor it saved (shape ", shape_str(data_.shape()),
               ") was modified in place after the forward pass (version ", version_, " -> ",
               data_.storage().version(),
               "); clone it before the in-place write or move the write after backward");
  return data_;
}

FunctionNode::FunctionNode(std::string name, std::vector<SavedTensor> saved,
                           std::vector<bool> needs_grad, BackwardFn fn)
    : Node(std::move(name)),
      saved_(std::move(saved)),
      needs_grad_(std::move(needs_grad)),
      fn_(std::move(fn)) {}

std::vector<Tensor> FunctionNode::apply(std::vector<Tensor>&& grads) {
  STRATA_CHECK(fn_, "backward of '", name(),
               "' ran twice; pass retain_graph=true to backward() to run the graph again");
  std::vector<Tensor> saved;
  saved.reserve(saved_.size());
  for (const auto& s : saved_) saved.push_back(s.unpack());
  auto out = fn_(grads, saved, needs_grad_);
  STRATA_CHECK(out.size() == next.size(), "backward of '", name(), "' returned ", out.size(),
               " gradients for ", next.size(), " inputs");
  return out;
}

void FunctionNode::release() {
  saved_.clear();
  fn_ = nullptr;
}

AccumulateGrad::AccumulateGrad(std::shared_ptr<TensorImpl> leaf)
    : Node("AccumulateGrad"), leaf_(std::move(leaf)) {}

std::vector<Tensor> AccumulateGrad::apply(std::vector<Tensor>&& grads) {
  Tensor g = std::move(grads.at(0));
  if (!g.defined()) return {};
  Tensor leaf(leaf_);
  STRATA_CHECK(g.shape() == leaf_->shape, "gradient of shape ", shape_str(g.shape()),
               " does not match its leaf of shape ", shape_str(leaf_->shape));
  if (g.dtype() != leaf_->dtype) g = g.to(leaf_->dtype);
  if (!leaf_->grad) {
    // Take the incoming buffer when nobody else can see it; copy views and shared buffers.
    const bool exclusive = g.is_contiguous() &&
                           g.storage().nbytes() == size_t(g.numel()) * g.element_size() &&
                           g.impl_ptr().use_count() == 1 && g.impl()->storage.use_count() == 1;
    leaf_->grad = exclusive ? g.impl_ptr() : g.clone().impl_ptr();
  } else {
    Tensor(leaf_->grad).add_(g);
  }
  const Tensor final_grad(leaf_->grad);
  for (const auto& hook : leaf_->grad_ready_hooks) hook(final_grad);
  return {};
}

std::shared_ptr<Node> grad_accumulator(const Tensor& leaf) {
  TensorImpl* impl = leaf.impl();
  if (auto acc = impl->grad_accumulator.lock()) return acc;
  auto acc = std::make_shared<AccumulateGrad>(leaf.impl_ptr());
  impl->grad_accumulator = acc;
  return acc;
}

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  for (const auto& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void record(const std::string& op, const std::vector<Tensor>& inputs,
            const std::vector<Tensor*>& outputs, const std::vector<Tensor>& saved,
            BackwardFn backward) {
  if (!GradMode::is_enabled() || !any_requires_grad(inputs)) return;
  STRATA_CHECK(is_registered_op(op), "op '", op,
               "' records history but is not in the op registry (core/ops/registry.cpp): add it "
               "there with a gradient-check case");
  std::vector<SavedTensor> saved_tensors;
  saved_tensors.reserve(saved.size());
  for (const auto& s : saved) saved_tensors.emplace_back(s, op);
  std::vector<bool> needs(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i)
    needs[i] = inputs[i].defined() && inputs[i].requires_grad();

  // Output gradients that never arrived are zeros of the output's shape.
  std::vector<std::pair<Shape, DType>> out_meta;
  for (Tensor* o : outputs) out_meta.emplace_back(o->shape(), o->dtype());
  Device dev = outputs.front()->device();
  auto fn = [backward = std::move(backward), out_meta, dev](const std::vector<Tensor>& grads,
                                                            const std::vector<Tensor>& saved_values,
                                                            const std::vector<bool>& needs_grad) {
    std::vector<Tensor> filled = grads;
    for (size_t i = 0; i < filled.size(); ++i)
      if (!filled[i].defined()) filled[i] = zeros(out_meta[i].first, out_meta[i].second, dev);
    return backward(filled, saved_values, needs_grad);
  };
  auto node =
      std::make_shared<FunctionNode>(op, std::move(saved_tensors), std::move(needs), std::move(fn));
  node->num_outputs = uint32_t(outputs.size());
  node->next.resize(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& in = inputs[i];
    if (!in.defined() || !in.requires_grad()) continue;
    if (in.grad_fn())
      node->next[i] = Edge{in.grad_fn(), in.impl()->output_nr};
    else
      node->next[i] = Edge{grad_accumulator(in), 0};
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    TensorImpl* o = outputs[i]->impl();
    o->requires_grad = true;
    o->grad_fn = node;
    o->output_nr = uint32_t(i);
  }
}

}  // namespace strata::autograd
