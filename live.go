// live.go holds what wakes the event streams: their count, and one watcher per process that learns of each write on any replica by LISTEN/NOTIFY on a session of its own, or by polling when it cannot listen.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// notifyChannel is the channel on which schema.sql's trigger notifies, at
// each write's commit, the user's new version and id: "VERSION USER_ID".
const notifyChannel = "task_changes"

// Watcher timings and bounds.
const (
	watchLinger       = time.Minute      // how long the watcher outlives the last stream
	notifyCheckWait   = 5 * time.Second  // how long a session's own NOTIFY may take to come back
	listenPing        = 30 * time.Second // how often a session checks itself (a lost one says nothing)
	listenRedial      = time.Second      // after a failed session, doubling up to listenRedialMax
	listenRedialMax   = 30 * time.Second // the longest wait between two dials
	listenSteady      = time.Minute      // a session that lasted this long starts the doubling over
	maxStreamsPerUser = 10               // a laptop and a phone, with tabs
)

var (
	errStreamLimit  = &statusError{http.StatusTooManyRequests, "Too many open event streams for this user (at most " + strconv.Itoa(maxStreamsPerUser) + "): close one"}
	errStreamsFull  = &statusError{http.StatusServiceUnavailable, "Too many open event streams on this server: try again shortly"}
	errShuttingDown = &statusError{http.StatusServiceUnavailable, "Shutting down: reconnect"}
	errNotifyLost   = errors.New("did not come back to the listening session within " + notifyCheckWait.String())
)

// streams counts the open event streams, per user and in all, and wakes those of a
// user whose feed moved; a watcher learns of the writes while any is open, and for
// linger after. close (http.Server.RegisterOnShutdown) ends them all: the drain
// does not wait on them, and their clients reconnect elsewhere with Last-Event-ID.
type streams struct {
	db            *store
	log           *slog.Logger
	listenTo      atomic.Pointer[pgx.ConnConfig] // the session the watcher listens on (checkNotify); nil: it polls
	notifyLost    error                          // errNotifyLost, with what it means for listen's settings
	mu            sync.Mutex
	users         map[string]*watchedUser // the users with open streams
	total, maxAll int
	stopWatch     context.CancelFunc // ends the watcher
	idle          *time.Timer        // calls stopWatch linger after the last stream; open stops it
	shutdown      context.Context    // done once close is called
	close         context.CancelFunc
	// streamPoll, streamHeartbeat, watchLinger, SYNC_RETENTION and streamWriteWait; tests shorten some
	poll, heartbeat, linger, retention, writeWait time.Duration
}

// watchedUser is a user with open streams: how many, the channel that closes when their
// version moves (a new one each time), and the last version seen (-1: none yet).
type watchedUser struct {
	streams int
	changed chan struct{}
	version int64
}

// newStreams bounds the server's open streams to maxAll (MAX_STREAMS); its
// watcher polls until checkNotify finds a session to listen on.
func newStreams(db *store, log *slog.Logger, maxAll int, retention time.Duration) *streams {
	s := &streams{db: db, log: log, users: map[string]*watchedUser{}, maxAll: maxAll, retention: retention,
		poll: streamPoll, heartbeat: streamHeartbeat, linger: watchLinger, writeWait: streamWriteWait}
	s.shutdown, s.close = context.WithCancel(context.Background())
	return s
}

// open counts a new stream for the user, unless the user or the server holds
// as many as allowed (errStreamLimit, errStreamsFull) or it is shutting down.
func (s *streams) open(userID string) *statusError {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch u := s.users[userID]; {
	case s.shutdown.Err() != nil:
		return errShuttingDown
	case u != nil && u.streams >= maxStreamsPerUser:
		return errStreamLimit
	case s.total >= s.maxAll:
		return errStreamsFull
	case u == nil:
		s.users[userID] = &watchedUser{streams: 1, changed: make(chan struct{}), version: -1}
	default:
		u.streams++
	}
	if s.total++; s.total == 1 && (s.idle == nil || !s.idle.Stop()) { // no watcher lingers: none yet, or idle ended it
		var ctx context.Context
		ctx, s.stopWatch = context.WithCancel(context.Background())
		go s.watch(ctx)
	}
	return nil
}

