// live.go holds what wakes the event streams: their count, and one watcher per process that learns of each write on any replica by LISTEN/NOTIFY, or by polling when it cannot listen.
package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// notifyChannel is the channel on which migration 11's trigger notifies, at
// each write's commit, the user's new version and id: "VERSION USER_ID".
const notifyChannel = "task_changes"

// Watcher timings: how long opening a listening session may take, the round
// trip of its own NOTIFY included; how often a session that heard nothing is
// pinged (a session the network lost says nothing); and how soon a dial that
// failed is tried again: a second, twice as long after each failure in a row,
// at most listenRedialMax.
const (
	notifyCheckWait = 5 * time.Second
	listenPing      = 30 * time.Second
	listenRedial    = time.Second
	listenRedialMax = 30 * time.Second
)

// streams counts the open event streams, per user and in all, wakes those of
// a user whose feed moved, and ends every one of them at once when the server
// shuts down. While any stream is open, one watcher per process learns of the
// writes: from the NOTIFY each write sends at commit, on a session of its own
// (listen; see checkNotify), or, without one, by reading every poll the
// versions of all the users with open streams in one statement.
type streams struct {
	db              *store
	log             *slog.Logger
	listen          *pgx.ConnConfig // the session to LISTEN on; nil: the watcher polls
	unprobed        bool            // listen's server could not be probed for a pooler at start
	mu              sync.Mutex
	perUser         map[string]int
	total, maxAll   int
	changed         map[string]chan struct{} // per watched user: closed when their version moves
	versions        map[string]int64         // per watched user: the version the watcher saw last
	stopWatch       context.CancelFunc       // ends the watcher; nil while no stream is open
	done            chan struct{}            // closed by close
	closeOnce       sync.Once
	poll, heartbeat time.Duration // streamPoll and streamHeartbeat; shorter in tests
	retention       time.Duration // SYNC_RETENTION
}

// maxStreamsPerUser bounds one user's open streams: a laptop and a phone, with tabs.
const maxStreamsPerUser = 10

var (
	errStreamLimit  = &statusError{http.StatusTooManyRequests, "Too many open event streams for this user (at most " + strconv.Itoa(maxStreamsPerUser) + "): close one"}
	errStreamsFull  = &statusError{http.StatusServiceUnavailable, "Too many open event streams on this server: try again shortly"}
	errShuttingDown = &statusError{http.StatusServiceUnavailable, "Shutting down: reconnect"}
)

// newStreams bounds the server's open streams to maxAll (MAX_STREAMS); a zero
// poll or heartbeat is streamPoll or streamHeartbeat. Its watcher polls until
// checkNotify finds a session to listen on.
func newStreams(db *store, log *slog.Logger, maxAll int, retention, poll, heartbeat time.Duration) *streams {
	return &streams{db: db, log: log, perUser: map[string]int{}, maxAll: maxAll, done: make(chan struct{}),
		changed: map[string]chan struct{}{}, versions: map[string]int64{},
		poll: cmp.Or(poll, streamPoll), heartbeat: cmp.Or(heartbeat, streamHeartbeat), retention: retention}
}

