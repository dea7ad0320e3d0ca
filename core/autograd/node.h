#pragma once
// A node of the backward graph: given the gradients of an op's outputs it returns the gradients
// of the op's inputs, which flow along `next` edges to the producers of those inputs.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace strata::autograd {

class Node;

struct Edge {
  std::shared_ptr<Node> node;  // null: that input needs no gradient
  uint32_t input_nr = 0;       // which output of `node` the gradient belongs to
};

class Node {
 public:
  explicit Node(std::string name);
  // Tears down the chain of producers iteratively: a 10^5-node graph would overflow the stack
  // if each node's destructor destroyed its predecessor recursively.
  virtual ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // grads[i] is the gradient of output i (undefined when nothing flowed into it).
  virtual std::vector<Tensor> apply(std::vector<Tensor>&& grads) = 0;
  // Frees saved tensors once the node has run (unless the graph is retained).
  virtual void release() {}

  const std::string& name() const { return name_; }
  // Creation order: backward runs later nodes first, so gradients of the last layers (and their
  // data-parallel reduction) are ready first.
  uint64_t sequence_nr() const { return sequence_nr_; }

  std::vector<Edge> next;
  uint32_t num_outputs = 1;

 private:
  std::string name_;
  uint64_t sequence_nr_;
};

// A tensor kept for backward. It holds the data without the history (so saving an op's own output
// makes no reference cycle) and the storage version at save time, checked on use.
class SavedTensor {
 public:
  SavedTensor() = default;
  SavedTensor(const Tensor& t, const std::string& op);
  Tensor unpack() const;
  void reset() { data_ = Tensor(); }

 private:
  Tensor data_;
  uint64_t version_ = 0;
  std::string op_;
};

// The node type every op uses: a backward closure over saved tensors.
using BackwardFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& grads,
                                                     const std::vector<Tensor>& saved,
                                                     const std::vector<bool>& needs_grad)>;

class FunctionNode final : public Node {
 public:
  FunctionNode(std::string name, std::vector<SavedTensor> saved, std::vector<bool> needs_grad,
               BackwardFn fn);
  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override;
  void release() override;

 private:
  std::vector<SavedTensor> saved_;
  std::vector<bool> needs_grad_;
  BackwardFn fn_;
};

// Sink for a leaf: sums incoming gradients into leaf.grad, then fires the leaf's ready hooks.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf);
  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override;

 private:
  std::shared_ptr<TensorImpl> leaf_;
};

// The AccumulateGrad node of a leaf, created on first use and shared while the graph lives.
std::shared_ptr<Node> grad_accumulator(const Tensor& leaf);

// Records `outputs` as produced by an op with `inputs`, if grad mode is on and any input requires
// grad. `backward` receives the output gradients (undefined ones replaced by zeros), the saved
// tensors, and which inputs need a gradient; it returns one gradient per input (undefined allowed).
void record(const std::string& op, const std::vector<Tensor>& inputs,
            const std::vector<Tensor*>& outputs, const std::vector<Tensor>& saved,
            BackwardFn backward);

bool any_requires_grad(const std::vector<Tensor>& inputs);

}  // namespace strata::autograd