// release uncounts a stream open counted.
func (s *streams) release(userID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[userID]
	if u.streams--; u.streams == 0 {
		delete(s.users, userID)
	}
	if s.total--; s.total == 0 {
		s.idle = time.AfterFunc(s.linger, s.stopWatch)
	}
}

// changedFor returns a channel that closes when the feed of the user, who has a stream open, next moves.
func (s *streams) changedFor(userID string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users[userID].changed
}

// wake wakes the streams of the user, if any, unless the watcher has seen
// version for them already (-1: whatever it is); the caller holds mu.
func (s *streams) wake(userID string, version int64) {
	if u := s.users[userID]; u != nil && (version < 0 || u.version != version) {
		u.version = max(version, u.version)
		close(u.changed)
		u.changed = make(chan struct{})
	}
}

// watch wakes the streams of each user whose version moved, until ctx ends: from a
// trusted listening session's notifications (listenOn), or else from the versions
// of the users with open streams, read every poll (a needless wake costs a stream
// a row; a failed read is let go, as streams also read the feed by themselves).
func (s *streams) watch(ctx context.Context) {
	var listening atomic.Bool
	go s.listenOn(ctx, &listening)
	tick := time.NewTicker(s.poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if listening.Load() {
			continue
		}
		s.mu.Lock()
		users := slices.Collect(maps.Keys(s.users))
		s.mu.Unlock()
		if len(users) == 0 { // lingering after the last stream
			continue
		}
		if versions, err := s.db.versions(ctx, users); err == nil {
			s.mu.Lock()
			for _, u := range users {
				s.wake(u, versions[u])
			}
			s.mu.Unlock()
		}
	}
}

// listenOn keeps a session listening while ctx lasts and the watcher is to listen: it dials
// again after a failure, stops for good on a verdict, logs each switch to or from polling.
func (s *streams) listenOn(ctx context.Context, listening *atomic.Bool) {
	wait, polling := listenRedial, false
	for cfg := s.listenTo.Load(); cfg != nil; cfg = s.listenTo.Load() {
		var since time.Time // when the session was trusted
		err := s.session(ctx, cfg, func() {
			since = time.Now()
			listening.Store(true)
			s.mu.Lock()
			for id := range s.users { // a write that committed while none listened is read now
				s.wake(id, -1)
			}
			s.mu.Unlock()
			if polling {
				s.log.Info("live updates listen again")
			}
		})
		listening.Store(false)
		switch {
		case ctx.Err() != nil:
			return
		case since.IsZero() && verdict(err):
			s.pollForGood(s.log, err)
			return
		case !since.IsZero():
			s.log.Warn("live updates lost their listening session, and poll until it is back", "err", err.Error())
		case !polling:
			s.log.Warn("live updates cannot listen, and poll until they can", "err", err.Error())
		}
		if polling = true; !since.IsZero() && time.Since(since) > listenSteady {
			wait = listenRedial
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, listenRedialMax)
	}
}

