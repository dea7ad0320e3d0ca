#include "models/attention.h"

#include "core/error.h"
#include "core/ops.h"
#include "models/tp_linear.h"
#include "parallel/tp_mappings.h"

namespace strata::models {

namespace {

AttentionConfig resolved(AttentionConfig c) {
  STRATA_CHECK(c.d_model > 0 && c.n_heads > 0, "MultiHeadAttention: d_model ", c.d_model,
               " and n_heads ", c.n_heads, " must be positive");
  if (c.n_kv_heads == 0) c.n_kv_heads = c.n_heads;
  STRATA_CHECK(c.n_kv_heads > 0 && c.n_heads % c.n_kv_heads == 0, "MultiHeadAttention: n_kv_heads ",
               c.n_kv_heads, " must divide n_heads ", c.n_heads);
  if (c.head_dim == 0) {
    STRATA_CHECK(c.d_model % c.n_heads == 0, "MultiHeadAttention: d_model ", c.d_model,
                 " is not a multiple of n_heads ", c.n_heads, " (set head_dim explicitly)");
    c.head_dim = c.d_model / c.n_heads;
  }
  STRATA_CHECK(!c.rope || c.head_dim % 2 == 0,
               "MultiHeadAttention: RoPE needs an even head_dim, got ", c.head_dim);
  if (c.tp != nullptr) {
    const int tp = c.tp->size();
    STRATA_CHECK(c.n_heads % tp == 0, "MultiHeadAttention: n_heads ", c.n_heads,
                 " is not divisible by the tensor-parallel size ", tp);
    STRATA_CHECK(c.n_kv_heads % tp == 0, "MultiHeadAttention: n_kv_heads ", c.n_kv_heads,
                 " is not divisible by the tensor-parallel size ", tp);
  }
  return c;
}

parallel::Communicator* active_tp(const AttentionConfig& c) {
  return c.tp != nullptr && c.tp->size() > 1 ? c.tp : nullptr;
}

}  // namespace

MultiHeadAttention::MultiHeadAttention(const AttentionConfig& cfg)
    : Module("MultiHeadAttention"),
      cfg_(resolved(cfg)),
      tp_(active_tp(cfg_)),
      local_heads_(cfg_.n_heads / (tp_ ? tp_->size() : 1)),
      local_kv_heads_(cfg_.n_kv_heads / (tp_ ? tp_->size() : 1)) {
  const int64_t d = cfg_.d_model, dh = cfg_.head_dim;
  const Init q_init = cfg_.q_init.value_or(cfg_.init);
  if (tp_ != nullptr) {
    using Column = ColumnParallelLinear;
    using Row = RowParallelLinear;
    const auto in_region = Column::Input::InRegion;
    auto& tp = *tp_;
    q_proj_ =
        register_module("q_proj", std::make_shared<Column>(d, cfg_.n_heads * dh, cfg_.bias, q_init,
                                                           Init::zeros(), tp, in_region, "q_proj"));
    k_proj_ = register_module(
        "k_proj", std::make_shared<Column>(d, cfg_.n_kv_heads * dh, cfg_.bias, cfg_.init,
                                           Init::zeros(), tp, in_region, "k_proj"));
    v_proj_ = register_module(
        "v_proj", std::make_shared<Column>(d, cfg_.n_kv_heads * dh, cfg_.bias, cfg_.init,
                                           Init::zeros(), tp, in_region, "v_proj"));
    o_proj_ = register_module(
        "o_proj", std::make_shared<Row>(cfg_.n_heads * dh, d, cfg_.bias, cfg_.out_init,
                                        Init::zeros(), tp, Row::Input::Split, "attn.o_proj"));
    return;
  }
  q_proj_ =
      register_module("q_proj", std::make_shared<Linear>(d, cfg_.n_heads * dh, cfg_.bias, q_init));
  k_proj_ = register_module(
      "k_proj", std::make_shared<Linear>(d, cfg_.n_kv_heads * dh, cfg_.bias, cfg_.init));
  v_proj_ = register_module(
      "v_proj", std::make_shared<Linear>(d, cfg_.n_kv_heads * dh, cfg_.bias, cfg_.init));
  o_proj_ = register_module(
      "o_proj", std::make_shared<Linear>(cfg_.n_heads * dh, d, cfg_.bias, cfg_.out_init));
}

Tensor MultiHeadAttention::enter_tp(const Tensor& x) const {
  return tp_ != nullptr ? parallel::copy_to_tp(x, *tp_, "tp.attn_in") : x;
}

MultiHeadAttention::QKV MultiHeadAttention::project(const Tensor& x, const Tensor& memory,
                                                    int64_t pos_offset) const {
  STRATA_CHECK(x.dim() == 3 && x.size(2) == cfg_.d_model, "MultiHeadAttention: expected x [B, L, ",
               cfg_.d_model, "], got ", shape_str(x.shape()));
  const Tensor& src = memory.defined() ? memory : x;
  STRATA_CHECK(src.dim() == 3 && src.size(0) == x.size(0) && src.size(2) == cfg_.d_model,
               "MultiHeadAttention: memory ", shape_str(src.shape()), " must be [", x.size(0),
               ", Lk, ", cfg_.d_model, "]");
  const int64_t B = x.size(0), Lq = x.size(1), Lk = src.size(1), dh = cfg_.head_dim;
  const Tensor xin = enter_tp(x);
  const Tensor kv_in = memory.defined() ? enter_tp(memory) : xin;
  QKV r;
  r.q = q_proj_->forward(xin).view({B, Lq, local_heads_, dh}).transpose(1, 2);
  r.k = k_proj_->forward(kv_in).view({B, Lk, local_kv_heads_, dh}).transpose(1, 2);
  r.v = v_proj_->forward(kv_in).view({B, Lk, local_kv_heads_, dh}).transpose(1, 2);
  if (cfg_.rope && !memory.defined()) {
    r.q = rope(r.q, cfg_.rope_base, pos_offset);
    r.k = rope(r.k, cfg_.rope_base, pos_offset);
  }
  return r;
}

Tensor MultiHeadAttention::expand_kv_heads(const Tensor& t) const {
  const int64_t g = cfg_.n_heads / cfg_.n_kv_heads;
  // A size-1 head dim broadcasts (a bias shared by all heads), unless there is one kv head
  // (multi-query attention, or one kv head per tensor-parallel rank): that one is expanded.
  if (g == 1 || (t.size(1) == 1 && local_kv_heads_ > 1)) return t;
  STRATA_CHECK(t.dim() == 4 && t.size(1) == local_kv_heads_, "expand_kv_heads: expected [B, ",
               local_kv_heads_, ", ., .], got ", shape_str(t.shape()));
  const Shape s = t.shape();
  return t.unsqueeze(2).expand({s[0], s[1], g, s[2], s[3]}).reshape({s[0], s[1] * g, s[2], s[3]});
}

Tensor MultiHeadAttention::attend(const QKV& qkv, const AttentionContext& ctx) const {
  // Mixed precision: q/k/v arrive in the compute dtype. The fused op accumulates in f32 either
  // way; it runs in attention_dtype (f32 on the CPU, which has no bf16 kernel), and the additive
  // bias (an f32 parameter in T5) and the cache's contents are brought to that dtype too.
  const DType at = attention_dtype(qkv.q);
  auto as_at = [at](const Tensor& t) { return t.defined() && t.dtype() != at ? t.to(at) : t; };
  Tensor k = qkv.k, v = qkv.v;
  AttentionOptions opt;
  opt.scale = cfg_.scale;
  opt.causal = cfg_.causal;
  opt.bias = as_at(ctx.bias);
  opt.key_padding_mask = ctx.key_padding_mask;
  if (ctx.cache != nullptr) {
    ctx.cache->append(k, v);
    k = ctx.cache->keys();
    v = ctx.cache->values();
    opt.causal = cfg_.causal && ctx.cache->causal();
    if (Tensor cb = ctx.cache->bias(qkv.q.size(2)); cb.defined()) {
      cb = expand_kv_heads(cb.to(at));
      opt.bias = opt.bias.defined() ? opt.bias + cb : cb;
    }
  }
  const int64_t B = qkv.q.size(0), Lq = qkv.q.size(2);
  Tensor o = attention(as_at(qkv.q), expand_kv_heads(as_at(k)), expand_kv_heads(as_at(v)), opt);
  if (o.dtype() != qkv.q.dtype()) o = o.to(qkv.q.dtype());  // back to the compute dtype
  o = o.transpose(1, 2).reshape({B, Lq, local_heads_ * cfg_.head_dim});
  return o_proj_->forward(o);
}

Tensor MultiHeadAttention::forward(const Tensor& x, const AttentionContext& ctx) const {
  STRATA_CHECK(ctx.cache == nullptr || !ctx.memory.defined(),
               "MultiHeadAttention: a KV cache is for self-attention; cross-attention memory is "
               "projected once by the caller");
  const int64_t pos = ctx.cache != nullptr ? ctx.cache->positions() : 0;
  return attend(project(x, ctx.memory, pos), ctx);
}

}  // namespace strata::models
