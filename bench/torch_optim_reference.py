#!/usr/bin/env python3
"""PyTorch's optimizers on the parameter shapes of bench/optim_bench.cpp, printing the same JSON
lines: torch.optim.AdamW (its default CPU path, and foreach), lion-pytorch's Lion, transformers'
Adafactor, and the authors' SophiaG and nanoT5's AdamWScale as tests/fixtures transcribes them
(make_optim2.py, make_optim.py). Needs the venv of bench/setup_reference.sh (lion-pytorch and
transformers installed into it).
  /opt/torch-venv/bin/python bench/torch_optim_reference.py [--threads N] [--reps R]
"""
import argparse
import json
import os
import sys
import time

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "fixtures"))


def shapes():
    layer = [(768, 768)] * 4 + [(3072, 768), (768, 3072), (768,), (768,), (3072,), (768,)]
    return layer * 2


def median_ms(fn, reps):
    fn()
    fn()
    t = []
    for _ in range(reps):
        a = time.perf_counter()
        fn()
        t.append((time.perf_counter() - a) * 1e3)
    t.sort()
    return t[len(t) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    params = []
    for s in shapes():
        p = torch.nn.Parameter(torch.randn(*s, generator=g) * 0.02)
        p.grad = torch.randn(*s, generator=g) * 1e-3
        params.append(p)
    count = sum(p.numel() for p in params)

    def groups():
        decay = [p for p in params if p.dim() > 1]
        rest = [p for p in params if p.dim() <= 1]
        return [{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}]

    makers = {
        "adamw": lambda: torch.optim.AdamW(groups(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8),
        "adamw_foreach": lambda: torch.optim.AdamW(groups(), lr=1e-4, betas=(0.9, 0.999),
                                                   eps=1e-8, foreach=True),
    }
    try:
        from make_optim import AdamWScaleRef
        makers["adamwscale"] = lambda: AdamWScaleRef(groups(), lr=1e-4, betas=(0.9, 0.999),
                                                     eps=1e-8, weight_decay=0.01)
    except ImportError as e:
        print(f"# adamwscale reference not importable: {e}", file=sys.stderr)
    try:
        from lion_pytorch import Lion
        makers["lion"] = lambda: Lion(groups(), lr=1e-4, betas=(0.9, 0.99))
    except ImportError as e:
        print(f"# lion-pytorch not installed: {e}", file=sys.stderr)
    try:
        from make_optim2 import SophiaG
        makers["sophiag"] = lambda: SophiaG(groups(), lr=1e-4, rho=0.04)
    except ImportError as e:
        print(f"# SophiaG reference not importable: {e}", file=sys.stderr)
    try:
        from transformers.optimization import Adafactor
        makers["adafactor"] = lambda: Adafactor(params, lr=None, relative_step=True,
                                                scale_parameter=True, warmup_init=False)
    except ImportError as e:
        print(f"# transformers not installed: {e}", file=sys.stderr)

    for name, make in makers.items():
        opt = make()
        with torch.no_grad():
            ms = median_ms(opt.step, args.reps)
        print(json.dumps({"bench": "optim", "optimizer": name, "impl": "torch",
                          "threads": args.threads, "params": count, "ms": round(ms, 3),
                          "ns_per_param": round(ms * 1e6 / count, 3),
                          "torch": torch.__version__}), flush=True)
        if name == "sophiag":
            hms = median_ms(opt.update_hessian, args.reps)
            print(json.dumps({"bench": "optim", "optimizer": "sophiag_hessian", "impl": "torch",
                              "threads": args.threads, "params": count, "ms": round(hms, 3),
                              "ns_per_param": round(hms * 1e6 / count, 3),
                              "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
