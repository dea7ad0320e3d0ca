#!/usr/bin/env bash
# End-to-end checks of the `strata` command: usage errors name the option (and the nearest valid
# one), missing files name the path, and a byte-level prepare produces shards.
#   cli_test.sh STRATA_BINARY FIXTURE_DIR
set -uo pipefail
strata="$1"
fixtures="$2"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
source "$(dirname "${BASH_SOURCE[0]}")/expect.sh"

expect no-command 2 "usage: strata <command>" -- "$strata"
expect help 0 "prepare" -- "$strata" --help
expect unknown-command 2 "did you mean 'prepare'" -- "$strata" prepar
expect unknown-option 2 "unknown option '--inptu'; did you mean '--input'" -- \
  "$strata" prepare --inptu x --tokenizer t --out o
expect bad-value 2 "vocab" -- "$strata" tokenizer train --vocab lots --kind bytes --out x
expect missing-required 2 "tokenizer" -- "$strata" prepare --input x --out o
expect missing-config 2 "config file '$tmp/none.ini' does not exist" -- \
  "$strata" prepare --config "$tmp/none.ini"
expect command-help 0 "--shard_tokens" -- "$strata" prepare --help

"$strata" tokenizer train --kind bytes --out "$tmp/bytes.tok" 2>/dev/null
expect missing-input 2 "--input $tmp/nope.txt is invalid: '$tmp/nope.txt' does not exist" -- \
  "$strata" prepare --input "$tmp/nope.txt" --tokenizer "$tmp/bytes.tok" --out "$tmp/s"
expect missing-tokenizer 2 "--tokenizer $tmp/none.tok is invalid: '$tmp/none.tok' does not exist" -- \
  "$strata" prepare --input "$fixtures" --tokenizer "$tmp/none.tok" --out "$tmp/s"
expect prepare-bytes 0 "documents, [0-9]+ tokens" -- \
  "$strata" prepare --input "$fixtures" --tokenizer "$tmp/bytes.tok" --out "$tmp/s"
expect manifest 0 "bytes:" -- cat "$tmp/s/manifest.json"
expect tokenizer-info 0 "vocab_size = 260" -- "$strata" tokenizer info --model "$tmp/bytes.tok"

# An INI file sets dotted and plain options; the command line overrides it.
printf 'threads = 1\nshard_tokens = 1000\nquiet = true\n' >"$tmp/p.ini"
expect dump-config 0 "shard_tokens = 999" -- \
  "$strata" prepare --config "$tmp/p.ini" --shard_tokens 999 --dump-config
printf 'shard_tokns = 1\n' >"$tmp/bad.ini"
expect ini-unknown 2 "unknown option '--shard_tokns'; did you mean '--shard_tokens'" -- \
  "$strata" prepare --config "$tmp/bad.ini"

# strata train / generate / inspect: bad keys, bad values, missing files and data.
expect train-unknown-key 2 "unknown option '--model.d_modl'; did you mean '--model.d_model'" -- \
  "$strata" train --model.d_modl 3
expect train-bad-value 2 "optim.lr" -- "$strata" train --optim.lr fast
expect train-missing-config 2 "'$tmp/none.ini' does not exist" -- \
  "$strata" train --config "$tmp/none.ini"
printf '[model]\nd_model = 64\n[optim]\nlrr = 1\n' >"$tmp/t.ini"
expect train-ini-unknown 2 "did you mean '--optim.lr'" -- "$strata" train --config "$tmp/t.ini"
expect train-dump-config 0 "d_model = 64" -- \
  "$strata" train --config "$REPO/configs/decoder-tiny.ini" --model.d_model 64 --dump-config
expect train-no-data 1 "prepared data missing.*$tmp/nodata" -- \
  "$strata" train --data.prepare never --data.train "$tmp/nodata" --run.dir "$tmp/run"
expect train-no-corpus 1 "no corpus at '$tmp/nocorpus'" -- \
  "$strata" train --data.corpus "$tmp/nocorpus" --data.train "$tmp/nodata" --run.dir "$tmp/run"
expect train-bad-type 2 "--model.type gpt is invalid: unknown value 'gpt'; valid: decoder, bert, t5" -- \
  "$strata" train --model.type gpt --run.dir "$tmp/run"
expect train-key-for-other-type 2 "model.n_kv_heads does not apply to model.type bert" -- \
  "$strata" train --model.type bert --model.n_kv_heads 2 --run.dir "$tmp/run"
