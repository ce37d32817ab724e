# pg.sh: what bench/run.sh, ab.sh and live.sh share, sourced by each: a private PostgreSQL in $work/pg
# on $PORT, its CPU, and the seed. Needs PGBIN, PORT and work (a directory postgres may write).

# start_pg initdbs and starts the private PostgreSQL (max_connections 300, so 100 clients fit),
# sets pgpid and points psql and pgbench at it.
start_pg() {
  runuser -u postgres -- "$PGBIN/initdb" -D "$work/pg" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  printf "port = %s\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nmax_connections = 300\n" \
    "$PORT" "$work/pg" >>"$work/pg/postgresql.conf"
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w start >/dev/null
  pgpid=$(head -1 "$work/pg/postmaster.pid")
  export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres
}

stop_pg() { runuser -u postgres -- "$PGBIN/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true; }

# CPU seconds (user + system) of a process; with a second argument, plus its exited children's.
cpu() { awk -v dead="${2:-}" '{ s = $0; sub(/.*\) /, "", s); split(s, f, " "); print (f[12] + f[13] + (dead ? f[14] + f[15] : 0)) / 100 }' "/proc/$1/stat"; }

# PostgreSQL's CPU: the postmaster, its live backends, and the backends that have exited (pgbench's,
# autovacuum's). A backend reaped between reading the postmaster and reading the backends would be
# in neither, so the reading is taken again until no backend was reaped during it.
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

# seed USERS TASKS: user n owns task ids (n-1)*TASKS+1 .. n*TASKS, each with its own version, as
# the API would have written them; writers (bench-wNNNNN) start empty.
seed() {
  psql -q -v ON_ERROR_STOP=1 <<SQL
TRUNCATE tasks, task_counts RESTART IDENTITY;
INSERT INTO tasks (user_id, title, description, tags, created_at, updated_at, version, position)
SELECT 'bench-u' || lpad(u::text, 5, '0'), 'Seed task ' || k, CASE WHEN k % 2 = 0 THEN 'Seeded description ' || k END,
       CASE WHEN k % 3 = 0 THEN '{home}'::text[] ELSE '{}' END,
       now() - interval '1 hour' + k * interval '1 second', now() - interval '1 hour' + k * interval '1 second', k, task_position_first(k)
FROM generate_series(1, $1) u, generate_series(1, $2) k ORDER BY u, k;
INSERT INTO task_counts (user_id, n, version) SELECT user_id, count(*), max(version) FROM tasks GROUP BY user_id;
VACUUM ANALYZE tasks;
SQL
}

# start_api N BASEPORT builds this checkout into $work/tasks and starts N replicas on ports
# BASEPORT+1 to BASEPORT+N, on the private PostgreSQL (DB_PARAMS: more URL parameters), with
# RATE_LIMIT_PER_SECOND=0 and what else the environment sets; it adds their pids to pids, and
# waits for each to answer /readyz (or stops the script with its log).
start_api() {
  CGO_ENABLED=0 go build -trimpath -o "$work/tasks" .
  export BETTER_AUTH_SECRET="bench-secret-$(head -c 16 /dev/urandom | base64)"
  local r ok
  for r in $(seq "$1"); do
    DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/postgres?sslmode=disable${DB_PARAMS:+&$DB_PARAMS}" PORT=$(($2 + r)) \
      RATE_LIMIT_PER_SECOND=0 "$work/tasks" >"$work/api-$r.log" 2>&1 &
    pids+=($!)
  done
  for r in $(seq "$1"); do
    ok=
    for _ in $(seq 50); do curl -sf "http://127.0.0.1:$(($2 + r))/readyz" >/dev/null && ok=1 && break; sleep 0.2; done
    [ -n "$ok" ] || { echo "replica $r did not become ready:" >&2; cat "$work/api-$r.log" >&2; exit 1; }
  done
}
