#!/usr/bin/env bash
# Live updates: how long a write's change takes to reach another replica's event stream.
#
#   bash bench/live.sh [writes=100] [streams=1,100,1000]
#
# Starts a private PostgreSQL (bench/pg.sh) and two API replicas on it, which LISTEN directly.
# For each count of open streams, bench/streams.go opens them on replica 2 (one of them the writing
# user's), creates tasks one at a time through replica 1, and prints the time from each create's
# answer to its event on replica 2's stream: p50, p99, max. FALLBACK=1 points replica 2's
# DATABASE_DIRECT_URL at another database, so that its start-up check fails and it polls.
set -euo pipefail
cd "$(dirname "$0")/.."
WRITES=${1:-100} COUNTS=${2:-1,100,1000}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | tail -n1)
PORT=${PGPORT_BENCH:-18170}
work=$(mktemp -d /tmp/tasks-live.XXXXXX)
chown postgres "$work"
pids=()
. bench/pg.sh
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_pg
  rm -rf "$work"
}
trap cleanup EXIT
start_pg
CGO_ENABLED=0 go build -trimpath -o "$work/tasks" .
export BETTER_AUTH_SECRET="bench-secret-$(head -c 16 /dev/urandom | base64)"
for r in 1 2; do
  direct=
  [ "$r" = 2 ] && [ -n "${FALLBACK:-}" ] && direct="postgres://postgres@127.0.0.1:$PORT/template1?sslmode=disable"
  DATABASE_DIRECT_URL=$direct DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/postgres?sslmode=disable" PORT=$((18270 + r)) \
    RATE_LIMIT_PER_SECOND=0 MAX_STREAMS=5000 "$work/tasks" >"$work/api-$r.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$((18270 + r))/readyz" >/dev/null && break; sleep 0.2; done
done
grep -h '"msg":"live updates' "$work"/api-*.log | head -n 2
echo "$(nproc) cores, $WRITES creates per count, $(date -u +%Y-%m-%d)"
for n in ${COUNTS//,/ }; do
  go run bench/streams.go -api http://127.0.0.1:18272 -writer http://127.0.0.1:18271 -n "$n" -writes "$WRITES"
done
