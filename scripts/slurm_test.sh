#!/usr/bin/env bash
# The Slurm test (CI runs it from scripts/test.sh): a single-node Slurm started on
# localhost (Debian slurm-wlm and munge, installed here if missing: they are not part of
# the quickstart's setup; shared/SLURM.md has the recipe), then
#  1. a 6-member sweep (each member starting from one shared fp32 experiment) submitted
#     as a 3-task job array from `run --slurm`: all 7 records in the database exactly once;
#  2. the same sweep into a fresh output dir with one array task cancelled mid-run, then
#     the array submitted again: still exactly once each, and the database equals the
#     records on disk.
# Ends with "N passed, N failed" (the checks). Needs root (daemons, packages).
set -uo pipefail
cd "$(dirname "$0")/.."
passed=0
failed=0
check() {  # check <description> <command...>
  local what=$1
  shift
  if "$@"; then
    echo "PASS: $what"
    passed=$((passed + 1))
  else
    echo "FAIL: $what"
    failed=$((failed + 1))
  fi
}
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}

if [ "$(id -u)" -ne 0 ]; then
  echo "FAIL: the Slurm test needs root (it starts munged, slurmctld and slurmd)"
  failed=1
  finish
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  echo "installing slurm-wlm and munge (test only; not part of scripts/setup.sh)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null; }
fi
command -v sbatch >/dev/null || { echo "FAIL: slurm-wlm did not install"; failed=1; finish; }

bazel build //experiments:run >/dev/null 2>&1 || { echo "FAIL: cannot build //experiments:run"; failed=1; finish; }
RUN=$(readlink -f bazel-bin/experiments/run)
S=$(mktemp -d /tmp/quantlab-slurm.XXXXXX)
H=$(hostname -s)
N=$(nproc)

# munge (its own key if none exists; the daemon stopped by its pid at the end).
mkdir -p /etc/munge /var/log/munge /var/lib/munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
fi
chown -R munge:munge /etc/munge /var/log/munge /var/lib/munge /run/munge
chmod 400 /etc/munge/munge.key
started_munge=0
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  munged --force --pid-file="$S/munged.pid" 2>/dev/null || runuser -u munge -- munged --force
  started_munge=1
fi

cat >"$S/slurm.conf" <<CONF
ClusterName=quantlab
SlurmctldHost=$H
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldPort=16817
SlurmdPort=16818
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/slurmctld.log
SlurmdLogFile=$S/slurmd.log
MpiDefault=none
NodeName=$H CPUs=$N State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP
CONF
mkdir -p "$S/state" "$S/spool"
export SLURM_CONF="$S/slurm.conf"
stop() {
  for f in "$S/slurmd.pid" "$S/slurmctld.pid"; do
    [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null
  done
  if [ "$started_munge" = 1 ] && [ -s "$S/munged.pid" ]; then kill "$(cat "$S/munged.pid")" 2>/dev/null; fi
  sleep 1
}
trap stop EXIT
slurmctld -c -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
  sinfo -h -o %T 2>/dev/null | grep -q idle && break
  sleep 1
done
check "single-node Slurm is up (sinfo: idle)" bash -c "sinfo -h -o %T | grep -q idle"
if [ "$failed" -gt 0 ]; then
  tail -5 "$S/slurmctld.log" "$S/slurmd.log" 2>/dev/null
  finish
fi

# The sweep: 6 seeds of a short fine-tuning run, each starting from fp.yaml's checkpoint
# (which the first task to need it runs; the others wait for it under its run lock).
cat >"$S/fp.yaml" <<'YAML'
name: fp
seed: 0
dataset: {name: synthetic, train_size: 2048, test_size: 256}
model: {name: mlp}
train: {epochs: 3, batch_size: 64}
YAML
cat >"$S/ft.yaml" <<'YAML'
name: ft
dataset: {name: synthetic, train_size: 8192, test_size: 256}
model: {name: mlp}
train: {epochs: 20, batch_size: 32, init_from: {config: fp.yaml}}
YAML
cat >"$S/sweep.yaml" <<'YAML'
base: ft.yaml
seeds: [1, 2, 3, 4, 5, 6]
YAML

# exactly_once <output dir>: 7 OK rows, 7 distinct runs, equal to the OK records on disk.
exactly_once() {
  /usr/bin/python3 - "$1" <<'PY'
import json, os, sqlite3, sys
out = sys.argv[1]
db = sqlite3.connect(os.path.join(out, "results.db"))
rows = db.execute("SELECT run, start_time FROM runs WHERE status = 'OK'").fetchall()
disk = {}
for d in os.listdir(out):
    p = os.path.join(out, d)
    if os.path.islink(p) or not os.path.isfile(os.path.join(p, "result.json")):
        continue
    r = json.load(open(os.path.join(p, "result.json")))
    if r.get("status") == "OK":
        disk[d] = r["start_time"]
ok = len(rows) == 7 and len({r for r, _ in rows}) == 7 and dict(rows) == disk
print("database: %d OK rows (%d distinct), on disk: %d OK records" % (len(rows), len({r for r, _ in rows}), len(disk)))
sys.exit(0 if ok else 1)
PY
}

(cd "$S" && "$RUN" --config=sweep.yaml --slurm --shards=3 --jobs=1 --output_dir="$S/out1") >"$S/slurm1.txt" 2>&1
check "--slurm writes a 3-task array script" grep -q "^#SBATCH --array=0-2$" "$S/out1/slurm/sweep.sbatch"
sbatch --wait "$S/out1/slurm/sweep.sbatch" >/dev/null 2>&1
check "the array's 3 tasks ran: 6 members + the shared fp32 run, each exactly once" exactly_once "$S/out1"
ran=$(cat "$S"/out1/slurm/sweep-*.log 2>/dev/null | grep -c "^\[done .*: ok (")
check "across the tasks' logs, 7 runs (not 8 or 9: fp ran once)" test "$ran" -eq 7

# Cancel one task mid-run, then re-submit: still exactly once.
(cd "$S" && "$RUN" --config=sweep.yaml --slurm --shards=3 --jobs=1 --output_dir="$S/out2") >/dev/null 2>&1
job=$(sbatch --parsable "$S/out2/slurm/sweep.sbatch")
for _ in $(seq 120); do  # until some member is done and task 2 is running one
  ls "$S"/out2/ft__seed=*/result.json >/dev/null 2>&1 && squeue -h -j "${job}_2" -t R 2>/dev/null | grep -q . && break
  sleep 0.5
done
scancel "${job}_2"
for _ in $(seq 240); do
  [ -z "$(squeue -h -j "$job" 2>/dev/null)" ] && break
  sleep 0.5
done
before=$(/usr/bin/python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT COUNT(*) FROM runs WHERE status='OK'\").fetchone()[0])" "$S/out2/results.db" 2>/dev/null || echo 0)
check "the cancelled task left its members unfinished ($before of 7 done)" test "$before" -lt 7
sbatch --wait "$S/out2/slurm/sweep.sbatch" >/dev/null 2>&1
check "re-submitted: every member exactly once, database == records on disk" exactly_once "$S/out2"
check "no half-written temporary left" bash -c "! find '$S/out2' -name '*.tmp.*' | grep -q ."
finish
