// events_test.go tests the live stream through the real handler and server: events, resume, isolation, bounds, shutdown.
package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
)

// sseEvent is one server-sent event, or a comment (Comment set).
type sseEvent struct {
	Event, ID, Data, Comment string
}

// stream is an open event stream whose events arrive on a channel.
type stream struct {
	t      *testing.T
	resp   *http.Response
	events chan sseEvent
}

// openStream opens the user's event stream; header holds name, value pairs.
func (e *env) openStream(user string, header ...string) *stream {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.srv.URL+"/api/"+user+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+tokenFor(e.t, user))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	// no-transform: a compressing proxy (Express's compression()) would hold the events back.
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("Cache-Control") != "no-store, no-transform" {
		e.t.Fatalf("GET events = %d %v", resp.StatusCode, resp.Header)
	}
	s := &stream{t: e.t, resp: resp, events: make(chan sseEvent, 100)}
	go func() {
		defer close(s.events)
		r := bufio.NewReader(resp.Body)
		var ev sseEvent
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimSuffix(line, "\n")
			switch name, value, _ := strings.Cut(line, ": "); {
			case line == "":
				if ev != (sseEvent{}) {
					s.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ":"):
				s.events <- sseEvent{Comment: strings.TrimPrefix(line, ": ")}
			case name == "event":
				ev.Event = value
			case name == "id":
				ev.ID = value
			case name == "data":
				ev.Data = value
			}
		}
	}()
	return s
}

// next returns the stream's next event, skipping comments unless comments is set;
// it fails the test if none comes within 10 s or the stream ends.
func (s *stream) next(comments bool) sseEvent {
	s.t.Helper()
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				s.t.Fatal("the stream ended")
			}
			if ev.Comment != "" && !comments {
				continue
			}
			return ev
		case <-time.After(10 * time.Second):
			s.t.Fatal("no event within 10 s")
		}
	}
}

// page decodes an event's data as a page of the feed, checking its id is the page's cursor.
func (s *stream) page(ev sseEvent) changesPage {
	s.t.Helper()
	var p changesPage
	if err := json.Unmarshal([]byte(ev.Data), &p); err != nil || ev.ID == "" || ev.ID != p.Cursor || ev.Event != "" {
		s.t.Fatalf("event %+v: %v", ev, err)
	}
	return p
}

func TestEventsStream(t *testing.T) {
	e := newEnv(t, hsAuth())
	user, other := newUser(t), newUser(t)
	e.create(user, map[string]any{"title": "before"})
	s := e.openStream(user)
	if p := s.page(s.next(false)); len(p.Tasks) != 1 || p.Tasks[0].Title != "before" {
		t.Fatalf("the first event = %+v, want a first sync", p)
	}
	// Another user's write never reaches this stream; this user's does.
	e.create(other, map[string]any{"title": "not yours"})
	created := e.create(user, map[string]any{"title": "live"})
	ev := s.next(false)
	if p := s.page(ev); len(p.Tasks) != 1 || p.Tasks[0].ID != created.ID {
		t.Fatalf("after a create the stream sent %+v", p)
	}
	// A write through another replica (another server on the same database) reaches it too.
	replica := newEnv(t, hsAuth())
	elsewhere := replica.create(user, map[string]any{"title": "from the other replica"})
	if p := s.page(s.next(false)); len(p.Tasks) != 1 || p.Tasks[0].ID != elsewhere.ID {
		t.Fatalf("after a create on another replica the stream sent %+v", p)
	}
	e.want(e.do("DELETE", fmt.Sprint("/api/", user, "/tasks/", created.ID), tokenFor(t, user), nil), 204, "DELETE")
	ev = s.next(false)
	if p := s.page(ev); len(p.Deleted) != 1 || p.Deleted[0] != created.ID {
		t.Fatalf("after a delete the stream sent %+v", p)
	}

	// Resume: the changes made while away come first.
	last := ev.ID
	e.create(user, map[string]any{"title": "while away"})
	r := e.openStream(user, "Last-Event-ID", last)
	if p := r.page(r.next(false)); len(p.Tasks) != 1 || p.Tasks[0].Title != "while away" || len(p.Deleted) != 0 {
		t.Fatalf("a stream resumed from %s sent %+v first", last, p)
	}

	// Auth and isolation as everywhere; a bad Last-Event-ID is a 422, an expired one a reset.
	e.want(e.do("GET", "/api/"+user+"/events", "", nil), 401, "no token")
	e.want(e.do("GET", "/api/"+other+"/events", tokenFor(t, user), nil), 403, "another user's stream")
	wantLoc(t, e.do("GET", "/api/"+user+"/events", tokenFor(t, user), nil, "Last-Event-ID", "nonsense"), "header", "Last-Event-ID")
	old := feedCursor{1, time.Now().Add(-31 * 24 * time.Hour), -1, userTag(user)}
	x := e.openStream(user, "Last-Event-ID", old.String())
	if ev := x.next(false); ev.Event != "reset" || !strings.Contains(ev.Data, "sync from scratch") {
		t.Fatalf("a stream from an expired cursor sent %+v, want a reset", ev)
	}
}

