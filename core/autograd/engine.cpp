#include "core/autograd/engine.h"

#include <queue>
#include <unordered_map>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/error.h"
#include "core/ops/elementwise.h"

namespace strata::autograd {

namespace {

struct LaterFirst {
  bool operator()(const Node* a, const Node* b) const {
    return a->sequence_nr() < b->sequence_nr();
  }
};

void accumulate(Tensor& slot, Tensor g) {
  if (!g.defined()) return;
  if (!slot.defined()) {
    slot = std::move(g);
  } else {
    slot = slot + g;  // out of place: `slot` may alias a tensor the caller still holds
  }
}

}  // namespace

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                  bool retain_graph) {
  STRATA_CHECK(roots.size() == grads.size(), "backward: ", roots.size(), " outputs but ",
               grads.size(), " gradients");
  NoGradGuard no_grad;

  // Seed: gradients of the roots, attached to the node that produced each root.
  std::unordered_map<Node*, std::vector<Tensor>> buffers;
  std::vector<std::shared_ptr<Node>> seeds;
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    STRATA_CHECK(r.requires_grad(), "backward: output ", i,
                 " does not require grad (no input of the computation requires grad, or it was "
                 "computed under NoGradGuard)");
    STRATA_CHECK(grads[i].shape() == r.shape(), "backward: gradient of shape ",
                 shape_str(grads[i].shape()), " for an output of shape ", shape_str(r.shape()));
    std::shared_ptr<Node> node = r.grad_fn() ? r.grad_fn() : grad_accumulator(r);
    auto& buf = buffers[node.get()];
    buf.resize(node->num_outputs);
    accumulate(buf[r.is_leaf() ? 0 : r.impl()->output_nr], grads[i]);
    seeds.push_back(std::move(node));
  }

  // Count, for every reachable node, how many edges lead into it (iterative DFS).
  std::unordered_map<Node*, int> deps;
  std::unordered_map<Node*, bool> seen;
  std::vector<Node*> stack;
  for (auto& s : seeds)
    if (!seen[s.get()]) {
      seen[s.get()] = true;
      stack.push_back(s.get());
    }
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next) {
      if (!e.node) continue;
      ++deps[e.node.get()];
      if (!seen[e.node.get()]) {
        seen[e.node.get()] = true;
        stack.push_back(e.node.get());
      }
    }
  }

  std::priority_queue<Node*, std::vector<Node*>, LaterFirst> ready;
  for (auto& s : seeds)
    if (deps[s.get()] == 0) ready.push(s.get());
  // A seed may be pushed twice if two roots share a node; the buffer map entry tells.
  std::unordered_map<Node*, bool> done;

  while (!ready.empty()) {
    Node* n = ready.top();
    ready.pop();
    if (done[n]) continue;
    done[n] = true;
    auto it = buffers.find(n);
    std::vector<Tensor> in_grads =
        it != buffers.end() ? std::move(it->second) : std::vector<Tensor>(n->num_outputs);
    in_grads.resize(n->num_outputs);
    if (it != buffers.end()) buffers.erase(it);

    std::vector<Tensor> out_grads = n->apply(std::move(in_grads));
    if (!retain_graph) n->release();

    for (size_t i = 0; i < n->next.size(); ++i) {
      const Edge& e = n->next[i];
      if (!e.node) continue;
      Node* target = e.node.get();
      if (i < out_grads.size() && out_grads[i].defined()) {
        auto& buf = buffers[target];
        buf.resize(target->num_outputs);
        accumulate(buf[e.input_nr], std::move(out_grads[i]));
      }
      if (--deps[target] == 0) ready.push(target);
    }
  }
}

}  // namespace strata::autograd
