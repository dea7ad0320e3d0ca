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
expect missing-input 1 "no such file or directory: '$tmp/nope.txt'" -- \
  "$strata" prepare --input "$tmp/nope.txt" --tokenizer "$tmp/bytes.tok" --out "$tmp/s"
expect missing-tokenizer 1 "'$tmp/none.tok'" -- \
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
expect train-bad-type 1 "unknown type 'gpt'; valid: decoder, bert, t5" -- \
  "$strata" train --model.type gpt --run.dir "$tmp/run"
expect train-key-for-other-type 1 "model.n_kv_heads does not apply to model.type bert" -- \
  "$strata" train --model.type bert --model.n_kv_heads 2 --run.dir "$tmp/run"
expect train-preset-of-other-type 1 "'t5-small' is not a preset of model.type bert" -- \
  "$strata" train --model.type bert --model.preset t5-small --run.dir "$tmp/run"
expect train-unknown-preset 1 "unknown preset 'bert-huge'" -- \
  "$strata" train --model.type bert --model.preset bert-huge --run.dir "$tmp/run"
expect train-bert-dump-config 0 "type = bert" -- \
  "$strata" train --config "$REPO/configs/bert-small.ini" --dump-config
expect finetune-no-task 1 "task files missing.*$tmp/none.tsv" -- \
  "$strata" finetune --task.build never --task.train "$tmp/none.tsv" --task.valid "$tmp/none.tsv"
expect finetune-no-tokenizer 1 "pass --tokenizer" -- \
  "$strata" finetune --task.train "$REPO/tests/fixtures/tasks/tiny_task.tsv" \
  --task.valid "$REPO/tests/fixtures/tasks/tiny_task.tsv"
expect generate-missing 1 "$tmp/nockpt" -- "$strata" generate --checkpoint "$tmp/nockpt" --prompt x
expect inspect-missing 1 "$tmp/nockpt" -- "$strata" inspect "$tmp/nockpt"

if ((failures)); then
  echo "$failures failure(s)"
  exit 1
fi
echo "all passed"