func TestEventsHeartbeatAndBounds(t *testing.T) {
	e := newEnv(t, hsAuth(), func(c *config) { c.MaxStreams = 12 })
	e.live.heartbeat = 50 * time.Millisecond
	user := newUser(t)
	s := e.openStream(user)
	s.next(false) // the first sync
	if ev := s.next(true); ev.Comment == "" {
		t.Fatalf("a quiet stream sent %+v, want a comment", ev)
	}
	if r := e.do("HEAD", "/api/"+user+"/events", tokenFor(t, user), nil); r.status != 200 || r.header.Get("Content-Type") != "text/event-stream" || r.header.Get("Cache-Control") != "no-store, no-transform" {
		t.Fatalf("HEAD events = %s %v", r, r.header)
	}
	// Some proxies cut a connection idle for 30 s; the EventSource spec suggests a comment every 15 s or so.
	if beat := newServer(slog.New(slog.DiscardHandler), testDB, testConfig(hsAuth())).live.heartbeat; beat > 15*time.Second {
		t.Fatalf("a quiet stream sends a comment every %s, want at most 15 s", beat)
	}
	for range maxStreamsPerUser - 1 { // the HEAD held no slot
		e.openStream(user)
	}
	r := e.do("GET", "/api/"+user+"/events", tokenFor(t, user), nil)
	if r.status != 429 || r.header.Get("Retry-After") == "" {
		t.Fatalf("stream %d of one user = %s %v, want 429 with Retry-After", maxStreamsPerUser+1, r, r.header)
	}
	other := newUser(t)
	e.openStream(other)
	e.openStream(other)
	if r := e.do("GET", "/api/"+other+"/events", tokenFor(t, other), nil); r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Fatalf("a stream past MAX_STREAMS = %s, want 503 with Retry-After", r)
	}
}

