// pooler.go finds out, at start, whether a pooler between the service and PostgreSQL keeps prepared statements, and picks a query mode that works.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// sqlstateInvalidStatementName: a named prepared statement that this server session does not hold.
const sqlstateInvalidStatementName = "26000"

// checkPooler finds out whether DATABASE_URL reaches a transaction-mode
// pooler (PgBouncer; Neon's -pooler endpoint), which serves a connection's
// transactions from whichever server connection is free. pgx's default mode
// (cache_statement) prepares each statement once per connection under a name,
// which another server connection does not hold unless the pooler tracks
// names (PgBouncer 1.21 and later with max_prepared_statements; Neon's does);
// without that, most statements fail (SQLSTATE 26000 or 42P05) and answer 500.
// Behind such a pooler, unless DATABASE_URL chose a mode, the pool moves to
// cache_describe (unnamed statements, described once per connection), which
// works behind any pooler, and says so once. A URL that chose cache_statement
// keeps it if the pooler keeps prepared statements, and is refused if not.
// What the probe found is kept in s.pooled, for live updates (checkNotify).
func (s *store) checkPooler(ctx context.Context, databaseURL string, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, 4*s.timeout)
	defer cancel()
	if err := s.checkPoolerMode(ctx, databaseURL, log); err != nil {
		return err
	}
	// Then one statement as the store sends them: a setting in DATABASE_URL
	// that stops pgx from running any (statement_cache_capacity=0 with the
	// default mode, say) is refused here rather than answered with 500s.
	var one int
	if err := s.pool.QueryRow(ctx, `SELECT $1::int`, 1).Scan(&one); err != nil {
		return fmt.Errorf("DATABASE_URL: a statement cannot run with these settings: %w", err)
	}
	return nil
}

// checkPoolerMode moves the pool to cache_describe behind a transaction-mode pooler (see checkPooler).
func (s *store) checkPoolerMode(ctx context.Context, databaseURL string, log *slog.Logger) error {
	if s.pool.Config().ConnConfig.DefaultQueryExecMode != pgx.QueryExecModeCacheStatement {
		return nil // every other mode uses unnamed statements, which any pooler passes through
	}
	pooled, err := serversShared(ctx, s.pool.Config().ConnConfig)
	if err != nil {
		return err
	}
	s.pooled = &pooled
	if !pooled {
		return nil
	}
	if strings.Contains(databaseURL, "default_query_exec_mode") {
		for range 3 {
			if keeps, err := s.preparedStatementsOutliveTransactions(ctx); err != nil || !keeps {
				if err == nil {
					err = errors.New("DATABASE_URL asks for default_query_exec_mode=cache_statement, but it reaches a transaction-mode pooler that drops prepared statements between transactions (PgBouncer before 1.21, or max_prepared_statements = 0): use default_query_exec_mode=cache_describe")
				}
				return err
			}
		}
		return nil
	}
	cfg := s.pool.Config()
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("open pool: %w", err)
	}
	s.pool.Close()
	s.pool = pool
	log.Warn("DATABASE_URL reaches a transaction-mode pooler (PgBouncer, or Neon's -pooler endpoint); using default_query_exec_mode=cache_describe, which works behind any pooler: add it to DATABASE_URL to say so")
	return nil
}

// serversShared reports whether two connections' (of cfg's) statements run on server
// sessions that move or are shared, as only a transaction-mode pooler makes
// them: it asks each connection's backend process id, the first twice, in
// up to five rounds. Directly or in session mode, a connection keeps its own
// backend. PgBouncer hands out the server connection released last (so both
// connections get the same one) or, with server_round_robin, the next one (so
// the first connection's moves); other clients' traffic only adds movement.
func serversShared(ctx context.Context, cfg *pgx.ConnConfig) (bool, error) {
	a, b, err := connectTwo(ctx, cfg)
	if err != nil {
		return false, err
	}
	defer a.Close(context.Background())
	defer b.Close(context.Background())
	pid := func(c *pgx.Conn) (n int32) {
		if err == nil {
			err = c.QueryRow(ctx, "SELECT pg_backend_pid()", pgx.QueryExecModeSimpleProtocol).Scan(&n)
		}
		return n
	}
	for range 5 {
		a1, a2, b1 := pid(a), pid(a), pid(b)
		if err != nil {
			return false, err
		}
		if a1 != a2 || a1 == b1 || a2 == b1 {
			return true, nil
		}
	}
	return false, nil
}

// connectTwo opens two sessions of cfg's (the pool's settings, outside the
// pool), for a probe that needs both at once even when pool_max_conns is 1.
func connectTwo(ctx context.Context, cfg *pgx.ConnConfig) (a, b *pgx.Conn, err error) {
	if a, err = pgx.ConnectConfig(ctx, cfg); err != nil {
		return nil, nil, err
	}
	if b, err = pgx.ConnectConfig(ctx, cfg); err != nil {
		a.Close(context.Background())
		return nil, nil, err
	}
	return a, b, nil
}

// preparedStatementsOutliveTransactions prepares a statement in a transaction
// on one connection while a second connection holds a transaction of its own,
// so that a pooler must serve them from two server connections; ends both;
// and runs the statement on the first connection again. PgBouncer reuses the
// server connection released last, the second one's, so there the name is
// gone unless the pooler tracks it. Directly, or in session mode, it is kept.
func (s *store) preparedStatementsOutliveTransactions(ctx context.Context) (bool, error) {
	a, b, err := connectTwo(ctx, s.pool.Config().ConnConfig)
	if err != nil {
		return false, err
	}
	defer a.Close(context.Background())
	defer b.Close(context.Background())

	name := "tasks_pooler_probe_" + strings.ToLower(rand.Text()[:10]) // never another session's
	txA, err := a.Begin(ctx)
	if err != nil {
		return false, err
	}
	if _, err := txA.Prepare(ctx, name, "SELECT 1"); err != nil {
		return false, err
	}
	// The second transaction, on a server connection of its own. A pooler with
	// a single server connection makes it wait: then it tells nothing, and
	// its failure is ignored.
	waitCtx, cancelWait := context.WithTimeout(ctx, time.Second)
	txB, errB := b.Begin(waitCtx)
	if errB == nil {
		txB.Exec(waitCtx, "SELECT 1", pgx.QueryExecModeSimpleProtocol)
	}
	cancelWait()
	if err := txA.Commit(ctx); err != nil {
		return false, err
	}
	if errB == nil {
		txB.Commit(ctx) // after A's: its server connection is the one released last
	}
	var one int
	err = a.QueryRow(ctx, name).Scan(&one)
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == sqlstateInvalidStatementName {
		return false, nil
	}
	if err == nil {
		a.Deallocate(ctx, name)
	}
	return err == nil, err
}
