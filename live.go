// live.go holds what wakes the event streams: their count, and one watcher per process that learns of each write on any replica by LISTEN/NOTIFY, or by polling when it cannot listen.
package main

import (
	"cmp"
	"context"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// streams counts the open event streams, per user and in all, wakes those of
// a user whose feed moved, and ends every one of them at once when the server
// shuts down. While any stream is open, one watcher per process learns of the
// writes: from the NOTIFY each write sends at commit, on a session of its own
// (listen.go), or, without one, by reading every poll the versions of all the
// users with open streams in one statement. It outlives the last stream by
// linger, so that a stream reopened at once finds it listening.
type streams struct {
	db              *store
	log             *slog.Logger
	listen          atomic.Pointer[listenTo] // where to LISTEN (checkNotify); nil: the watcher polls
	unprobed        atomic.Bool              // listen's server not yet probed for a pooler
	mu              sync.Mutex
	users           map[string]*watchedUser // the users with open streams
	total, maxAll   int
	stopWatch       context.CancelFunc // ends the watcher; nil while none runs
	idle            *time.Timer        // ends the watcher linger after the last stream
	done            chan struct{}      // closed by close
	closeOnce       sync.Once
	poll, heartbeat time.Duration // streamPoll and streamHeartbeat; shorter in tests
	linger          time.Duration // watchLinger; shorter in tests
	retention       time.Duration // SYNC_RETENTION
}

// watchedUser is a user with open streams, as the watcher keeps them.
type watchedUser struct {
	streams int
	changed chan struct{} // closed when the user's version moves; nil until a stream waits on it
	version int64         // the version the watcher saw last
	seen    bool          // whether it has seen one
}

// watchLinger is how long the watcher, and its session, outlive the last stream.
const watchLinger = time.Minute

// maxStreamsPerUser bounds one user's open streams: a laptop and a phone, with tabs.
const maxStreamsPerUser = 10

var (
	errStreamLimit  = &statusError{http.StatusTooManyRequests, "Too many open event streams for this user (at most " + strconv.Itoa(maxStreamsPerUser) + "): close one"}
	errStreamsFull  = &statusError{http.StatusServiceUnavailable, "Too many open event streams on this server: try again shortly"}
	errShuttingDown = &statusError{http.StatusServiceUnavailable, "Shutting down: reconnect"}
)

// newStreams bounds the server's open streams to maxAll (MAX_STREAMS); a zero
// poll, heartbeat or linger is streamPoll, streamHeartbeat or watchLinger. Its
// watcher polls until checkNotify finds a session to listen on.
func newStreams(db *store, log *slog.Logger, maxAll int, retention, poll, heartbeat, linger time.Duration) *streams {
	return &streams{db: db, log: log, users: map[string]*watchedUser{}, maxAll: maxAll, done: make(chan struct{}),
		poll: cmp.Or(poll, streamPoll), heartbeat: cmp.Or(heartbeat, streamHeartbeat), linger: cmp.Or(linger, watchLinger), retention: retention}
}

// open counts a new stream for the user, unless the user or the server holds
// as many as allowed (errStreamLimit, errStreamsFull) or it is shutting down.
func (s *streams) open(userID string) *statusError {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed():
		return errShuttingDown
	case s.users[userID] != nil && s.users[userID].streams >= maxStreamsPerUser:
		return errStreamLimit
	case s.total >= s.maxAll:
		return errStreamsFull
	}
	if s.idle != nil {
		s.idle.Stop()
		s.idle = nil
	}
	if s.stopWatch == nil {
		var ctx context.Context
		ctx, s.stopWatch = context.WithCancel(context.Background())
		go s.watch(ctx)
	}
	u := s.users[userID]
	if u == nil {
		u = &watchedUser{}
		s.users[userID] = u
	}
	u.streams++
	s.total++
	return nil
}

// release uncounts a stream open counted.
func (s *streams) release(userID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.users[userID]; u.streams == 1 {
		delete(s.users, userID)
	} else {
		u.streams--
	}
	if s.total--; s.total == 0 {
		s.idle = time.AfterFunc(s.linger, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.total == 0 {
				s.stopWatcher()
			}
		})
	}
}

// stopWatcher ends the watcher, if one runs; the caller holds mu.
func (s *streams) stopWatcher() {
	if s.stopWatch != nil {
		s.stopWatch()
		s.stopWatch = nil
	}
}

