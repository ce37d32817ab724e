// db.go holds the PostgreSQL pool and its dialer, the store errors, and how a driver error becomes one.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Store errors; handlers map them to statuses in writeError.
var (
	errNotFound          = errors.New("task not found")
	errUnavailable       = errors.New("database unavailable")
	errRejected          = errors.New("rejected by a database constraint")
	errTaskLimit         = errors.New("task limit reached")
	errKeyReused         = errors.New("idempotency key reused with a different request")
	errCursorAhead       = errors.New("feed cursor past the user's version")
	errSeries            = errors.New("the write needs the user's lock") // completeSeries's: it may complete an open recurring task (store.missed)
	errSubscriptionLimit = errors.New("push subscription limit reached")
)

// constraintErrors are the 422s of schema.sql's table CHECKs, which read two
// columns: only the database sees an update's result whole.
var constraintErrors = map[string]error{
	"tasks_recurrence_needs_due": validationError{{[]any{"body", "due_date"}, "A recurring task needs a due date: give it one, or set recurrence to null", "value_error"}},
	"tasks_reminder_offsets_need_due": validationError{{[]any{"body", "reminders"},
		"A reminder's offset needs a due date, and with a date or a floating time a timezone", "value_error"}},
	"tasks_subtask_not_recurring": validationError{{[]any{"body", "recurrence"}, "A subtask cannot repeat: move it to the top level first", "value_error"}},
	"tasks_parent":                treeRefusals["parent"],
}

// staleError says a precondition (If-Match) failed: the task has changed since.
type staleError struct{ Current Task }

func (e *staleError) Error() string { return "task changed since the version given" }

// idempotencyTTL is how long an Idempotency-Key is kept at least.
const idempotencyTTL = 24 * time.Hour

// store runs the service's SQL on a pgx pool.
type store struct {
	pool    *pgxpool.Pool
	timeout time.Duration // bounds every statement, including the wait for a pooled connection
	pooled  atomic.Bool   // DATABASE_URL reaches a transaction-mode pooler, as queryMode's probe found
}

// openStore builds a pool for url without connecting; it dials on first use.
func openStore(url string, timeout time.Duration) (*store, error) {
	s := &store{timeout: timeout}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The parse error may quote the URL, password included: keep only what is safe.
		return nil, errors.New("DATABASE_URL is not a valid PostgreSQL URL or key=value string")
	}
	if !strings.Contains(url, "pool_max_conns") {
		// pgxpool's default (one per core, at least 4) leaves writes queueing for a connection
		// while others wait on a commit's fsync; more let PostgreSQL commit them together (bench/README.md).
		cfg.MaxConns = 16
	}
	if !strings.Contains(url, "default_query_exec_mode") {
		cfg.BeforeConnect = queryMode(timeout, &s.pooled)
	}
	cfg.ConnConfig.ConnectTimeout = timeout
	// pgx cleans up a connection that timed out (a cancel request on a new connection,
	// then a drain of the old one) under a 15 s deadline, holding its pool slot: after
	// a partition every slot would stay taken for 15 s once the database is back
	// (TestFaultBlackhole). The dialer bounds both by the statement timeout: the cancel
	// request (the only dial with a deadline past ConnectTimeout) and the drain (boundedConn).
	dialer := &net.Dialer{Timeout: timeout}
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if d, ok := ctx.Deadline(); ok && time.Until(d) > timeout { // pgx's cancel request
			conn.SetDeadline(time.Now().Add(timeout))
		}
		return boundedConn{conn, timeout}, nil
	}
	if s.pool, err = pgxpool.NewWithConfig(context.Background(), cfg); err != nil {
		return nil, fmt.Errorf("open pool: %w", err)
	}
	return s, nil
}

// boundedConn is a connection on which no deadline lies further ahead than max.
type boundedConn struct {
	net.Conn
	max time.Duration
}

func (c boundedConn) bound(t time.Time) time.Time {
	if limit := time.Now().Add(c.max); !t.IsZero() && t.After(limit) {
		return limit
	}
	return t
}

func (c boundedConn) SetDeadline(t time.Time) error      { return c.Conn.SetDeadline(c.bound(t)) }
func (c boundedConn) SetReadDeadline(t time.Time) error  { return c.Conn.SetReadDeadline(c.bound(t)) }
func (c boundedConn) SetWriteDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(c.bound(t)) }

// ping checks that the database answers.
func (s *store) ping(ctx context.Context) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return storeError(s.pool.Ping(ctx))
}

// storeError turns a driver error into a store error: no row is errNotFound; a value
// the schema rejects (SQLSTATE 23514, check violation, or class 22, data exception)
// is errRejected; errUnavailable (503, retry) needs isUnavailable's evidence. Anything
// else is a bug and passes through, for a 500 with its cause on the log line.
func storeError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pgx.ErrNoRows):
		return errNotFound
	case isUnavailable(err):
		return fmt.Errorf("%w: %w", errUnavailable, err)
	}
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && constraintErrors[pgErr.ConstraintName] != nil {
		return constraintErrors[pgErr.ConstraintName]
	} else if ok && (pgErr.Code == "23514" || strings.HasPrefix(pgErr.Code, "22")) {
		return fmt.Errorf("%w: %s", errRejected, pgErr.Code)
	}
	return err
}

// isUnavailable reports whether err says the database could not be reached or serve:
// pgx could not connect; a deadline passed, or the statement's context ended (at
// shutdown); the network failed (a reset, a closed connection, EOF mid-answer); or an
// SQLSTATE of class 08 (connection exception), 53 (insufficient resources: connections,
// memory, disk) or 57 (operator intervention: statement_timeout, admin shutdown).
func isUnavailable(err error) bool {
	if _, ok := errors.AsType[*pgconn.ConnectError](err); ok {
		return true // whatever the reason, even an SQLSTATE such as 3D000 or 28P01: no connection, no service
	}
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		return slices.Contains([]string{"08", "53", "57"}, pgErr.Code[:min(2, len(pgErr.Code))]) // the classes above
	}
	// A net.Error includes context.DeadlineExceeded; SafeToRetry: pgx sent nothing (no connection, or a closed one).
	_, isNet := errors.AsType[net.Error](err)
	return isNet || pgconn.Timeout(err) || pgconn.SafeToRetry(err) || errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, context.Canceled) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// bound is ctx for one statement, or one transaction: at most s.timeout, and not
// ended when the client hangs up, since pgx closes a connection whose statement is
// cancelled midway (a new connection for the pool, a new TLS session for Neon).
func (s *store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(s.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) { // a statement inside a bound transaction
		deadline = d
	}
	return context.WithDeadline(context.WithoutCancel(ctx), deadline)
}

// one runs a statement on q that returns at most one task.
func (s *store) one(ctx context.Context, q querier, sql string, args ...any) (Task, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, _ := q.Query(ctx, sql, args...) // a failed query's error comes back from CollectOneRow
	t, err := pgx.CollectOneRow(rows, scanTask)
	return t, storeError(err)
}

// inTransaction runs fn in one transaction on q (a savepoint if q is one), bound as one
// statement: its writes commit together or not at all.
func (s *store) inTransaction(ctx context.Context, q querier, fn func(ctx context.Context, tx querier) error) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return storeError(pgx.BeginFunc(ctx, q, func(tx pgx.Tx) error { return fn(ctx, tx) }))
}

// querier runs a write's statements: the pool, or the transaction of a write under an Idempotency-Key (store.writeOnce).
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	Begin(ctx context.Context) (pgx.Tx, error) // on a transaction, a savepoint
}
