# Sourced by the command-line tests. expect NAME EXPECTED_RC PATTERN -- COMMAND...: runs COMMAND
# (under `timeout 60`), checks its exit code and that its output (stdout and stderr together)
# matches PATTERN; counts `checked` and `failures`.
checked=0
failures=0
expect() {
  local name="$1" rc="$2" pattern="$3"
  shift 4
  local out got
  out="$(timeout 60 "$@" 2>&1)"
  got=$?
  checked=$((checked + 1))
  if [[ $got -ne $rc ]] || ! grep -qE -- "$pattern" <<<"$out"; then
    echo "FAIL $name: exit $got (expected $rc), output:"
    echo "$out" | head -20 | sed 's/^/    /'
    failures=$((failures + 1))
  else
    echo "ok   $name"
  fi
}
