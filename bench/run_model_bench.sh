#!/usr/bin/env bash
# BERT and T5 training throughput, Strata against PyTorch (newest in /opt/torch-venv, eager and
# torch.compile; Debian's 1.13 under /usr/bin/python3 for BERT, which has no transformers for T5),
# same models, shapes, optimizers and thread counts; then a table with the ratios and the issue-6
# targets (Strata >= 1.3x eager PyTorch at the same thread count, Strata at 2 threads >= 2x eager
# PyTorch at its best thread count, Strata's resident memory <= PyTorch's).
#   bench/run_model_bench.sh [BUILD_DIR] [extra flags for every run, e.g. --steps 6]
# Environment: MODELS (default "bert-small t5-small"), THREADS ("1 2"), ROUNDS (1: every
# configuration runs ROUNDS times, interleaved, and the table takes the median step time),
# COMPILE (1; 0 skips torch.compile, which takes minutes to compile T5), OUT (the JSON lines file,
# default a temporary one; emptied first, so the table never mixes in an earlier run),
# PRECISIONS ("f32"; "f32 bf16" also runs every implementation in bf16: Strata's bf16 compute with
# f32 master weights, PyTorch under CPU autocast to bf16, and adds the bf16 speed-up lines).
# For scale: MODELS="bert-c5 t5-base" THREADS=2 COMPILE=0 ... --batch 8
set -euo pipefail
# Every process, Strata and PyTorch alike, waits passively between parallel regions (see
# prefer_passive_omp_wait in core/runtime.h); export another policy to compare.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:-$here/../build}"
shift || true
extra=("$@")
models="${MODELS:-bert-small t5-small}"
threads_list="${THREADS:-1 2}"
rounds="${ROUNDS:-1}"
compile="${COMPILE:-1}"
precisions="${PRECISIONS:-f32}"
out="${OUT:-$(mktemp /tmp/strata_model_bench.XXXXXX.jsonl)}"
: >"$out"
torch_py=${TORCH_VENV:-/opt/torch-venv}/bin/python  # bench/setup_reference.sh makes it
failed() { echo "{\"bench\": \"model_train\", \"model\": \"$1\", \"impl\": \"$2\", \"threads\": $3, \"error\": \"failed\"}"; }

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for round in $(seq "$rounds"); do
  for model in $models; do
    for threads in $threads_list; do
      for precision in $precisions; do
        set -- "${extra[@]}" --precision "$precision"
        "$build/bench/strata_bench_model" --model "$model" --threads "$threads" "$@" | tee -a "$out"
        if [[ -x $torch_py ]]; then
          "$torch_py" "$here/torch_model_reference.py" --model "$model" --threads "$threads" "$@" \
            2>/dev/null | tee -a "$out" || failed "$model" torch "$threads"
          if [[ $compile == 1 ]]; then
            "$torch_py" "$here/torch_model_reference.py" --model "$model" --threads "$threads" \
              --compile "$@" 2>/dev/null | tee -a "$out" || failed "$model" torch+compile "$threads"
          fi
        fi
        if [[ $model == bert-* ]] && /usr/bin/python3 -c 'import torch, h5py' 2>/dev/null; then
          /usr/bin/python3 "$here/torch_model_reference.py" --model "$model" --threads "$threads" \
            "$@" 2>/dev/null | tee -a "$out" || failed "$model" "torch 1.13" "$threads"
        fi
      done
    done
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); JSON lines in $out" >&2

python3 - "$out" <<'EOF'
import collections, json, statistics, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
runs = collections.defaultdict(list)
for r in rows:
    if "error" in r:
        continue
    impl = r["impl"] if r["impl"] != "torch" else "torch " + r["torch_version"].split("+")[0]
    if r["impl"] == "torch+compile":
        impl = "torch " + r["torch_version"].split("+")[0] + " compile"
    # bf16 runs are their own rows: Strata's bf16 compute, PyTorch's autocast.
    if r.get("precision", "f32") == "bf16":
        impl += " bf16"
    runs[(r["model"], r["threads"], impl)].append(r)


# A run whose process CPU time exceeds its thread count times its wall time used threads it was
# not given (a BLAS pool of its own, say), and its row is not a same-thread comparison.
for r in rows:
    if "error" not in r and r.get("cpu_ms", 0) > 1.15 * r["threads"] * r["step_ms"]:
        print(f"warning: {r['model']} {r['impl']} {r.get('torch_version', '')} at {r['threads']} "
              f"thread(s) used {r['cpu_ms'] / r['step_ms']:.1f} cores", file=sys.stderr)


def med(key):
    return statistics.median(r["step_ms"] for r in runs[key])


# (model, threads) -> the Strata run's FLOPs per step, and the largest FMA peak any Strata run
# measured at that thread count (a peak measured while another job had the core reads low).
ref = {}
for (model, threads, impl), rs in runs.items():
    if impl in ("strata", "strata bf16") and (model, threads) not in ref:
        ref[(model, threads)] = dict(rs[0])
peaks = collections.defaultdict(float)
for r in rows:
    if r.get("impl") == "strata" and "error" not in r:
        peaks[r["threads"]] = max(peaks[r["threads"]], r["peak_gflops"])
