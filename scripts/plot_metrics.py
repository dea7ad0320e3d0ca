"""Plots a run's metrics.jsonl (written by `strata train`) to a PNG: training and validation loss
against steps, and the learning rate.
  python3 scripts/plot_metrics.py runs/decoder-small/metrics.jsonl [out.png]
Needs matplotlib (Debian: python3-matplotlib, used through /usr/bin/python3)."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    path = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else path.rsplit(".", 1)[0] + ".png"
    train, evals = [], []
    for line in open(path):
        r = json.loads(line)
        (train if r["kind"] == "train" else evals).append(r)
    fig, (ax, lr) = plt.subplots(2, 1, figsize=(8, 6), sharex=True,
                                 gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    if evals:
        ax.plot([r["step"] for r in evals], [r["loss"] for r in evals], "o-", label="validation loss")
    ax.set_ylabel("cross-entropy (nats)")
    ax.grid(alpha=0.3)
    ax.legend()
    lr.plot([r["step"] for r in train], [r["lr"] for r in train], color="gray")
    lr.set_ylabel("learning rate")
    lr.set_xlabel("step")
    lr.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(out)


if __name__ == "__main__":
    main()
