#pragma once
// LM head: hidden [.., d_model] -> logits [.., vocab], with its own [vocab, d_model] weight or
// tied to the input embedding's table (then it owns no parameter and the table is listed once,
// under the embedding's name). The steps are virtual so that ParallelLMHead
// (models/tp_lm_head.h) can keep the logits split by vocabulary from the matmul through the loss.
#include <string>

#include "models/embedding.h"

namespace strata::models {

class LMHead : public Module {
 public:
  LMHead(int64_t d_model, int64_t vocab, Init init);       // untied
  explicit LMHead(std::shared_ptr<const Embedding> tied);  // tied

  // All the logits [.., vocab] (gathered over the group under tensor parallelism).
  Tensor forward(const Tensor& h) const { return gather_logits(local_logits(h)); }
  // The logits this process computes: all of them, or its vocab slice under tensor parallelism.
  virtual Tensor local_logits(const Tensor& h) const;
  // local_logits -> all the logits.
  virtual Tensor gather_logits(const Tensor& local) const { return local; }
  // Cross-entropy (strata::cross_entropy's ignore index -100 and reductions) of local_logits
  // against global target ids; under tensor parallelism without gathering the logits.
  virtual Tensor loss(const Tensor& local, const Tensor& targets,
                      const std::string& reduction = "mean") const;

  bool tied() const { return tied_ != nullptr; }
  // This process's weight: [vocab, d_model], or its rows under tensor parallelism.
  const Tensor& weight() const { return tied_ ? tied_->weight() : weight_; }

 protected:
  LMHead(std::string type, const Sharding& split, Init init);  // untied
  LMHead(std::string type, std::shared_ptr<const Embedding> tied);

 private:
  std::shared_ptr<const Embedding> tied_;
  Tensor unused_;
  Tensor& weight_;
};

}  // namespace strata::models
