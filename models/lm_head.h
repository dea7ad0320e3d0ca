#pragma once
// LM head: hidden [.., d_model] -> logits [.., vocab], with its own [vocab, d_model] weight or
// tied to the input embedding's table (then it owns no parameter and the table is listed once,
// under the embedding's name).
#include "models/embedding.h"

namespace strata::models {

class LMHead : public Module {
 public:
  LMHead(int64_t d_model, int64_t vocab, Init init);       // untied
  explicit LMHead(std::shared_ptr<const Embedding> tied);  // tied
  Tensor forward(const Tensor& h) const;
  bool tied() const { return tied_ != nullptr; }
  const Tensor& weight() const { return tied_ ? tied_->weight() : weight_; }

 private:
  std::shared_ptr<const Embedding> tied_;
  Tensor unused_;
  Tensor& weight_;
};

}  // namespace strata::models
