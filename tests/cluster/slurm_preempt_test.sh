#!/usr/bin/env bash
# A real Slurm on this machine (slurmctld + slurmd + munge on localhost, as in
# ../shared/docs/ENV.md "Slurm on one machine"): launch/slurm/strata-mpirun.sbatch trains a tiny
# decoder on 2 ranks, is signalled as Slurm does before a time limit (SIGUSR1 to the batch script),
# saves, exits 75, requeues itself, and the requeued job resumes and finishes; its final checkpoint
# must equal a straight run of the same job bit for bit (strata inspect --compare).
#   slurm_preempt_test.sh STRATA_BINARY REPO
# Needs root (it installs slurm-wlm and munge when missing and starts the daemons); exits 77
# (skipped) only when it cannot, saying why.
set -uo pipefail
strata="$(realpath "$1")"
repo="$(realpath "$2")"
work="$(mktemp -d /tmp/strata_slurm.XXXXXX)"
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  pkill -f "slurmd -D -f $work" 2>/dev/null
  pkill -f "slurmctld -D -f $work" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; squeue 2>&1 | head; scontrol show node 2>&1 | grep -E "CPUTot|State|Reason" ; scontrol show job 2>&1 | grep -E "NumNodes|NumCPUs|Reason|TRES" ; tail -15 "$work/slurmctld.log" "$work/slurmd.log" 2>/dev/null; exit 1; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  [[ $(id -u) -eq 0 ]] || { echo "skipped: slurm-wlm is not installed and this is not root"; exit 77; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >"$work/apt.log" 2>&1 ||
    { echo "skipped: cannot install slurm-wlm ($(tail -1 "$work/apt.log"))"; exit 77; }
fi
[[ $(id -u) -eq 0 ]] || { echo "skipped: starting slurmd needs root"; exit 77; }

# munge: its own key when the package left none, and the daemon as user munge.
mkdir -p /run/munge /etc/munge && chown munge:munge /run/munge /etc/munge
[[ -s /etc/munge/munge.key ]] || { mungekey -c -f -k /etc/munge/munge.key && chown munge /etc/munge/munge.key; }
pgrep -x munged >/dev/null || runuser -u munge -- munged || fail "munged did not start"

host=$(hostname -s)
mkdir -p "$work/state" "$work/spool"
cat >"$work/slurm.conf" <<CONF
ClusterName=strata-test
SlurmctldHost=$host
SlurmUser=root
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SchedulerType=sched/builtin
ReturnToService=2
JobRequeue=1
MpiDefault=none
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
NodeName=$host CPUs=$(getconf _NPROCESSORS_ONLN) RealMemory=1000 State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE
CONF
export SLURM_CONF="$work/slurm.conf"
slurmctld -D -f "$work/slurm.conf" >"$work/ctld.out" 2>&1 & pids+=($!)
sleep 1
slurmd -D -f "$work/slurm.conf" >"$work/d.out" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do
  sinfo -h -o %t 2>/dev/null | grep -q idle && break
  sleep 0.2
done
sinfo -h -o %t | grep -q idle ||
  { cat "$work/ctld.out" "$work/d.out" "$work/slurmctld.log" 2>/dev/null | tail -20; fail "the node did not come up"; }

# The job: a tiny decoder on 2 ranks (DP2), long enough to be signalled in the middle.
export strata
source "$repo/tests/train/byte_corpus.sh"
byte_corpus "$work" 6 4 60
args=(--config "$repo/configs/decoder-tiny.ini" --data.prepare never --data.tokenizer "$work/bytes.tok"
      --data.train "$work/train" --data.valid "$work/valid" --data.seq_len 32 --data.micro_batch 8
      --budget.amount 3000 --optim.warmup_steps 2 --log.every 100 --log.eval_every 0
      --log.save_every 0 --log.peak_gflops 1 --log.sample_tokens 0 --run.threads 1)

OMP_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe -np 2 "$strata" train "${args[@]}" \
  --run.dir "$work/straight" >"$work/straight.log" 2>&1 || { cat "$work/straight.log"; fail "straight run"; }

cd "$work"
job=$(STRATA="$strata" OMP_NUM_THREADS=1 sbatch --parsable -N 1 -n 2 --output="$work/job.out" \
  "$repo/launch/slurm/strata-mpirun.sbatch" "${args[@]}" --run.dir "$work/preempted") ||
  fail "sbatch refused the job"
echo "submitted job $job"
for _ in $(seq 1 600); do grep -q "^step " "$work/job.out" 2>/dev/null && break; sleep 0.1; done
grep -q "^step " "$work/job.out" || { cat "$work/job.out"; fail "the job never trained"; }
# What Slurm does before a time limit with --signal=B:USR1@120.
scancel --batch --signal=USR1 "$job" || fail "scancel --signal"
# Slurm holds a requeued job about two minutes before it may start again (BeginTime).
for _ in $(seq 1 1200); do
  [[ -e "$work/preempted/step_000003000/DONE" ]] && ! squeue -h -j "$job" 2>/dev/null | grep -q . && break
  sleep 0.25
done
cat "$work/job.out"
stopped=$(sed -n 's/^stopped: step \([0-9]*\) saved.*/\1/p' "$work/job.out" | head -1)
[[ -n $stopped ]] || fail "the job did not stop on the signal"
grep -q "requeueing job $job" "$work/job.out" || fail "the job did not requeue itself"
grep -q "resumed from $work/preempted/step_$(printf %09d "$stopped")" "$work/job.out" ||
  fail "the requeued job did not resume from step $stopped"
[[ -e "$work/preempted/step_000003000/DONE" ]] || fail "the requeued job did not finish"
"$strata" inspect "$work/straight/step_000003000" --compare "$work/preempted/step_000003000" ||
  fail "the preempted and requeued job differs from the straight run"
echo "ok: job $job stopped at step $stopped on SIGUSR1, requeued, resumed and finished bit for bit equal to the straight run"
