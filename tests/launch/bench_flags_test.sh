#!/usr/bin/env bash
# Every bench program answers a bad command line with exit status 2 and a message naming the
# flag (bench/bench_flags.h), and --help with its flags; none of these runs a benchmark.
#   bench_flags_test.sh BENCH_DIR
set -uo pipefail
dir="$1"
source "$(dirname "${BASH_SOURCE[0]}")/expect.sh"

for b in "$dir"/strata_bench_*; do
  [[ -x $b ]] || continue
  n=$(basename "$b")
  # The MPI benches initialise MPI first; a singleton run needs no mpirun.
  expect "$n unknown flag" 2 "$n: unknown flag '--no-such-flag'" -- "$b" --no-such-flag 1
  expect "$n help" 0 "usage: $n" -- "$b" --help
done
B="$dir"
expect "decoder: not a number" 2 "--steps got 'abc', expected an integer" -- \
  "$B/strata_bench_decoder" --steps abc
expect "decoder: missing value" 2 "--batch needs a value" -- "$B/strata_bench_decoder" --batch
expect "decoder: out of range" 2 "--threads got 0, expected 1..1024" -- \
  "$B/strata_bench_decoder" --threads 0
expect "decoder: bad precision" 2 "--precision got 'fp8', expected one of f32, bf16" -- \
  "$B/strata_bench_decoder" --precision fp8
expect "decoder: bad gemm" 2 "--gemm mkl: .*expected one of: auto, openblas, dnnl, avx2" -- \
  "$B/strata_bench_decoder" --gemm mkl
expect "model: bad model" 2 "--model got 'bert-huge', expected one of bert-small" -- \
  "$B/strata_bench_model" --model bert-huge
expect "ops: bad reps" 2 "--reps got -1, expected 1" -- "$B/strata_bench_ops" --reps -1

echo "$checked checks, $failures failed"
[[ $checked -gt 20 && $failures -eq 0 ]]