// TestEventsOutliveTimeoutsAndEndAtShutdown runs a server whose read and write
// timeouts are short: a stream outlives them, and shutting the server down ends
// it at once rather than waiting out the drain.
func TestEventsOutliveTimeoutsAndEndAtShutdown(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = newHTTPServer(testServer(log, testDB, testConfig(hsAuth())), log)
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = 200*time.Millisecond, 200*time.Millisecond
	srv.Start()
	defer srv.Close()
	e := &env{t: t, srv: srv, logs: &syncBuffer{}}
	user := newUser(t)
	s := e.openStream(user)
	s.next(false)
	time.Sleep(500 * time.Millisecond) // past both timeouts
	created := e.create(user, map[string]any{"title": "after the timeouts"})
	if p := s.page(s.next(false)); len(p.Tasks) != 1 || p.Tasks[0].ID != created.ID {
		t.Fatalf("after the timeouts the stream sent %+v", p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Config.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a stream open: %v", err)
	}
	for ev := range s.events {
		t.Fatalf("after shutdown the stream sent %+v", ev)
	}
}

// TestEventsShutdownWhileSending: a shutdown that comes while a stream's
// send is under way, after it looked for one and before it set its write
// deadline, still ends the stream at once, though its client has stopped
// reading and the write would wait streamWriteWait (an hour here). The
// ResponseWriter around the server's own puts the shutdown exactly there.
func TestEventsShutdownWhileSending(t *testing.T) {
	user := newUser(t)
	writer := newEnv(t, hsAuth())
	for range 200 { // a first sync larger than what the sockets hold
		writer.create(user, map[string]any{"title": "bulk", "description": strings.Repeat("x", maxDescription)})
	}
	log := slog.New(slog.DiscardHandler)
	m := testServer(log, testDB, testConfig(hsAuth()))
	m.live.writeWait = time.Hour
	srv := httptest.NewUnstartedServer(nil)
	shutdown, raced := make(chan error, 1), make(chan struct{})
	srv.Config = newHTTPServer(m, log)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.ServeHTTP(&shutdownInSend{ResponseWriter: w, applied: make(chan struct{}), shutdown: func() {
			close(raced)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				shutdown <- srv.Config.Shutdown(ctx)
			}()
		}}, r)
	})
	srv.Listener = smallSendBuffers{srv.Listener}
	srv.Start()
	defer srv.Close()
	conn := must(net.Dial("tcp", srv.Listener.Addr().String()))
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4 << 10)
	fmt.Fprintf(conn, "GET /api/%s/events HTTP/1.1\r\nHost: tasks\r\nAuthorization: Bearer %s\r\n\r\n", user, tokenFor(t, user))
	select { // and never read
	case err := <-shutdown:
		if err != nil {
			t.Fatalf("shutdown with a stream's write stuck: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the stream never sent its first sync")
	}
	<-raced
}

// shutdownInSend passes everything on to the ResponseWriter beneath, but when
// a stream's second send (its first sync, after retry:) sets its write
// deadline, it first shuts the server down and waits until the shutdown has
// set its own deadline.
type shutdownInSend struct {
	http.ResponseWriter
	sends    int
	shutdown func()
	applied  chan struct{} // closed once the shutdown's deadline is set
}

func (w *shutdownInSend) SetWriteDeadline(t time.Time) error {
	if time.Until(t) <= 0 {
		defer close(w.applied)
	} else if w.sends++; w.sends == 2 {
		w.shutdown()
		<-w.applied
	}
	return http.NewResponseController(w.ResponseWriter).SetWriteDeadline(t)
}

func (w *shutdownInSend) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// smallSendBuffers gives each connection it accepts a small send buffer, so that a client that does not read soon blocks a write.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		c.(*net.TCPConn).SetWriteBuffer(4 << 10)
	}
	return c, err
}

// TestEventsEndWithTheToken: a stream ends when its token does (exp, and
// clockLeeway after it), though streamMaxAge has not passed; a token the
// verifier remembers too. The client reconnects with a fresh token.
func TestEventsEndWithTheToken(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	token := hsToken(t, jwt.MapClaims{"sub": user, "exp": time.Now().Add(5*time.Second - clockLeeway).Unix()})
	first := e.openStream(user, "Authorization", "Bearer "+token)
	remembered := e.openStream(user, "Authorization", "Bearer "+token)
	for _, s := range []*stream{first, remembered} {
		s.next(false)
		ended := time.After(time.Minute)
		for open := true; open; {
			select {
			case _, open = <-s.events:
			case <-ended:
				t.Fatal("the stream outlived its token by a minute")
			}
		}
	}
	e.want(e.do("GET", "/api/"+user+"/events", token, nil), 401, "a stream with the expired token")
}

