"""The benchmark decoder of bench/decoder_bench.cpp in plain torch.nn: a Llama-style decoder
(RMSNorm, RoPE, SwiGLU, untied head, no biases), trained with AdamW + clipping on random tokens.
Prints one JSON line like strata_bench_decoder's.
  python torch_decoder_reference.py --threads N [--compile] [--steps S]"""
import argparse
import json
import math
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_threads  # noqa: E402

torch_threads.pin_threads_from_argv()
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope(x, base=10000.0):
    L, D = x.shape[-2], x.shape[-1]
    half = D // 2
    freqs = base ** (-torch.arange(half, dtype=torch.float64) * 2 / D)
    ang = torch.arange(L, dtype=torch.float64)[:, None] * freqs[None, :]
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def attention(q, k, v):
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    # torch 1.13 (Debian) has no fused attention: the textbook form.
    L = q.shape[-2]
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    s = s.masked_fill(torch.ones(L, L, dtype=torch.bool).triu(1), float("-inf"))
    return s.softmax(-1) @ v


class Block(nn.Module):
    def __init__(self, d, h, dff):
        super().__init__()
        self.h = h
        self.attn_norm, self.ffn_norm = RMSNorm(d), RMSNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.gate, self.up = nn.Linear(d, dff, bias=False), nn.Linear(d, dff, bias=False)
        self.down = nn.Linear(dff, d, bias=False)

    def forward(self, x):
        B, L, d = x.shape
        y = self.attn_norm(x)
        q, k, v = (p(y).view(B, L, self.h, d // self.h).transpose(1, 2) for p in (self.q, self.k, self.v))
        a = attention(rope(q), rope(k), v)
        x = x + self.o(a.transpose(1, 2).reshape(B, L, d))
        y = self.ffn_norm(x)
        return x + self.down(F.silu(self.gate(y)) * self.up(y))


class Decoder(nn.Module):
    def __init__(self, vocab, d, layers, h, dff):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList(Block(d, h, dff) for _ in range(layers))
        self.norm = RMSNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, ids, targets):
        x = self.embed(ids)
        for b in self.layers:
            x = b(x)
        logits = self.head(self.norm(x))
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--d_model", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--precision", choices=["f32", "bf16"], default="f32",
                    help="bf16: the forward under torch.autocast('cpu', bfloat16), f32 weights")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    vocab, dff, heads = 8192, 4 * a.d_model, 4 if a.d_model == 256 else a.d_model // 64
    model = Decoder(vocab, a.d_model, a.layers, heads, dff)
    decay = [p for n, p in model.named_parameters() if p.dim() > 1]
    no_decay = [p for n, p in model.named_parameters() if p.dim() <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-3, betas=(0.9, 0.95))
    step_fn = torch.compile(model) if a.compile else model
    times, cpu = [], []
    for s in range(a.steps + 2):
        ids = torch.randint(0, vocab, (a.batch, a.seq + 1))
        c0, t0 = time.process_time(), time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            loss = step_fn(ids[:, :-1], ids[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if s >= 2:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    times.sort()
    cpu.sort()
    step = times[len(times) // 2]
    print(json.dumps({"bench": "decoder_train", "impl": "torch" + ("+compile" if a.compile else ""),
                      "torch_version": torch.__version__, "precision": a.precision,
                      "threads": a.threads,
                      "params": sum(p.numel() for p in model.parameters()),
                      "step_ms": round(step * 1e3, 1), "cpu_ms": round(cpu[len(cpu) // 2] * 1e3, 1),
                      "tokens_per_s": round(a.batch * a.seq / step),
                      "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}),
          flush=True)


if __name__ == "__main__":
    main()
