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
cleanup() { runuser -u postgres -- "$PGBIN/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
cpu() { awk -v dead="${2:-}" '{ s = $0; sub(/.*\) /, "", s); split(s, f, " "); print (f[12] + f[13] + (dead ? f[14] + f[15] : 0)) / 100 }' "/proc/$1/stat"; }
pgcpu() {
  local before total
  while :; do
    before=$(cpu "$pgpid" dead)
    total=$before
    for p in $(pgrep -P "$pgpid"); do total=$(echo "$total + $(cpu "$p" 2>/dev/null || echo 0)" | bc); done
    [ "$(cpu "$pgpid" dead)" = "$before" ] && break
  done
  echo "$total"
}
runuser -u postgres -- "$PGBIN/initdb" -D "$work/pg" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
printf "port = $PORT\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '$work/pg'\n" >>"$work/pg/postgresql.conf"
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w start >/dev/null
pgpid=$(head -1 "$work/pg/postmaster.pid")
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres
psql -q -v ON_ERROR_STOP=1 -f schema.sql >/dev/null
psql -q -v ON_ERROR_STOP=1 <<SQL
INSERT INTO tasks (user_id, title, description, tags, version)
SELECT 'bench-u' || lpad(u::text, 5, '0'), 'Seed task ' || k, CASE WHEN k % 2 = 0 THEN 'Seeded description ' || k END,
       CASE WHEN k % 3 = 0 THEN '{home}'::text[] ELSE '{}' END, k
FROM generate_series(1, 1000) u, generate_series(1, 20) k ORDER BY u, k;
INSERT INTO task_counts (user_id, n, version) SELECT user_id, count(*), max(version) FROM tasks GROUP BY user_id;
VACUUM ANALYZE;
SQL
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
