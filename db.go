// db.go holds the PostgreSQL pool and its dialer, the store errors, and how a driver error becomes one.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SQLSTATEs (PostgreSQL's Appendix A) this store tells apart: codes, and classes (a code's first two characters).
const (
	sqlstateUniqueViolation            = "23505"
	sqlstateCheckViolation             = "23514"
	sqlstateClassDataException         = "22"
	sqlstateClassConnectionException   = "08"
	sqlstateClassInsufficientResources = "53" // insufficient resources: too many connections, out of memory or disk
	sqlstateClassOperatorIntervention  = "57" // query canceled (statement timeout), admin shutdown, cannot connect now
)

// Store errors; handlers map them to statuses in writeError.
var (
	errNotFound    = errors.New("task not found")
	errUnavailable = errors.New("database unavailable")
	errRejected    = errors.New("rejected by a database constraint")
	errTaskLimit   = errors.New("task limit reached")
	errKeyReused   = errors.New("idempotency key reused with a different request")
	errCursorAhead = errors.New("feed cursor past the user's version")
)

// staleError says a precondition (If-Match) failed: the task has changed since.
type staleError struct{ Current Task }

func (e *staleError) Error() string { return "task changed since the version given" }

// idempotencyTTL is how long an Idempotency-Key is kept at least.
const idempotencyTTL = 24 * time.Hour

// store runs the service's SQL on a pgx pool.
type store struct {
	pool    *pgxpool.Pool
	timeout time.Duration // bounds every statement, including the wait for a pooled connection
}

// openStore builds a pool for url without connecting; it dials on first use.
func openStore(url string, timeout time.Duration) (*store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The parse error may quote the URL, password included: keep only what is safe.
		return nil, errors.New("DATABASE_URL is not a valid PostgreSQL URL or key=value string")
	}
	if !strings.Contains(url, "pool_max_conns") {
		// pgxpool's default (4 here, one per core otherwise) leaves writes queueing for
		// a connection while others wait on a commit's fsync; 16 let PostgreSQL commit
		// them together (bench/run.sh -p update measures it; bench/README.md has the figures).
		cfg.MaxConns = 16
	}
	if !strings.Contains(url, "default_query_exec_mode") {
		cfg.BeforeConnect = queryMode(timeout)
	}
	cfg.ConnConfig.ConnectTimeout = timeout
	// pgx cleans up a connection that timed out (a cancel request on a new
	// connection, then draining the old one) under a 15 s deadline, and the
	// pool holds the old connection's slot until then: after a partition every
	// slot would stay taken for 15 s once the database is back
	// (TestFaultBlackhole). The dialer bounds that cleanup by the statement
	// timeout: the cancel request's dial and its wait for an answer, and the
	// drain's deadline (boundedConn). Only the cleanup dials with a deadline
	// further off than the timeout: a connect's own deadline is ConnectTimeout.
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
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("open pool: %w", err)
	}
	return &store{pool: pool, timeout: timeout}, nil
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

// storeError turns a driver error into a store error: no row is errNotFound; a
// value the schema rejects (check violation, data exception) is errRejected;
// errUnavailable (503, retry) needs isUnavailable's evidence. Anything else is a
// bug and passes through, for a 500 with its cause on the log line.
func storeError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return errNotFound
	}
	if isUnavailable(err) {
		return fmt.Errorf("%w: %w", errUnavailable, err)
	}
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok &&
		(pgErr.Code == sqlstateCheckViolation || strings.HasPrefix(pgErr.Code, sqlstateClassDataException)) {
		return fmt.Errorf("%w: %s", errRejected, pgErr.Code)
	}
	return err
}

// isUnavailable reports whether err says the database could not be reached or
// serve: pgx could not connect; a deadline passed, or the request that waited
// ended; the network failed (a reset, a closed connection, EOF mid-answer); or
// an SQLSTATE of class 08 (connection exception), 53 (insufficient resources)
// or 57 (operator intervention, statement_timeout's query_canceled included).
func isUnavailable(err error) bool {
	if _, ok := errors.AsType[*pgconn.ConnectError](err); ok {
		return true // whatever the reason, even an SQLSTATE such as 3D000 or 28P01: no connection, no service
	}
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		class := pgErr.Code[:min(2, len(pgErr.Code))]
		return class == sqlstateClassConnectionException || class == sqlstateClassInsufficientResources ||
			class == sqlstateClassOperatorIntervention
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	// SafeToRetry: pgx failed before it sent anything (no connection, or one it had closed).
	return pgconn.Timeout(err) || pgconn.SafeToRetry(err) || errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// querier runs a write's statements: the pool, or the transaction of a write under an Idempotency-Key (store.writeOnce).
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}