for (model, threads), s in ref.items():
    s["peak_gflops"] = peaks[threads]
print(f"FMA peak (largest measured): " + ", ".join(f"{t} thread(s) {p:.1f} GFLOP/s" for t, p in sorted(peaks.items())))
hosts = {(r.get("peak_vectors"), r.get("kernels")) for r in rows if r.get("impl") == "strata"}
print("host: " + "; ".join(f"peak with {v} FMAs, kernels {k}" for v, k in sorted(hosts, key=str)))
print("| model | threads | implementation | step ms | tokens/s | MFU | max RSS MiB | Strata speed-up |")
print("|---|---|---|---|---|---|---|---|")
for key in sorted(runs, key=lambda k: (k[0], k[1], k[2].endswith("bf16"), k[2] != "strata"
                                       and k[2] != "strata bf16", k[2])):
    model, threads, impl = key
    r0, ms = runs[key][0], med(key)
    tokens = r0["batch"] * (r0["enc_len"] + r0["dec_len"])
    s = ref.get((model, threads))
    mfu = f"{s['gflop_per_step'] / (ms / 1e3) / s['peak_gflops']:.0%}" if s else "-"
    # Against Strata at the same precision.
    own = "strata bf16" if impl.endswith("bf16") else "strata"
    speed = f"{ms / med((model, threads, own)):.2f}x" if (model, threads, own) in runs else "-"
    rss = max(r["max_rss_mib"] for r in runs[key])
    extra = f" (allocator {r0['allocator_peak_mib']:.0f})" if impl.startswith("strata") else ""
    print(f"| {model} | {threads} | {impl} | {ms:.0f} | {tokens / (ms / 1e3):,.0f} | {mfu} | "
          f"{rss:.0f}{extra} | {'' if impl.startswith('strata') else speed} |")

print()
for model in sorted({k[0] for k in runs}):
    eager = {t: med(k) for k in runs for t in [k[1]] if k[0] == model and k[2].startswith("torch 2")
             and not k[2].endswith("compile") and not k[2].endswith("bf16")}
    strata = {k[1]: med(k) for k in runs if k[0] == model and k[2] == "strata"}
    # What a target asks of Strata's step, as a share of the FMA peak at Strata's thread count: a
    # target that needs more than 100% cannot be met on this machine by any implementation of
    # the same model, and one near the GEMM's own share of the peak (bench/gemm_bench.cpp) can't
    # be met either, since the step is more than its GEMMs.
    # The GEMM bound is the step's FLOPs at the rate of the model's largest GEMM, timed in each
    # Strata run (gemm_bound_ms; the smallest, i.e. the fastest rate seen, is taken).
    def needs(t, target_ms):
        s = ref[(model, t)]
        text = (f"needs {target_ms:.0f} ms, {s['gflop_per_step'] / (target_ms / 1e3) / s['peak_gflops']:.0%} "
                f"of the FMA peak")
        bounds = [r["gemm_bound_ms"] for r in runs[(model, t, "strata")] if r.get("gemm_bound_ms")]
        if bounds:
            text += f"; GEMM bound {min(bounds):.0f} ms"
        return text

    for t in sorted(strata):
        if t in eager:
            ratio = eager[t] / strata[t]
            print(f"{model}: {t} thread(s): Strata {ratio:.2f}x eager PyTorch (target 1.30x, "
                  f"{needs(t, eager[t] / 1.3)}) {'MET' if ratio >= 1.3 else 'MISSED'}")
    if 2 in strata and eager:
        best_t = min(eager, key=eager.get)
        ratio = eager[best_t] / strata[2]
        print(f"{model}: Strata at 2 threads {ratio:.2f}x eager PyTorch at its best ({best_t} "
              f"thread(s)) (target 2.00x, {needs(2, eager[best_t] / 2.0)}) "
              f"{'MET' if ratio >= 2.0 else 'MISSED'}")
    # bf16: Strata's bf16 step against its own f32 step and against PyTorch under autocast.
    for t in sorted({k[1] for k in runs if k[0] == model}):
        if (model, t, "strata bf16") not in runs:
            continue
        b = med((model, t, "strata bf16"))
        line = f"{model}: {t} thread(s): Strata bf16 {b:.0f} ms"
        if (model, t, "strata") in runs:
            line += f", {med((model, t, 'strata')) / b:.2f}x its f32 step"
        for k in sorted(runs):
            if k[0] == model and k[1] == t and k[2].startswith("torch") and k[2].endswith("bf16"):
                line += f", {med(k) / b:.2f}x {k[2][:-5]} autocast bf16"
        print(line)
    srss = max(r["max_rss_mib"] for k in runs if k[0] == model and k[2] == "strata" for r in runs[k])
    trss = [r["max_rss_mib"] for k in runs if k[0] == model and k[2] != "strata" for r in runs[k]]
    if trss:
        print(f"{model}: max RSS Strata {srss:.0f} MiB, PyTorch {min(trss):.0f}-{max(trss):.0f} MiB "
              f"{'MET' if srss <= min(trss) else 'MISSED'}")
EOF