expect train-preset-of-other-type 2 "'t5-small' is not a preset of model.type bert" -- \
  "$strata" train --model.type bert --model.preset t5-small --run.dir "$tmp/run"
expect train-unknown-preset 2 "--model.preset bert-huge is invalid: unknown value 'bert-huge'; valid: .*bert-small" -- \
  "$strata" train --model.type bert --model.preset bert-huge --run.dir "$tmp/run"
expect train-bert-dump-config 0 "type = bert" -- \
  "$strata" train --config "$REPO/configs/bert-small.ini" --dump-config
# inspect --compare: every tensor bit for bit; different checkpoints exit 1 and name what differs.
legacy="$REPO/tests/fixtures/legacy_1f9f33f/runs"
expect compare-same 0 "^identical: 63 tensors" -- \
  "$strata" inspect "$legacy/decoder/step_000000004" --compare "$legacy/decoder/step_000000004"
expect compare-different 1 "differs: parameter lm_head.weight" -- \
  "$strata" inspect "$legacy/decoder/step_000000004" --compare "$legacy/t5/step_000000004"
# srun without an MPI plugin: copies that cannot form one job are refused, naming the fix.
expect srun-without-mpi 2 "without an MPI launcher.*srun --mpi=pmix" -- \
  env SLURM_NTASKS=4 SLURM_STEP_ID=0 "$strata" train --help
expect finetune-no-task 1 "task files missing.*$tmp/none.tsv" -- \
  "$strata" finetune --task.build never --task.train "$tmp/none.tsv" --task.valid "$tmp/none.tsv"
expect finetune-no-tokenizer 1 "pass --tokenizer" -- \
  "$strata" finetune --task.train "$REPO/tests/fixtures/tasks/tiny_task.tsv" \
  --task.valid "$REPO/tests/fixtures/tasks/tiny_task.tsv"
expect generate-missing 2 "--checkpoint $tmp/nockpt is invalid: '$tmp/nockpt' does not exist" -- \
  "$strata" generate --checkpoint "$tmp/nockpt" --prompt x
expect inspect-missing 2 "--dir $tmp/nockpt is invalid: '$tmp/nockpt' does not exist" -- \
  "$strata" inspect "$tmp/nockpt"

# Values issue 21 found accepted, or crashing (log.every 0: SIGFPE): errors before any work that
# name the option, the value and the fix (exit 2). The data is there, so without the checks each
# run would train its 2 steps.
run=(--config "$REPO/configs/decoder-tiny.ini" --data.prepare never --data.tokenizer "$tmp/bytes.tok"
     --data.train "$tmp/s" --data.valid "$tmp/s" --data.seq_len 32 --data.micro_batch 2
     --budget.amount 2 --optim.warmup_steps 1 --log.sample_tokens 0 --log.peak_gflops 1)
for bad in "run.threads -1" "log.save_every -1" "log.eval_every -5" "optim.clip -1" "run.seed -1" \
           "optim.final_lr 1" "log.every 0" "objective.mlm_probability 0"; do
  set -- $bad
  expect "train-$1=$2" 2 "^strata train: --$1 $2 is invalid: .*; set --$1 " -- \
    env OMP_NUM_THREADS=1 "$strata" train "${run[@]}" --run.dir "$tmp/run-$1" "--$1" "$2"
done
expect train-config-dir 2 "config file '$tmp' is a directory" -- "$strata" train --config "$tmp"
printf '[objective]\nmlm_probability = 0\n' >"$tmp/mlm.ini"
expect train-ini-bad-value 2 "--objective.mlm_probability 0 is invalid: it must be above 0" -- \
  "$strata" train --config "$tmp/mlm.ini"
# A checkpoint to generate from: sampling options and the model's context.
expect train-tiny 0 "saved $tmp/run/step_000000002" -- \
  env OMP_NUM_THREADS=1 "$strata" train "${run[@]}" --run.dir "$tmp/run"
ckpt="$tmp/run/step_000000002"
expect generate-top-k 2 "^strata generate: --top_k -3 is invalid: it must be at least 0" -- \
  "$strata" generate --checkpoint "$ckpt" --prompt "The" --top_k -3
expect generate-past-context 1 "new tokens after a prompt of 3 do not fit the model's context of 32 tokens \(model.max_seq\); ask for at most 29" -- \
  "$strata" generate --checkpoint "$ckpt" --prompt "The" --tokens 100
expect generate-fits 0 "^The" -- "$strata" generate --checkpoint "$ckpt" --prompt "The" --tokens 29

if ((failures)); then
  echo "$failures failure(s)"
  exit 1
fi
echo "all passed"
