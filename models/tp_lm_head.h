#pragma once
// A vocab-parallel LM head: rank r of a tensor-parallel group holds rows [r * V/tp, (r+1) * V/tp)
// of the [V, d_model] weight (its own, or the tied VocabParallelEmbedding's table), computes that
// slice of the logits from the replicated hidden states (copy_to_tp), and the loss is the
// vocab-parallel cross-entropy, so the full logits are gathered only when asked for (forward).
#include "models/lm_head.h"
#include "models/tp_embedding.h"
#include "parallel/communicator.h"

namespace strata::models {

class ParallelLMHead : public LMHead {
 public:
  // Untied; throws unless tp.size() divides vocab.
  ParallelLMHead(int64_t d_model, int64_t vocab, Init init, parallel::Communicator& tp);
  // Tied to the embedding's table (and its split).
  explicit ParallelLMHead(std::shared_ptr<const VocabParallelEmbedding> tied);

  Tensor local_logits(const Tensor& h) const override;  // [.., vocab / tp]
  Tensor gather_logits(const Tensor& local) const override;
  Tensor loss(const Tensor& local, const Tensor& targets,
              const std::string& reduction = "mean") const override;

 private:
  parallel::Communicator& tp_;
};

}  // namespace strata::models
