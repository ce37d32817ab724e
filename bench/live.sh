#!/usr/bin/env bash
# Live updates: how long a write's change takes to reach another replica's event stream.
#
#   bash bench/live.sh [writes=100] [streams=1,100,1000]
#
# Starts a private PostgreSQL (bench/pg.sh) and two API replicas on it, which LISTEN directly.
# For each count of open streams, bench/streams.go opens them on replica 2 (one of them the writing
# user's), creates tasks one at a time through replica 1, and prints the time from each create's
# answer to its event on replica 2's stream: p50, p99, max. FALLBACK=1 points the replicas'
# DATABASE_DIRECT_URL at another database, so that their start-up check fails and they poll.
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
export MAX_STREAMS=5000
# FALLBACK: a direct URL to another database, so that the start-up check fails and they poll.
[ -z "${FALLBACK:-}" ] || export DATABASE_DIRECT_URL="postgres://postgres@127.0.0.1:$PORT/template1?sslmode=disable"
start_api 2 18270
grep -h '"msg":"live updates' "$work"/api-*.log | head -n 2
echo "$(nproc) cores, $WRITES creates per count, $(date -u +%Y-%m-%d)"
for n in ${COUNTS//,/ }; do
  go run bench/streams.go -api http://127.0.0.1:18272 -writer http://127.0.0.1:18271 -n "$n" -writes "$WRITES"
done
