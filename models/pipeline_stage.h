#pragma once
// What the pipeline stages of every model share: which blocks a stage owns, and a parameterless
// module that rebuilds the whole model's dotted prefixes around the parts a stage owns.
//
// A stage module registers only its own parameters, under the SAME full names as the whole model
// ("layers.3.attn.q_proj.weight"). Module::init_parameters keys Philox by the full name, so a
// stage starts with exactly the whole model's numbers, and checkpoints do not depend on the
// layout. The model-specific stages live in pipeline_stage_{decoder,bert,t5}.h.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/module.h"

namespace strata::models {

// Stage s owns blocks [begin(s), end(s)) of the model's blocks in execution order (T5: the
// encoder's, then the decoder's). The first stage also owns the input embedding, the last the
// final norm, the head and the loss.
class StageLayout {
 public:
  // n_blocks / stages blocks per stage; the first n_blocks % stages stages take one more (the
  // last stage already carries the head and the loss). Throws if a stage would get no block.
  static StageLayout balanced(int64_t n_blocks, int stages);
  // Explicit block counts, one per stage; they must be positive and sum to n_blocks.
  static StageLayout from_counts(const std::vector<int64_t>& blocks_per_stage, int64_t n_blocks);

  int stages() const { return int(bounds_.size()) - 1; }
  int64_t begin(int stage) const;
  int64_t end(int stage) const;
  int64_t blocks() const { return bounds_.back(); }
  std::string str() const;  // block counts: "[2, 1, 1]"

 private:
  explicit StageLayout(std::vector<int64_t> bounds) : bounds_(std::move(bounds)) {}
  std::vector<int64_t> bounds_;  // stages + 1 prefix sums
};

// The part of a model one instance holds: blocks [begin, end) of the model's blocks in execution
// order, the "pre" part (the embeddings) when `pre`, and the "post" part (the final norm, the head
// and the loss) when `post`. The default is the whole model. Each model is defined once, with a
// constructor that takes its part, and a pipeline stage is the part StageLayout gives it
// (ModelPart::stage); every part keeps the whole model's parameter names and initial values.
struct ModelPart {
  int64_t begin = 0, end = -1;  // -1: every block
  bool pre = true, post = true;

  // Stage `stage` of `layout`, after checking that the layout covers the model's `blocks`;
  // errors name `who` and describe the model's blocks as `blocks_text` ("n_layers 2").
  static ModelPart stage(const StageLayout& layout, int stage, int64_t blocks, const char* who,
                         const std::string& blocks_text);
  // end resolved against the model's block count, and the range checked.
  ModelPart resolved(int64_t blocks, const char* who) const;
  bool whole(int64_t blocks) const {
    return pre && post && begin == 0 && (end < 0 || end == blocks);
  }
};

// A module without parameters of its own that only groups children under a name, so that a
// stage holding decoder block 3 can register it as "decoder" -> "layers" -> "3".
class ModuleScope : public Module {
 public:
  explicit ModuleScope(std::string type_name = "ModuleScope") : Module(std::move(type_name)) {}
  template <class M>
  std::shared_ptr<M> add(const std::string& name, std::shared_ptr<M> m) {
    return register_module(name, std::move(m));
  }
};

// Token accuracy counts of the last stage's forward in eval mode (the trainer's evaluation under
// pipeline parallelism): the positions that carry a loss, and those whose argmax is the target.
struct StageHits {
  int64_t correct = 0, counted = 0;
};
// logits [.., V] over the whole vocabulary, targets [..] integer (-100: no loss, not counted).
StageHits count_hits(const Tensor& logits, const Tensor& targets);

}  // namespace strata::models
