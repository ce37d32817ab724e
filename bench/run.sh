#!/usr/bin/env bash
# HTTP-level benchmark of the tasks API, next to pgbench running the same SQL.
#
#   bash bench/run.sh [-c 100] [-d 10] [-u 1000] [-t 20] [-p list,list_params,get,update,toggle,create,changes] [-r 1] [-s 0]
#
# Starts a private PostgreSQL 15 (bench/pg.sh: initdb in a temporary directory, max_connections 300), builds the binary, seeds -u users x -t tasks, then for each phase runs wrk
# (-c connections, 2 threads, 2 s warm-up, -d s measured) against the API and pgbench (same
# connections, at most 200) with the statement the API sends for that route. Prints one Markdown row per
# phase: requests/s, p99, CPU per request in the API process and in PostgreSQL, for both.
# -r N starts N replicas behind no balancer: wrk's connections are spread over them.
# -s N holds N idle event streams open on the first replica during the phases (bench/streams.go).
# Needs: wrk and pgbench (Debian: apt-get install wrk postgresql-client), Go, root (for runuser).
set -euo pipefail
cd "$(dirname "$0")/.."
C=100 D=10 USERS=1000 TASKS=20 PHASES=list,list_params,get,update,toggle,create,changes REPLICAS=1 STREAMS=0
while getopts "c:d:u:t:p:r:s:h" o; do
  case $o in
    c) C=$OPTARG ;; d) D=$OPTARG ;; u) USERS=$OPTARG ;; t) TASKS=$OPTARG ;; p) PHASES=$OPTARG ;; r) REPLICAS=$OPTARG ;; s) STREAMS=$OPTARG ;;
    *) sed -n '2,12p' "$0"; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { echo "bench needs wrk: apt-get install wrk"; exit 1; }
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | tail -n1)
PORT=${PGPORT_BENCH:-18100}
work=$(mktemp -d /tmp/tasks-bench.XXXXXX)
chown postgres "$work"
pids=() holder=
. bench/pg.sh
cleanup() {
  for p in "${pids[@]}" $holder; do kill "$p" 2>/dev/null || true; done
  stop_pg
  rm -rf "$work"
}
trap cleanup EXIT
apicpu() { local t=0; for p in "${pids[@]}"; do t=$(echo "$t + $(cpu "$p")" | bc); done; echo "$t"; }
start_pg

start_api "$REPLICAS" 18200

seed "$USERS" "$TASKS"
for u in $(seq "$USERS"); do "$work/tasks" token "$(printf 'bench-u%05d' "$u")"; done >"$work/tokens"
for u in $(seq "$USERS"); do "$work/tasks" token "$(printf 'bench-w%05d' "$u")"; done >>"$work/tokens"
if [ "$STREAMS" -gt 0 ]; then # idle streams, whose CPU (not the API's) is left out of every figure
  go build -o "$work/streams" bench/streams.go
  "$work/streams" -api http://127.0.0.1:18201 -n "$STREAMS" -hold >"$work/streams.out" 2>&1 &
  holder=$!
  until grep -q '^ready' "$work/streams.out"; do kill -0 $holder || { cat "$work/streams.out"; exit 1; }; sleep 0.5; done
fi

# wrk spreads its connections over the replicas by running one wrk per replica.
load() { # phase seconds -> RESULT lines
  local per=$((C / REPLICAS)) jobs=()
  for r in $(seq "$REPLICAS"); do
    wrk -t "$((2 / REPLICAS > 0 ? 2 / REPLICAS : 1))" -c "$per" -d "${2}s" --timeout 10s -s bench/wrk.lua \
      "http://127.0.0.1:$((18200 + r))" -- "$1" "$USERS" "$TASKS" "$work/tokens" "$work/cursors" | grep '^RESULT' &
    jobs+=($!)
  done
  wait "${jobs[@]}"
}

