"""The models of bench/model_bench.cpp in PyTorch, trained on random tokens with the same shapes,
masking pattern, optimizers and clipping. Prints one JSON line like strata_bench_model's.

- BERT: the plain torch.nn crammed BERT of tests/fixtures/make_bert.py (imported, its size
  constants set to the preset), sparse prediction at the fixed 15% pattern (flat index i is masked
  when (7 i) mod 20 < 3); torch.optim.AdamW lr 1e-3, betas (0.9, 0.98), eps 1e-12, wd 0.01 without
  decay on 1-D / norm / bias parameters (make_optim.no_decay), clip 0.5. Attention goes through
  F.scaled_dot_product_attention where torch has it (torch's fastest CPU path, as Cramming uses
  fused attention); --attention textbook keeps make_bert.py's matmul-softmax-matmul.
- T5: Hugging Face T5ForConditionalGeneration built by tests/fixtures/make_t5.py's build() with
  the preset's sizes (v1.1: gated-GELU, untied head), attention "sdpa" by default; nanoT5's
  AdamWScale (make_optim.AdamWScaleRef) lr 2e-2, betas (0.9, 0.999), eps 1e-6, wd 0, clip 1.0.
  Targets are as long as span corruption (noise 0.15, mean span 3) makes them for --input_len.

  python torch_model_reference.py --model bert-small|bert-c5|t5-small|t5-base --threads N
                                  [--compile] [--steps S] [--warmup W] [--batch B]
"""
import argparse
import json
import os
import resource
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_threads  # noqa: E402

torch_threads.pin_threads_from_argv()
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))
import make_optim  # noqa: E402

# The presets of models/bert.cpp and models/t5.cpp.
BERT_PRESETS = {
    "bert-small": dict(vocab=8192, d_model=256, n_layers=4, n_heads=4, d_ff=1024),
    "bert-c5": dict(vocab=32768, d_model=768, n_layers=16, n_heads=12, d_ff=3072),
}
T5_PRESETS = {
    "t5-small": dict(vocab=8192, d_model=256, d_kv=64, n_heads=4, d_ff=1024, n_layers=4),
    "t5-base": dict(vocab=32128, d_model=768, d_kv=64, n_heads=12, d_ff=2048, n_layers=12),
}


def span_corruption_lengths(input_len, density=0.15, mean_span=3.0):
    """(encoder, decoder) lengths as data::span_corruption_lengths (T5's random_spans_helper)."""

    def lengths(t):
        noise = round(t * density)
        spans = round(noise / mean_span)
        return t - noise + spans + 1, noise + spans + 1

    t = input_len
    while lengths(t + 1)[0] <= input_len:
        t += 1
    return lengths(t)


def sdpa_attention_forward(self, x, mask):
    """make_bert.SelfAttention.forward through torch's fused attention."""
    import make_bert
    B, L, _ = x.shape
    hd = make_bert.D_MODEL // make_bert.N_HEADS
    q, k, v = self.qkv(x).view(B, L, 3, make_bert.N_HEADS, hd).permute(2, 0, 3, 1, 4)
    attn_mask = None if mask is None else mask[:, None, None, :]
    ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    return self.out(ctx.transpose(1, 2).reshape(B, L, make_bert.D_MODEL))


def build_bert(name, attention):
    import make_bert
    p = BERT_PRESETS[name]
    make_bert.VOCAB, make_bert.D_MODEL, make_bert.N_LAYERS = p["vocab"], p["d_model"], p["n_layers"]
    make_bert.N_HEADS, make_bert.D_FF, make_bert.MAX_SEQ = p["n_heads"], p["d_ff"], 128
    if attention == "sdpa":
        make_bert.SelfAttention.forward = sdpa_attention_forward
    model = make_bert.CrammedBert()
    groups = [{"params": [], "weight_decay": 0.01}, {"params": [], "weight_decay": 0.0}]
    for n, w in model.named_parameters():
        groups[1 if make_optim.no_decay(n, tuple(w.shape)) else 0]["params"].append(w)
    opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.98), eps=1e-12)
    return model, opt, 0.5


def build_t5(name, attention):
    import make_t5
    p = T5_PRESETS[name]
    make_t5.VOCAB, make_t5.D_MODEL, make_t5.D_KV = p["vocab"], p["d_model"], p["d_kv"]
    make_t5.N_HEADS, make_t5.D_FF, make_t5.N_LAYERS = p["n_heads"], p["d_ff"], p["n_layers"]
    model = make_t5.build().train()
    if attention == "sdpa":
        model.set_attn_implementation("sdpa")
    opt = make_optim.AdamWScaleRef(model.parameters(), lr=2e-2, betas=(0.9, 0.999), eps=1e-6,
                                   weight_decay=0.0)
    return model, opt, 1.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="bert-small", choices=[*BERT_PRESETS, *T5_PRESETS])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--input_len", type=int, default=128)
    ap.add_argument("--attention", choices=["sdpa", "textbook"], default=None)
    ap.add_argument("--precision", choices=["f32", "bf16"], default="f32",
                    help="bf16: the forward under torch.autocast('cpu', bfloat16), f32 weights")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    bert = a.model.startswith("bert")
    attention = a.attention or ("sdpa" if hasattr(F, "scaled_dot_product_attention") else "textbook")

    if bert:
        model, opt, clip = build_bert(a.model, attention)
        vocab, enc_len, dec_len = BERT_PRESETS[a.model]["vocab"], a.seq, 0
        flat = torch.arange(a.batch * a.seq)
        picked = ((7 * flat) % 20 < 3).view(a.batch, a.seq)
        masked = int(picked.sum())
    else:
        model, opt, clip = build_t5(a.model, attention)
        vocab = T5_PRESETS[a.model]["vocab"]
        enc_len, dec_len = span_corruption_lengths(a.input_len)
        masked = 0
    fn = torch.compile(model) if a.compile else model

    def loss_of_step():
        if bert:
            ids = torch.randint(1, vocab, (a.batch, a.seq))  # no pad id, as the Strata bench
            labels = torch.where(picked, torch.randint(1, vocab, (a.batch, a.seq)), -100)
            return fn(ids, None, labels)[0]
        x = torch.randint(2, vocab, (a.batch, enc_len))
        y = torch.randint(2, vocab, (a.batch, dec_len))
        return fn(input_ids=x, labels=y).loss

    total, fwd, bwd, upd, cpu = [], [], [], [], []
    for s in range(a.warmup + a.steps):
        c0, t0 = time.process_time(), time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            loss = loss_of_step()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        t3, c1 = time.perf_counter(), time.process_time()
        if s >= a.warmup:
            total.append(t3 - t0)
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
            upd.append(t3 - t2)
            cpu.append(c1 - c0)

    def median_ms(v):
        return round(sorted(v)[len(v) // 2] * 1e3, 1)

    step = sorted(total)[len(total) // 2]
    print(json.dumps({
        "bench": "model_train", "model": a.model, "impl": "torch" + ("+compile" if a.compile else ""),
        "torch_version": torch.__version__, "attention": attention, "precision": a.precision,
        "threads": a.threads,
        "batch": a.batch, "enc_len": enc_len, "dec_len": dec_len, "masked": masked,
        "params": sum(p.numel() for p in model.parameters()),
        "step_ms": round(step * 1e3, 1), "forward_ms": median_ms(fwd), "backward_ms": median_ms(bwd),
        "optimizer_ms": median_ms(upd), "cpu_ms": median_ms(cpu),
        "tokens_per_s": round(a.batch * (enc_len + dec_len) / step),
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}),
        flush=True)


if __name__ == "__main__":
    main()
