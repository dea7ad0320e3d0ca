#!/usr/bin/env python3
"""PyTorch reference timings for Strata's fused row-wise ops and attention (all f32, CPU).

Each op is timed forward+backward (median of --reps runs after --warmup runs) and printed as one
JSON line. The shapes must stay in sync with bench/row_kernels_bench.cpp and the tensor-op
benchmark. Run: python3 bench/torch_ops_reference.py --threads 1
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_threads  # noqa: E402

torch_threads.pin_threads_from_argv()
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def rms_norm(x, w, eps):
    if hasattr(F, "rms_norm"):
        return F.rms_norm(x, (x.shape[-1],), w, eps)
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def sdpa(q, k, v, causal):
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    # torch 1.13 (Debian) only has the private form; it has the same semantics.
    return F._scaled_dot_product_attention(q, k, v, None, 0.0, False, causal)[0]


def bench(fn, leaves, warmup, reps):
    # Gradients are cleared outside the timed region so every run writes fresh .grad tensors
    # instead of accumulating into the previous ones.
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        for t in leaves:
            t.grad = None
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--only", default="", help="comma-separated op names to run")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    only = set(filter(None, args.only.split(",")))

    leaves = []

    def leaf(*shape, scale=1.0):
        t = (torch.randn(*shape) * scale).requires_grad_(True)
        leaves.append(t)
        return t

    ops = {}

    x_sm = leaf(4, 12, 512, 512)
    dy_sm = torch.randn_like(x_sm)
    ops["softmax"] = ([4, 12, 512, 512], lambda: torch.softmax(x_sm, -1).backward(dy_sm))

    x_ln, w_ln, b_ln = leaf(4096, 768), leaf(768), leaf(768)
    dy_ln = torch.randn(4096, 768)
    ops["layer_norm"] = ([4096, 768],
                         lambda: F.layer_norm(x_ln, (768,), w_ln, b_ln, 1e-5).backward(dy_ln))

    x_rms, w_rms = leaf(4096, 768), leaf(768)
    ops["rms_norm"] = ([4096, 768], lambda: rms_norm(x_rms, w_rms, 1e-6).backward(dy_ln))

    x_gelu = leaf(4096, 3072)
    dy_gelu = torch.randn(4096, 3072)
    ops["gelu_tanh"] = ([4096, 3072],
                        lambda: F.gelu(x_gelu, approximate="tanh").backward(dy_gelu))

    logits = leaf(2048, 32128, scale=3.0)
    target = torch.randint(0, 32128, (2048,))
    target[::10] = -100
    ops["cross_entropy"] = ([2048, 32128],
                            lambda: F.cross_entropy(logits, target, ignore_index=-100).backward())

    q, k, v = leaf(4, 12, 512, 64), leaf(4, 12, 512, 64), leaf(4, 12, 512, 64)
    dy_att = torch.randn(4, 12, 512, 64)
    ops["attention"] = ([4, 12, 512, 64], lambda: sdpa(q, k, v, False).backward(dy_att))
    ops["attention_causal"] = ([4, 12, 512, 64], lambda: sdpa(q, k, v, True).backward(dy_att))

    for name, (shape, fn) in ops.items():
        if only and name not in only:
            continue
        ms = bench(fn, leaves, args.warmup, args.reps)
        print(json.dumps({"bench": "op", "op": name, "impl": "torch",
                          "torch_version": torch.__version__, "threads": args.threads,
                          "ms": round(ms, 3), "shape": shape, "pass": "fwd+bwd"}), flush=True)


if __name__ == "__main__":
    main()
