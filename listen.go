// listen.go holds the session live updates LISTEN on: the start-up check that decides whether to listen at all, and how a session is opened and trusted.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// notifyChannel is the channel on which migration 11's trigger notifies, at
// each write's commit, the user's new version and id: "VERSION USER_ID".
const notifyChannel = "task_changes"

// Session timings: how long a session's own NOTIFY may take to come back; how
// often a session that heard nothing sends itself one (a session the network
// lost, or one left on a demoted primary, says nothing); how soon a dial that
// failed is tried again (a second, twice as long after each failure in a row,
// at most listenRedialMax); and how long a session must last for a loss to
// count as new rather than part of a run of failures.
const (
	notifyCheckWait = 5 * time.Second
	listenPing      = 30 * time.Second
	listenRedial    = time.Second
	listenRedialMax = 30 * time.Second
	listenSteady    = time.Minute
)

// listenTo is where the watcher listens: a session of cfg's, named by the setting it came from.
type listenTo struct {
	cfg  *pgx.ConnConfig
	name string // DATABASE_DIRECT_URL or DATABASE_URL
}

// Verdicts on a session, after which live updates poll for good: a
// transaction-mode pooler serves it, or it did not hear its own NOTIFY.
var (
	errPooled     = errors.New("reaches a transaction-mode pooler, where a LISTEN does not stay on one session: set DATABASE_DIRECT_URL to the database itself (Neon: the connection string without -pooler)")
	errNotifyLost = errors.New("did not come back to the listening session within " + notifyCheckWait.String() + " (does DATABASE_DIRECT_URL name the same database as DATABASE_URL?)")
)

// SQLSTATE classes that a retry cannot mend: the password or the role is
// refused (28), or the database does not exist (3D).
const (
	sqlstateClassInvalidAuthorization = "28"
	sqlstateClassInvalidCatalogName   = "3D"
)

// verdict reports whether err says the session will never do (see errPooled).
func verdict(err error) bool {
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		class := pgErr.Code[:min(2, len(pgErr.Code))]
		return class == sqlstateClassInvalidAuthorization || class == sqlstateClassInvalidCatalogName
	}
	return errors.Is(err, errPooled) || errors.Is(err, errNotifyLost)
}

// checkNotify decides, at start, how the watcher learns of writes: it opens
// a session as the watcher would (openListener) on DATABASE_DIRECT_URL
// (directURL) if set, else on DATABASE_URL. On success the watcher listens;
// on a verdict it polls for good, and the log says why, once; when the
// database cannot be reached now, the log says so and the watcher polls until
// it can listen. Only a directURL that is not a URL at all is an error.
func (s *streams) checkNotify(ctx context.Context, directURL string, log *slog.Logger) error {
	to := &listenTo{s.db.pool.Config().ConnConfig.Copy(), "DATABASE_URL"}
	if directURL != "" {
		cfg, err := pgx.ParseConfig(directURL)
		if err != nil { // its error may quote the URL, password included
			return errors.New("DATABASE_DIRECT_URL is not a valid PostgreSQL URL or key=value string")
		}
		cfg.ConnectTimeout = s.db.timeout
		to = &listenTo{cfg, "DATABASE_DIRECT_URL"}
	}
	s.unprobed.Store(true)
	conn, err := s.openListener(ctx, to)
	switch {
	case err == nil:
		closeConn(conn)
		s.listen.Store(to)
		log.Info("live updates listen for NOTIFY", "channel", notifyChannel)
	case verdict(err):
		log.Warn("live updates poll the database every " + s.poll.String() + " instead of listening: " + err.Error())
	default:
		s.listen.Store(to)
		log.Warn("live updates poll the database every "+s.poll.String()+" until they can listen", "err", err.Error())
	}
	return nil
}

// openListener opens a session of to's and LISTENs on it; then it sends a
// NOTIFY through the pool, as a write would, and waits for it on the session
// (errNotifyLost if it does not come), so that a session on another database
// is never trusted. Until one probe has found that no transaction-mode
// pooler serves to (serversShared), it probes first (errPooled).
func (s *streams) openListener(ctx context.Context, to *listenTo) (*pgx.Conn, error) {
	if s.unprobed.Load() {
		probeCtx, cancel := context.WithTimeout(ctx, notifyCheckWait)
		pooled, err := serversShared(probeCtx, to.cfg)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("cannot open a session of %s: %w", to.name, err)
		}
		if pooled {
			return nil, fmt.Errorf("%s %w", to.name, errPooled)
		}
		s.unprobed.Store(false)
	}
	cfg := to.cfg.Copy()
	cfg.RuntimeParams["application_name"] = "tasks listener"    // as pg_stat_activity shows it
	cfg.RuntimeParams["idle_session_timeout"] = "0"             // idle is what it is for
	dialCtx, cancel := context.WithTimeout(ctx, 2*s.db.timeout) // connect, then LISTEN
	defer cancel()
	conn, err := pgx.ConnectConfig(dialCtx, cfg)
	if err != nil {
		return nil, err
	}
	if err := listen(dialCtx, conn); err != nil {
		closeConn(conn)
		return nil, err
	}
	if err := s.hearOwnNotify(ctx, conn); err != nil {
		closeConn(conn)
		return nil, err
	}
	return conn, nil
}

// hearOwnNotify sends a NOTIFY through the pool and waits for it on conn,
// passing on the writes' notifications that come meanwhile. Only a wait that
// ran out while ctx did not is errNotifyLost.
func (s *streams) hearOwnNotify(ctx context.Context, conn *pgx.Conn) error {
	token := "check " + rand.Text()
	if err := s.db.notify(ctx, token); err != nil {
		return err
	}
	waitCtx, cancel := context.WithTimeout(ctx, notifyCheckWait)
	defer cancel()
	for {
		n, err := conn.WaitForNotification(waitCtx)
		if err != nil {
			if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("a NOTIFY sent through DATABASE_URL %w", errNotifyLost)
			}
			return err
		}
		if n.Payload == token {
			return nil
		}
		s.notified(n.Payload)
	}
}

// hear waits up to listenPing for a notification and wakes the streams it
// names; after listenPing of silence, the session must hear its own NOTIFY.
// An error means the session is lost.
func (s *streams) hear(ctx context.Context, conn *pgx.Conn) error {
	waitCtx, cancel := context.WithTimeout(ctx, listenPing)
	n, err := conn.WaitForNotification(waitCtx)
	cancel()
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return s.hearOwnNotify(ctx, conn)
	}
	if err != nil {
		return err
	}
	s.notified(n.Payload)
	return nil
}

// notified wakes the streams of the user a write's notification names;
// others (a session's own check, or anyone's NOTIFY) are ignored.
func (s *streams) notified(payload string) {
	version, userID, _ := strings.Cut(payload, " ")
	if v, err := strconv.ParseInt(version, 10, 64); err == nil {
		s.mu.Lock()
		s.wake(userID, v, false)
		s.mu.Unlock()
	}
}

// closeConn closes a session, waiting at most a second for the server to hear of it.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn.Close(ctx)
}
