# Sourced by the command-line training tests: byte_corpus DIR DOCS VALID_FROM LINES writes DOCS
# small text documents (the ones numbered VALID_FROM and up are the validation split), a byte
# tokenizer and the prepared shards under DIR: DIR/bytes.tok, DIR/train, DIR/valid. Needs $strata.
byte_corpus() {
  local dir="$1" docs="$2" valid_from="$3" lines="$4" d i split
  mkdir -p "$dir/text/train" "$dir/text/valid"
  for d in $(seq 0 $((docs - 1))); do
    split=train; ((d >= valid_from)) && split=valid
    for i in $(seq 0 "$lines"); do
      echo "document $d line $i: the quick brown fox $((i * 7 % 13)) jumps over the lazy dog $((i % 5))."
    done >"$dir/text/$split/doc$d.txt"
  done
  "$strata" tokenizer train --kind bytes --out "$dir/bytes.tok" >/dev/null 2>&1
  "$strata" prepare --input "$dir/text/train" --tokenizer "$dir/bytes.tok" --out "$dir/train" --quiet
  "$strata" prepare --input "$dir/text/valid" --tokenizer "$dir/bytes.tok" --out "$dir/valid" --quiet
}
