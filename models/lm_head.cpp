#include "models/lm_head.h"

#include "core/error.h"
#include "core/ops.h"

namespace strata::models {

LMHead::LMHead(int64_t d_model, int64_t vocab, Init init)
    : Module("LMHead"), weight_(register_parameter("weight", {vocab, d_model}, init)) {}

LMHead::LMHead(std::shared_ptr<const Embedding> tied)
    : Module("LMHead"), tied_(std::move(tied)), weight_(unused_) {
  STRATA_CHECK(tied_ != nullptr, "LMHead: tied to a null embedding");
}

Tensor LMHead::forward(const Tensor& h) const {
  return linear(h, weight());
}

}  // namespace strata::models