// checkNotify decides, at start, how the watcher learns of writes. It listens
// on a session of DATABASE_DIRECT_URL's (directURL) if set, else of
// DATABASE_URL's, unless that session is a transaction-mode pooler's, which
// does not keep a LISTEN (serversShared); and only if a NOTIFY sent through
// the pool, as a write sends it, comes back to it within notifyCheckWait: a
// direct URL to another database is caught here. On such a verdict the
// watcher polls for good, and the log says why, once. When the database
// cannot be reached now, the log says so, and the watcher polls until it can
// open the session (watch).
// Only a DATABASE_DIRECT_URL that is not a URL at all is an error, for run to stop on.
func (s *streams) checkNotify(ctx context.Context, directURL string, log *slog.Logger) error {
	fallback := "live updates poll the database every " + s.poll.String() + " instead of listening: "
	cfg, name := s.db.pool.Config().ConnConfig.Copy(), "DATABASE_URL"
	if directURL != "" {
		c, err := pgx.ParseConfig(directURL)
		if err != nil { // its error may quote the URL, password included
			return errors.New("DATABASE_DIRECT_URL is not a valid PostgreSQL URL or key=value string")
		}
		c.ConnectTimeout = s.db.timeout
		cfg, name = c, "DATABASE_DIRECT_URL"
	}
	notYet := func(what string, err error) {
		s.listen = cfg
		log.Warn("live updates poll the database every "+s.poll.String()+" until they can listen: "+what, "err", err.Error())
	}
	probeCtx, cancel := context.WithTimeout(ctx, notifyCheckWait)
	pooled, err := serversShared(probeCtx, cfg)
	cancel()
	if err != nil {
		s.unprobed = true // the watcher probes before it listens
		notYet("cannot open a session of "+name, err)
		return nil
	}
	if pooled {
		log.Warn(fallback + name + " reaches a transaction-mode pooler, where a LISTEN does not stay on one session: set DATABASE_DIRECT_URL to the database itself (Neon: the connection string without -pooler)")
		return nil
	}
	conn, err := s.openListener(ctx, cfg)
	if errors.Is(err, errNotifyLost) {
		log.Warn(fallback + "a NOTIFY sent through DATABASE_URL did not come back to the listening session within " +
			notifyCheckWait.String() + " (does DATABASE_DIRECT_URL name the same database?)")
		return nil
	}
	if err != nil {
		notYet("cannot open a listening session", err)
		return nil
	}
	conn.Close(context.Background())
	s.listen = cfg
	log.Info("live updates listen for NOTIFY", "channel", notifyChannel)
	return nil
}

// Why a listening session is not opened: it did not hear its own NOTIFY, or a
// transaction-mode pooler serves it.
var (
	errNotifyLost = errors.New("a NOTIFY sent through the pool did not come back to the listening session")
	errPooled     = errors.New("a transaction-mode pooler serves the listening session: set DATABASE_DIRECT_URL to the database itself")
)

// openListener opens a session of cfg's and LISTENs on it; then it sends a
// NOTIFY through the pool, as a write would, and waits for it on the session
// (errNotifyLost if it does not come), so that a session on another database
// is never trusted. All within notifyCheckWait.
func (s *streams) openListener(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, notifyCheckWait)
	defer cancel()
	if s.unprobed {
		if pooled, err := serversShared(ctx, cfg); err != nil || pooled {
			return nil, cmp.Or(err, errPooled)
		}
	}
	cfg = cfg.Copy()
	cfg.RuntimeParams["application_name"] = "tasks listener" // as pg_stat_activity shows it
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err = s.hearOwnNotify(ctx, conn); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

// hearOwnNotify LISTENs on conn, sends a NOTIFY through the pool and waits for it on conn.
func (s *streams) hearOwnNotify(ctx context.Context, conn *pgx.Conn) error {
	if err := listen(ctx, conn); err != nil {
		return err
	}
	token := "check " + rand.Text()
	if err := s.db.notify(ctx, token); err != nil {
		return err
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			return errNotifyLost
		}
		if err != nil || n.Payload == token {
			return err
		}
	}
}

// open counts a new stream for the user, unless the user or the server holds
// as many as allowed (errStreamLimit, errStreamsFull) or it is shutting down.
func (s *streams) open(userID string) *statusError {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed():
		return errShuttingDown
	case s.perUser[userID] >= maxStreamsPerUser:
		return errStreamLimit
	case s.total >= s.maxAll:
		return errStreamsFull
	}
	if s.total == 0 {
		var ctx context.Context
		ctx, s.stopWatch = context.WithCancel(context.Background())
		go s.watch(ctx)
	}
	s.perUser[userID]++
	s.total++
	return nil
}

// release uncounts a stream open counted.
func (s *streams) release(userID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perUser[userID]--; s.perUser[userID] == 0 {
		delete(s.perUser, userID)
		delete(s.changed, userID)
		delete(s.versions, userID)
	}
	if s.total--; s.total == 0 {
		s.stopWatch()
		s.stopWatch = nil
	}
}

// changedFor returns a channel that closes when the user's feed next moves.
func (s *streams) changedFor(userID string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.changed[userID]
	if ch == nil {
		ch = make(chan struct{})
		s.changed[userID] = ch
	}
	return ch
}

// wake wakes the user's streams if the version is one the watcher has not
// seen for them (all: every user's, whatever their version); the caller holds mu.
func (s *streams) wake(userID string, version int64, all bool) {
	if v, seen := s.versions[userID]; (all || !seen || v != version) && s.perUser[userID] > 0 {
		s.versions[userID] = version
		if ch := s.changed[userID]; ch != nil {
			close(ch)
			delete(s.changed, userID)
		}
	}
}

