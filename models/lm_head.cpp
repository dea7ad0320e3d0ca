#include "models/lm_head.h"

#include "core/error.h"
#include "core/ops.h"

namespace strata::models {

LMHead::LMHead(int64_t d_model, int64_t vocab, Init init)
    : LMHead("LMHead", Sharding::replicated({vocab, d_model}), init) {}

LMHead::LMHead(std::shared_ptr<const Embedding> tied) : LMHead("LMHead", std::move(tied)) {}

LMHead::LMHead(std::string type, const Sharding& split, Init init)
    : Module(std::move(type)), weight_(register_sharded_parameter("weight", split, init)) {}

LMHead::LMHead(std::string type, std::shared_ptr<const Embedding> tied)
    : Module(std::move(type)), tied_(std::move(tied)), weight_(unused_) {
  STRATA_CHECK(tied_ != nullptr, type_name(), ": tied to a null embedding");
}

Tensor LMHead::local_logits(const Tensor& h) const {
  // The matmul in the compute dtype; the logits in f32 for the loss and for sampling.
  return loss_input(mixed_linear(precision(), h, weight()));
}

Tensor LMHead::loss(const Tensor& local, const Tensor& targets,
                    const std::string& reduction) const {
  return cross_entropy(loss_input(local), targets, -100, 0.0, reduction);
}

}  // namespace strata::models