// changedFor returns a channel that closes when the feed of the user, who has a stream open, next moves.
func (s *streams) changedFor(userID string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[userID]
	if u.changed == nil {
		u.changed = make(chan struct{})
	}
	return u.changed
}

// wake wakes the user's streams if the version is one the watcher has not
// seen for them (all: every user's, whatever their version); the caller holds mu.
func (s *streams) wake(userID string, version int64, all bool) {
	u := s.users[userID]
	if u == nil || !all && u.seen && u.version == version {
		return
	}
	u.version, u.seen = version, true
	if u.changed != nil {
		close(u.changed)
		u.changed = nil
	}
}

// watch wakes the streams of each user whose version moved, until ctx ends.
// While it holds a listening session, a NOTIFY says whose. Without one (none
// configured, or one lost or not yet opened) it reads every poll the versions
// of the users with open streams, while a dial runs beside it (listenRedial
// apart at first, further apart while they fail). On each new session it
// wakes every stream, once: a write that committed while none listened is
// read then. A verdict on a session (listen.go) ends the dials for good.
func (s *streams) watch(ctx context.Context) {
	type dialed struct {
		conn *pgx.Conn
		err  error
	}
	var conn *pgx.Conn
	var dialing chan dialed // a dial in flight, or nil
	defer func() {
		if dialing != nil { // ctx has ended it, or its timeouts will
			if d := <-dialing; d.conn != nil {
				closeConn(d.conn)
			}
		}
		if conn != nil {
			closeConn(conn)
		}
	}()
	tick := time.NewTicker(s.poll)
	defer tick.Stop()
	lost, wait := false, listenRedial
	var since, warned time.Time // when the session was opened; when a loss was last logged
	var redial <-chan time.Time // when the next dial may start, after one failed
	for ctx.Err() == nil {
		if conn != nil {
			if err := s.hear(ctx, conn); err != nil && ctx.Err() == nil {
				if time.Since(since) > listenSteady { // not one of a run of failures
					wait = listenRedial
				}
				if time.Since(warned) > listenSteady {
					s.log.Warn("live updates lost their listening session, and poll until it is back", "err", err.Error())
					warned = time.Now()
				}
				closeConn(conn)
				conn, lost, redial, wait = nil, true, time.After(wait), min(2*wait, listenRedialMax)
			}
			continue
		}
		if to := s.listen.Load(); to != nil && dialing == nil && redial == nil {
			dialing = make(chan dialed, 1)
			go func(done chan<- dialed) {
				c, err := s.openListener(ctx, to)
				done <- dialed{c, err}
			}(dialing)
		}
		select {
		case <-ctx.Done():
		case d := <-dialing:
			dialing = nil
			switch {
			case d.err != nil && ctx.Err() != nil:
			case d.err != nil && verdict(d.err):
				s.listen.Store(nil)
				s.log.Warn("live updates poll the database every " + s.poll.String() + " instead of listening: " + d.err.Error())
			case d.err != nil:
				if !lost {
					s.log.Warn("live updates cannot listen, and poll until they can", "err", d.err.Error())
				}
				lost, redial, wait = true, time.After(wait), min(2*wait, listenRedialMax)
			default:
				if lost {
					s.log.Info("live updates listen again")
				}
				conn, lost, since = d.conn, false, time.Now()
				s.wakeAll()
			}
		case <-redial:
			redial = nil
		case <-tick.C:
			s.pollVersions(ctx)
		}
	}
}

// pollVersions reads the versions of the users with open streams and wakes
// those of each whose version moved (or was first seen: a wake too many costs
// a stream one row).
func (s *streams) pollVersions(ctx context.Context) {
	s.mu.Lock()
	users := slices.Collect(maps.Keys(s.users))
	s.mu.Unlock()
	if len(users) == 0 { // lingering after the last stream
		return
	}
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
	for id, u := range s.users {
		s.wake(id, u.version, true)
	}
	s.mu.Unlock()
}

// close ends every stream, for http.Server.RegisterOnShutdown: the drain does
// not wait on them, and their clients reconnect elsewhere with Last-Event-ID.
func (s *streams) close() {
	s.closeOnce.Do(func() { close(s.done) })
	s.mu.Lock()
	s.stopWatcher()
	s.mu.Unlock()
}

func (s *streams) closed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}
