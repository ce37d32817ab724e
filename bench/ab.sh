#!/usr/bin/env bash
# PostgreSQL's CPU per transaction for two pgbench scripts, A and B, run in turns in one sitting, so
# that the machine's drift between two bench/run.sh runs does not decide the comparison.
#
#   bash bench/ab.sh A.sql B.sql [rounds=5] [seconds=8] [clients=16]
#
# Starts a private PostgreSQL 15 with this checkout's schema.sql, seeds 1000 users x 20 tasks as
# bench/run.sh does, then runs A and B in turns (pgbench -M prepared), and prints PostgreSQL's CPU
# (µs per transaction: the postmaster, its backends, the exited ones) for each run, and the median
# of B ÷ A. Scripts take pgbench's -D users=1000 -D tasks=20, as bench/sql/*.sql do. SETUP, if set,
# is SQL run after the seed (a storage setting to try, say).
set -euo pipefail
cd "$(dirname "$0")/.."
A=$1 B=$2 ROUNDS=${3:-5} SECS=${4:-8} CLIENTS=${5:-16}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | tail -n1)
PORT=${PGPORT_BENCH:-18150}
work=$(mktemp -d /tmp/tasks-ab.XXXXXX)
chown postgres "$work"
. bench/pg.sh
cleanup() { stop_pg; rm -rf "$work"; }
trap cleanup EXIT
start_pg
psql -q -v ON_ERROR_STOP=1 -f schema.sql >/dev/null
seed 1000 20
[ -z "${SETUP:-}" ] || echo "$SETUP" | psql -q -v ON_ERROR_STOP=1 # e.g. a storage setting to try
run() { # script -> µs of PostgreSQL CPU per transaction
  local q0 q1 n
  q0=$(pgcpu)
  n=$(pgbench -n -M prepared -c "$CLIENTS" -j 2 -T "$SECS" -D users=1000 -D tasks=20 -f "$1" 2>/dev/null |
    sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p')
  sleep 1 # the run's backends exit, so that all of their CPU is counted
  q1=$(pgcpu)
  echo "($q1 - $q0) * 1000000 / $n" | bc
}
run "$A" >/dev/null; run "$B" >/dev/null # warm-up
ratios=()
echo "| round | A µs/tx | B µs/tx | B ÷ A |"
echo "|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
  a=$(run "$A"); b=$(run "$B")
  ratio=$(echo "scale=2; $b / $a" | bc)
  ratios+=("$ratio")
  echo "| $r | $a | $b | $ratio |"
done
echo "median B ÷ A: $(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') ($A → $B)"