// TestEventsRetryAFailedRead: a stream whose read of the feed fails (here, a
// statement timeout while another session locks the tombstones) tries again
// a second later, rather than at its next heartbeat.
func TestEventsRetryAFailedRead(t *testing.T) {
	e := newEnvDB(t, testStore(t, testURL, 300*time.Millisecond), testConfig(hsAuth()))
	user := newUser(t)
	s := e.openStream(user)
	s.next(false)
	ctx := t.Context()
	tx := must(testDB.pool.Begin(ctx))
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `LOCK task_tombstones IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	created := newEnv(t, hsAuth()).create(user, map[string]any{"title": "while the feed was locked"})
	time.Sleep(time.Second) // the stream's reads time out meanwhile
	tx.Rollback(ctx)
	if p := s.page(s.next(false)); len(p.Tasks) != 1 || p.Tasks[0].ID != created.ID {
		t.Fatalf("after a failed read the stream sent %+v", p)
	}
}

// listenerSessions picks, from pg_stat_activity, the listening sessions on the test database.
const listenerSessions = `WHERE application_name = 'tasks listener' AND datname = current_database()`

// directURL is testDirectURL; behind a pooler without TEST_DIRECT_DATABASE_URL, the test is skipped.
func directURL(t *testing.T) string {
	if testPooled && testDirectURL == "" {
		t.Skip("behind a pooler: set TEST_DIRECT_DATABASE_URL to the database server itself")
	}
	return testDirectURL
}

// TestEventsListen: with the watcher's poll an hour apart, only the NOTIFY of
// a write on another replica can wake the stream. The payload is the user's
// version and id, never task data. After the database drops the listening
// session, the watcher dials again, and a write made meanwhile still arrives.
func TestEventsListen(t *testing.T) {
	direct := directURL(t)
	e := newEnv(t, hsAuth(), func(c *config) { c.DirectURL = direct })
	e.live.poll = time.Hour
	if !strings.Contains(e.startLogs.String(), "live updates listen for NOTIFY") {
		t.Fatalf("the start-up check did not listen: %s", e.startLogs)
	}
	user := newUser(t)
	s := e.openStream(user)
	s.next(false)
	replica := newEnv(t, hsAuth())
	arrives := func(title string) {
		t.Helper()
		created := replica.create(user, map[string]any{"title": title})
		if p := s.page(s.next(false)); len(p.Tasks) != 1 || p.Tasks[0].ID != created.ID {
			t.Fatalf("after %q the stream sent %+v", title, p)
		}
	}
	arrives("heard")

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn := must(pgx.Connect(ctx, cmp.Or(direct, testURL)))
	defer conn.Close(context.Background())
	must(conn.Exec(ctx, "LISTEN "+notifyChannel))
	replica.create(user, map[string]any{"title": "secret title"})
	s.next(false)
	n := must(conn.WaitForNotification(ctx))
	if !regexp.MustCompile(`^[0-9]+ ` + regexp.QuoteMeta(user) + `$`).MatchString(n.Payload) {
		t.Fatalf("a write notified %q, want its version and user id", n.Payload)
	}

	must(testDB.pool.Exec(t.Context(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity `+listenerSessions))
	// Once the watcher knows, and before it dials again (a second later), a write
	// whose NOTIFY no session hears: only the wake that follows a new session brings it.
	eventually(t, "the watcher notices the lost session", func() bool { return strings.Contains(e.logs.String(), "lost their listening session") })
	arrives("while the listener was away")
	arrives("heard again")
	if logs := e.logs.String(); !strings.Contains(logs, "listen again") {
		t.Fatalf("the log does not tell of the lost session and its return: %s", logs)
	}
}

