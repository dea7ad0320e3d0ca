#!/usr/bin/env bash
# watchdog_test.sh PROBE: runs watchdog_probe in each failure mode under mpirun and checks that the
# job ends (no hang), fails, and that the message names the call, its sequence number, the group
# and the ranks that did not arrive.
set -u
probe=$1
fails=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# run NP MODE MAX_SECONDS REGEX...: every REGEX must match the combined output.
run() {
  local np=$1 mode=$2 max=$3
  shift 3
  local start end rc
  start=$(date +%s)
  timeout -k 10 120 mpirun --allow-run-as-root --oversubscribe -np "$np" "$probe" "$mode" >"$out" 2>&1
  rc=$?
  end=$(date +%s)
  local ok=1
  if [[ $rc -eq 0 ]]; then echo "FAIL $mode: the job exited 0"; ok=0; fi
  if [[ $rc -eq 124 || $rc -eq 137 && $((end - start)) -ge 120 ]]; then
    echo "FAIL $mode: the job hung (stopped after 120 s)"
    ok=0
  fi
  if ((end - start > max)); then echo "FAIL $mode: took $((end - start)) s, expected at most $max"; ok=0; fi
  for re in "$@"; do
    grep -qE -- "$re" "$out" || { echo "FAIL $mode: no line matches: $re"; ok=0; }
  done
  if ((ok)); then
    echo "ok: $mode ended in $((end - start)) s with exit $rc"
    grep -E "^strata:|^  " "$out" | head -8
  else
    fails=$((fails + 1))
    sed 's/^/    | /' "$out" | head -60
  fi
}

# A rank busy outside MPI: the others name it, and say that it is not waiting anywhere.
run 3 stall 15 \
  "strata: timeout on world rank [02]: all_reduce 'test.stalled' #3 of group 'world' \(rank [02] of 3\) waited" \
  "did not arrive: rank 1 \(world 1\): entered up to #2 of 'world'; it is not waiting in any collective" \
  "arrived: [02]"
# A stopped rank cannot answer.
run 2 stop 20 \
  "all_reduce 'test.stopped' #3 of group 'world'" \
  "did not arrive: rank 1 \(world 1\): no answer within 3 s \(stopped, dead or unreachable\)"
# A rank that never sends: the receiver names the receive and the sender's count.
run 2 recv 15 \
  "strata: timeout on world rank 0: recv 'test.activation' #1 from rank 1 of group 'world'" \
  "did not arrive: rank 1 \(world 1\): posted 0 sends to this rank"
# A killed rank: the job must end; the survivors may or may not get to report before mpirun
# tears them down, and if they do, they name the collective.
for mode in kill kill_mid; do
  run 3 "$mode" 30 "exited on signal 9|test\.killed"
  if grep -q "strata: timeout" "$out" && ! grep -qE "all_reduce(_async)? 'test\.killed(_mid)?' #3" "$out"; then
    echo "FAIL $mode: a survivor reported without naming the collective"
    fails=$((fails + 1))
  fi
done

if ((fails)); then
  echo "watchdog_test: $fails failure(s)"
  exit 1
fi
echo "watchdog_test: all modes ok"
