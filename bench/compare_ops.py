"""Reads JSON lines from strata_bench_ops and torch_ops_reference.py (or strata_bench_optim and
torch_optim_reference.py) and prints, per op (optimizer) and thread count, Strata's time beside
each PyTorch's and the speed-up (torch ms / strata ms)."""
import json
import sys
from collections import defaultdict

rows = defaultdict(dict)
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("{"):
        continue
    r = json.loads(line)
    impl = r["impl"] if r["impl"] == "strata" else "torch " + r.get("torch_version", r.get("torch", "?"))
    rows[(r.get("op") or r["optimizer"], r["threads"])][impl] = r["ms"]

impls = sorted({i for v in rows.values() for i in v if i != "strata"})
print("| op | threads | strata ms | " + " | ".join(f"{i} ms | speed-up vs {i}" for i in impls) + " |")
print("|---|---|---|" + "---|---|" * len(impls))
for (op, threads), v in sorted(rows.items()):
    s = v.get("strata")
    cells = []
    for i in impls:
        t = v.get(i)
        cells += [f"{t:.1f}" if t else "-", f"{t / s:.2f}x" if t and s else "-"]
    if s:
        print(f"| {op} | {threads} | {s:.1f} | " + " | ".join(cells) + " |")
    else:
        print(f"| {op} | {threads} | - | " + " | ".join(cells) + " |")