// TestEventsFallback: where the watcher cannot listen, the log says why once,
// and streams still get every write, by polling. A DATABASE_DIRECT_URL to
// another database is caught by the start-up check: its session never hears
// the pool's NOTIFY. Behind a transaction-mode pooler (CI's PgBouncer pass),
// an env without one polls, for the same reason.
func TestEventsFallback(t *testing.T) {
	other, why := testBaseURL, "did not come back to the listening session" // another database
	if testPooled {
		if other = os.Getenv("TEST_DIRECT_DATABASE_URL"); other == "" {
			other, why = testBaseURL, "DATABASE_DIRECT_URL reaches a transaction-mode pooler"
		}
	}
	cases := []struct{ direct, why string }{
		{other, why},
	}
	if testPooled {
		cases = append(cases, struct{ direct, why string }{"", "reaches a transaction-mode pooler"})
	}
	for _, c := range cases {
		e := newEnv(t, hsAuth(), func(cfg *config) { cfg.DirectURL = c.direct })
		if logs := e.startLogs.String(); !strings.Contains(logs, c.why) || strings.Count(logs, "live updates") != 1 {
			t.Fatalf("DATABASE_DIRECT_URL %q: the log says %s, want %q", c.direct, logs, c.why)
		}
		user := newUser(t)
		s := e.openStream(user)
		s.next(false)
		created := newEnv(t, hsAuth()).create(user, map[string]any{"title": "polled"})
		if p := s.page(s.next(false)); len(p.Tasks) != 1 || p.Tasks[0].ID != created.ID {
			t.Fatalf("DATABASE_DIRECT_URL %q: after a create the stream sent %+v", c.direct, p)
		}
	}
}

// TestEventsListenerUnreachable: a direct URL that answers nothing at start (a
// black hole) is not a verdict. The watcher polls, with a dial beside it that
// does not hold the polls up (the write arrives before that dial has failed),
// and listens once the way is open.
func TestEventsListenerUnreachable(t *testing.T) {
	u := must(url.Parse(cmp.Or(directURL(t), testURL)))
	p := newFaultProxy(t, u.Host)
	p.set("blackhole")
	u.Host = p.ln.Addr().String()
	e := newEnv(t, hsAuth(), func(c *config) { c.DirectURL = u.String() })
	if logs := e.startLogs.String(); !strings.Contains(logs, "until they can listen") {
		t.Fatalf("the start-up check says %s, want that it polls until it can listen", logs)
	}
	user := newUser(t)
	s := e.openStream(user)
	s.next(false)
	created := newEnv(t, hsAuth()).create(user, map[string]any{"title": "polled while dialling"})
	if p := s.page(s.next(false)); len(p.Tasks) != 1 || p.Tasks[0].ID != created.ID {
		t.Fatalf("after a create the stream sent %+v", p)
	}
	if logs := e.logs.String(); strings.Contains(logs, "cannot listen") {
		t.Fatalf("the write came only after the dial failed: %s", logs)
	}
	p.set("cut") // ends the dial in flight
	p.set("forward")
	eventually(t, "the watcher listens once the way is open", func() bool { return strings.Contains(e.logs.String(), "listen again") })
}

// TestEventsWatcherEnds: the watcher and its listening session end soon after
// the last stream (linger), and a stream opened later gets a new one that
// hears the writes (the poll is an hour apart, so only NOTIFY brings them).
func TestEventsWatcherEnds(t *testing.T) {
	direct := directURL(t)
	e := newEnv(t, hsAuth(), func(c *config) { c.DirectURL = direct })
	e.live.poll = time.Hour
	listeners := func() (n int) {
		if err := testDB.pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity `+listenerSessions).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	user := newUser(t)
	s := e.openStream(user)
	s.next(false)
	eventually(t, "a listening session while a stream is open", func() bool { return listeners() == 1 })
	s.resp.Body.Close()
	eventually(t, "no listening session after the last stream", func() bool { return listeners() == 0 })

	r := e.openStream(user)
	r.next(false)
	replica := newEnv(t, hsAuth())
	for _, title := range []string{"first", "second"} { // the second after the new session surely listens
		created := replica.create(user, map[string]any{"title": title})
		if p := r.page(r.next(false)); len(p.Tasks) != 1 || p.Tasks[0].ID != created.ID {
			t.Fatalf("after %q the reopened stream sent %+v", title, p)
		}
	}
}