// watch wakes the streams of each user whose version moved, until ctx ends.
// While it holds a listening session, a NOTIFY says whose. Without one (none
// configured, or one lost or not yet opened) it reads every poll the versions
// of the users with open streams, while a dial runs beside it (listenRedial
// apart at first, further apart while they fail). On each new session it wakes every stream, once: a
// write that committed while none listened is read then.
func (s *streams) watch(ctx context.Context) {
	type dialed struct {
		conn *pgx.Conn
		err  error
	}
	var conn *pgx.Conn
	var dialing chan dialed // a dial in flight, or nil
	defer func() {
		if dialing != nil { // ctx has ended it, or the timeout will
			if d := <-dialing; d.conn != nil {
				d.conn.Close(context.Background())
			}
		}
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	tick := time.NewTicker(s.poll)
	defer tick.Stop()
	lost, wait := false, listenRedial
	var redial <-chan time.Time // when the next dial may start, after one failed
	for ctx.Err() == nil {
		if conn != nil {
			if err := s.hear(ctx, conn); err != nil && ctx.Err() == nil {
				s.log.Warn("live updates lost their listening session, and poll until it is back", "err", err.Error())
				conn.Close(context.Background())
				conn, lost, redial = nil, true, time.After(listenRedial)
			}
			continue
		}
		if s.listen != nil && dialing == nil && redial == nil {
			dialing = make(chan dialed, 1)
			go func(done chan<- dialed) {
				c, err := s.openListener(ctx, s.listen)
				done <- dialed{c, err}
			}(dialing)
		}
		select {
		case <-ctx.Done():
		case d := <-dialing:
			dialing = nil
			if d.err != nil {
				if !lost && ctx.Err() == nil {
					s.log.Warn("live updates cannot listen, and poll until they can", "err", d.err.Error())
				}
				lost, redial, wait = true, time.After(wait), min(2*wait, listenRedialMax)
				continue
			}
			if lost {
				s.log.Info("live updates listen again")
			}
			conn, lost, wait = d.conn, false, listenRedial
			s.wakeAll()
		case <-redial:
			redial = nil
		case <-tick.C:
			s.pollVersions(ctx)
		}
	}
}

// hear waits up to listenPing for a notification and wakes the streams it
// names; after listenPing of silence it pings the session. An error means the
// session is lost.
func (s *streams) hear(ctx context.Context, conn *pgx.Conn) error {
	waitCtx, cancel := context.WithTimeout(ctx, listenPing)
	n, err := conn.WaitForNotification(waitCtx)
	cancel()
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		pingCtx, cancel := context.WithTimeout(ctx, s.db.timeout)
		defer cancel()
		return conn.Ping(pingCtx)
	}
	if err != nil {
		return err
	}
	version, userID, _ := strings.Cut(n.Payload, " ")
	v, err := strconv.ParseInt(version, 10, 64)
	if err != nil { // not a write's: the start-up check's, or someone else's NOTIFY
		return nil
	}
	s.mu.Lock()
	s.wake(userID, v, false)
	s.mu.Unlock()
	return nil
}

// pollVersions reads the versions of the users with open streams and wakes
// those of each whose version moved (or was first seen: a wake too many costs
// a stream one row).
func (s *streams) pollVersions(ctx context.Context) {
	s.mu.Lock()
	users := slices.Collect(maps.Keys(s.perUser))
	s.mu.Unlock()
	versions, err := s.db.versions(ctx, users)
	if err != nil { // the database is away: the streams read the feed themselves meanwhile
		return
	}
	s.mu.Lock()
	for _, u := range users {
		s.wake(u, versions[u], false)
	}
	s.mu.Unlock()
}

// wakeAll wakes every open stream.
func (s *streams) wakeAll() {
	s.mu.Lock()
	for u := range s.perUser {
		s.wake(u, s.versions[u], true)
	}
	s.mu.Unlock()
}

// close ends every stream, for http.Server.RegisterOnShutdown: the drain does
// not wait on them, and their clients reconnect elsewhere with Last-Event-ID.
func (s *streams) close() { s.closeOnce.Do(func() { close(s.done) }) }

func (s *streams) closed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}
