// pooler.go picks the pool's query mode: pgx's default, or cache_describe behind a transaction-mode pooler.
package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// queryMode is the pool's BeforeConnect hook when DATABASE_URL names no
// default_query_exec_mode. pgx's default (cache_statement) prepares each statement
// once per connection under a name, which a transaction-mode pooler (PgBouncer;
// Neon's -pooler endpoint) loses when it moves the connection to another server
// session, unless it tracks names (PgBouncer 1.21+ with max_prepared_statements
// above 0): most statements then fail (SQLSTATE 26000 or 42P05). So the first
// connect probes (serversShared, within 4 × timeout), and found gets the finding:
// behind such a pooler every connection uses cache_describe, unnamed statements,
// which any pooler passes. A failed probe fails its connect (a 503); the next probes again.
func queryMode(timeout time.Duration, found *atomic.Bool) func(context.Context, *pgx.ConnConfig) error {
	var mu sync.Mutex
	var known bool
	return func(ctx context.Context, cfg *pgx.ConnConfig) error {
		mu.Lock()
		defer mu.Unlock()
		if !known {
			ctx, cancel := context.WithTimeout(ctx, 4*timeout)
			defer cancel()
			pooled, err := serversShared(ctx, cfg)
			if err != nil {
				return err
			}
			known = true
			found.Store(pooled)
		}
		if found.Load() {
			cfg.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
		}
		return nil
	}
}

// serversShared reports whether two connections of cfg run on server sessions that
// move or are shared, as only a transaction-mode pooler makes them. Directly or in
// session mode, a connection keeps its own backend; PgBouncer hands out the server
// connection released last (so both get the same one) or, with server_round_robin,
// the next one (so the first's moves); other clients' traffic only adds movement.
func serversShared(ctx context.Context, cfg *pgx.ConnConfig) (bool, error) {
	a, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, err
	}
	defer a.Close(context.Background())
	b, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, err
	}
	defer b.Close(context.Background())
	// Unnamed, as any pooler passes; not the simple protocol, which pgx refuses
	// on a database not in UTF8 (migrate says so then, in one line).
	pid := func(c *pgx.Conn) (n int32) {
		if err == nil {
			err = c.QueryRow(ctx, "SELECT pg_backend_pid()", pgx.QueryExecModeExec).Scan(&n)
		}
		return n
	}
	for range 5 {
		a1, a2, b1 := pid(a), pid(a), pid(b)
		if err != nil {
			return false, err
		}
		if a1 != a2 || a1 == b1 {
			return true, nil
		}
	}
	return false, nil
}
