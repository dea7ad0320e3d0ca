#!/usr/bin/env bash
# Data-parallel scaling of `strata train`: the decoder-small preset (d_model 256, 4 layers,
# sequences of 128, global batch 16) for a fixed number of steps in one process of 1 thread, then
# as DP2 (2 ranks of 1 thread under mpirun). Prints one JSON line per run (training tokens/s over
# the steps after the first log window, taken from rank 0's metrics.jsonl) and one with the
# scaling efficiency tok/s(2 ranks) / (2 x tok/s(1 rank)) and the machine's load average.
#   bench/run_dp_scaling_bench.sh [BUILD_DIR] [STEPS (default 24)] [DATA_DIR (default runs/data/t5-8k)]
# DATA_DIR holds a prepared tokenizer.model, train/ and valid/ (what `strata train` with
# data.prepare auto writes under runs/data/).
set -euo pipefail
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
build="${1:-$repo/build}"
steps="${2:-24}"
data="${3:-$repo/runs/data/t5-8k}"
window=$((steps / 4))
strata="$build/launch/strata"
for need in "$strata" "$data/tokenizer.model" "$data/train" "$data/valid"; do
  [[ -e "$need" ]] || { echo "run_dp_scaling_bench: missing $need" >&2; exit 1; }
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

flags=(--config "$repo/configs/decoder-small.ini" --data.prepare never
       --data.tokenizer "$data/tokenizer.model" --data.train "$data/train" --data.valid "$data/valid"
       --budget.amount "$steps" --log.every "$window" --log.eval_every 0 --log.eval_batches 1
       --log.save_every 0 --log.keep_last 1 --log.sample_tokens 0 --log.peak_gflops 1
       --optim.warmup_steps 1 --run.threads 1 --run.resume none)

# Total tokens / total seconds of the windows after the first (equal windows: a harmonic mean).
rate() {
  python3 - "$1" "$window" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rates = [r["tokens_per_s"] for r in rows if r.get("kind") == "train" and r["step"] > int(sys.argv[2])]
print(len(rates) / sum(1.0 / r for r in rates))
EOF
}

OMP_NUM_THREADS=1 "$strata" train "${flags[@]}" --run.dir "$work/one" > "$work/one.log"
one=$(rate "$work/one/metrics.jsonl")
echo "{\"bench\": \"dp_scaling\", \"ranks\": 1, \"threads\": 1, \"steps\": $steps, \"tok_per_s\": $one}"

mpirun --allow-run-as-root -np 2 -x OMP_NUM_THREADS=1 -x OMP_WAIT_POLICY \
  "$strata" train "${flags[@]}" --run.dir "$work/dp2" > "$work/dp2.log"
# mpirun as root without --allow-run-as-root exits 0 having run nothing: check the job ran as DP2.
grep -q "parallel: DP2 x TP1 x PP1 on 2 ranks" "$work/dp2.log" ||
  { echo "run_dp_scaling_bench: the 2-rank job did not run as DP2:" >&2; cat "$work/dp2.log" >&2; exit 1; }
two=$(rate "$work/dp2/metrics.jsonl")
echo "{\"bench\": \"dp_scaling\", \"ranks\": 2, \"threads\": 1, \"steps\": $steps, \"tok_per_s\": $two}"

load=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' ',')
python3 -c "print('{\"bench\": \"dp_scaling\", \"efficiency\": %.3f, \"cores\": %d, \"load_avg\": [%s]}' % ($two / (2 * $one), __import__('os').cpu_count(), '$load'))"