// session opens a session of cfg's that LISTENs, and checks that it hears a NOTIFY
// sent through the pool, as a write's is (one on another database, or served by a
// transaction-mode pooler, never does); then it calls trusted and wakes the streams
// each notification names, checking itself every listenPing, until ctx ends or it fails.
func (s *streams) session(ctx context.Context, cfg *pgx.ConnConfig, trusted func()) error {
	dialCtx, cancel := context.WithTimeout(ctx, 2*s.db.timeout) // connect, then LISTEN
	defer cancel()
	conn, err := pgx.ConnectConfig(dialCtx, cfg)
	if err != nil {
		return err
	}
	defer func() { // waiting at most a second for the server to hear of it
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		unlisten(ctx, conn, trusted != nil)
		cancel()
	}()
	if err := listen(dialCtx, conn); err != nil {
		return err
	}
	token, deadline := "", time.Now() // no check in flight, and one due now
	for {
		waitCtx, cancel := context.WithDeadline(ctx, deadline)
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case err == nil && token != "" && n.Payload == token:
			if trusted != nil {
				keepCtx, cancel := context.WithTimeout(ctx, s.db.timeout)
				err := keepListening(keepCtx, conn)
				if cancel(); err != nil {
					return err
				}
				trusted()
				trusted = nil
			}
			token, deadline = "", time.Now().Add(listenPing)
		case err == nil: // a write's wakes its user's streams; others (anyone's NOTIFY) are ignored
			version, userID, _ := strings.Cut(n.Payload, " ")
			if v, err := strconv.ParseInt(version, 10, 64); err == nil && v >= 0 {
				s.mu.Lock()
				s.wake(userID, v)
				s.mu.Unlock()
			}
		case ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded):
			return err
		case token != "":
			return s.notifyLost
		default: // the check is due
			token, deadline = "check "+rand.Text(), time.Now().Add(notifyCheckWait)
			if err := s.db.notify(ctx, token); err != nil {
				return err
			}
		}
	}
}

// verdict reports whether err, from a session never trusted, says that no
// session of its settings will do: it did not hear its own NOTIFY, or the
// password or role was refused (SQLSTATE class 28), or there is no such database (3D).
func verdict(err error) bool {
	pgErr, ok := errors.AsType[*pgconn.PgError](err)
	return errors.Is(err, errNotifyLost) || ok && (strings.HasPrefix(pgErr.Code, "28") || strings.HasPrefix(pgErr.Code, "3D"))
}

// pollForGood makes the watcher poll from now on, and logs why.
func (s *streams) pollForGood(log *slog.Logger, err error) {
	s.listenTo.Store(nil)
	log.Warn("live updates poll the database every " + s.poll.String() + " instead of listening: " + err.Error())
}

// checkNotify decides, at start, how the watcher learns of writes: it opens a
// session as the watcher would, on DATABASE_DIRECT_URL (directURL) if set, else with
// DATABASE_URL's settings. Trusted, the watcher listens; on a verdict, it polls for
// good; while the database cannot be reached, it polls until it can listen. The log
// says which, once. Only a directURL that is not a URL at all is an error.
func (s *streams) checkNotify(ctx context.Context, directURL string, log *slog.Logger) error {
	cfg, why := s.db.pool.Config().ConnConfig.Copy(), "DATABASE_URL reaches a transaction-mode pooler (PgBouncer; Neon's -pooler endpoint), where a LISTEN does not stay on one session: set DATABASE_DIRECT_URL to the database itself (Neon: the connection string without -pooler)"
	if directURL != "" {
		var err error
		if cfg, err = pgx.ParseConfig(directURL); err != nil { // its error may quote the URL, password included
			return errors.New("DATABASE_DIRECT_URL is not a valid PostgreSQL URL or key=value string")
		}
		cfg.ConnectTimeout, why = s.db.timeout, "DATABASE_DIRECT_URL reaches a transaction-mode pooler, or another database than DATABASE_URL: set it to the database itself (Neon: the connection string without -pooler)"
	}
	s.notifyLost = fmt.Errorf("a NOTIFY sent through DATABASE_URL %w: %s", errNotifyLost, why)
	if directURL == "" && s.db.pooled.Load() { // known from the query mode's probe: no need to wait for the NOTIFY
		s.pollForGood(log, errors.New(why))
		return nil
	}
	s.listenTo.Store(cfg)
	checkCtx, trusted := context.WithCancel(ctx) // the check ends once the session is trusted
	defer trusted()
	switch err := s.session(checkCtx, cfg, trusted); {
	case checkCtx.Err() != nil && ctx.Err() == nil:
		log.Info("live updates listen for NOTIFY", "channel", notifyChannel)
	case verdict(err):
		s.pollForGood(log, err)
	default:
		log.Warn("live updates poll the database every "+s.poll.String()+" until they can listen", "err", err.Error())
	}
	return nil
}