PGC=$((C > 200 ? 200 : C)) # pgbench holds a server connection per client: at most 200 of the 300
echo "tasks API vs pgbench on the same SQL: $(nproc) cores, c=$C, ${D}s per phase, $USERS users x $TASKS tasks, $REPLICAS replica(s), $STREAMS idle streams, $(date -u +%Y-%m-%d)"
echo
echo "| phase | API req/s | API p99 ms | API CPU µs/req | DB CPU µs/req (API) | pgbench tps | pgbench p99 ms | DB CPU µs/req (pgbench) | API ÷ pgbench |"
echo "|---|---|---|---|---|---|---|---|---|"
for phase in ${PHASES//,/ }; do
  if [ "$phase" = changes ]; then # each user's cursor at their last version (feedCursor.String): a poll that finds nothing new
    psql -qAt -v ms="$(date +%s%3N)" >"$work/cursors" <<'SQL'
SELECT translate(encode(convert_to(version || '.' || :'ms' || '.-1.' ||
  translate(encode(substring(sha256(convert_to(user_id, 'UTF8')) FROM 1 FOR 6), 'base64'), '+/', '-_'), 'UTF8'), 'base64'),
  '+/=' || E'\n', '-_')
FROM task_counts WHERE user_id LIKE 'bench-u%' ORDER BY user_id;
SQL
  fi
  load "$phase" 2 >/dev/null
  a0=$(apicpu); p0=$(pgcpu)
  res=$(load "$phase" "$D")
  a1=$(apicpu); p1=$(pgcpu)
  reqs=$(echo "$res" | sed -E 's/.*requests=([0-9]+).*/\1/' | paste -sd+ | bc)
  rps=$(echo "$res" | sed -E 's/.*rps=([0-9.]+).*/\1/' | paste -sd+ | bc)
  p99=$(echo "$res" | sed -E 's/.*p99_ms=([0-9.]+).*/\1/' | sort -n | tail -n1)
  bad=$(echo "$res" | sed -E 's/.*non2xx=([0-9]+).*/\1/' | paste -sd+ | bc)
  [ "$bad" = 0 ] || echo "warning: $bad non-2xx or failed requests in $phase" >&2
  api_us=$(echo "($a1 - $a0) * 1000000 / $reqs" | bc)
  db_us=$(echo "($p1 - $p0) * 1000000 / $reqs" | bc)

  sqlfile=bench/sql/${phase%_params}.sql
  pgb=""
  if [ "$phase" = "${phase%_params}" ]; then
    pgbench -n -M prepared -c "$PGC" -j 2 -T 2 -D users="$USERS" -D tasks="$TASKS" -f "$sqlfile" >/dev/null 2>&1
    sleep 1 # let the warm-up's backends exit, so their CPU is not counted in the run's
    q0=$(pgcpu)
    out=$(cd "$work" && pgbench -n -M prepared -c "$PGC" -j 2 -T "$D" -D users="$USERS" -D tasks="$TASKS" -f "$OLDPWD/$sqlfile" -l --log-prefix=pgb 2>/dev/null)
    sleep 1 # and the run's own backends, so that all of theirs is
    q1=$(pgcpu)
    tps=$(echo "$out" | sed -nE 's/^tps = ([0-9.]+).*/\1/p')
    n=$(echo "$out" | sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p')
    pp99=$(cat "$work"/pgb.* | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {printf "%.3f", a[int(NR*0.99)]/1000}')
    rm -f "$work"/pgb.*
    qdb=$(echo "($q1 - $q0) * 1000000 / $n" | bc)
    ratio=$(echo "scale=2; $rps / $tps" | bc)
    pgb="$(printf '%.0f' "$tps") | $pp99 | $qdb | $ratio"
  else
    pgb="— | — | — | —"
  fi
  printf '| %s | %.0f | %s | %s | %s | %s |\n' "$phase" "$rps" "$p99" "$api_us" "$db_us" "$pgb"
done
echo
for p in "${pids[@]}"; do echo "API process $p: peak RSS $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' /proc/$p/status)"; done
