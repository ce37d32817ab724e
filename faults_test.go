// faults_test.go tests the service under database faults (cut, black-holed, slow, absent at start) and SIGTERM under load: no acknowledged write is lost.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// faultProxy sits between the service and PostgreSQL: it forwards, cuts every
// connection (and refuses new ones), black-holes (accepts, never answers), or
// slows every chunk down, as a test says.
type faultProxy struct {
	ln     net.Listener
	target string
	mode   atomic.Value // "forward", "cut", "blackhole" or "slow"
	mu     sync.Mutex
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.mode.Store("forward")
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.set("cut")
		p.wg.Wait()
	})
	return p
}

func (p *faultProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode.Load() == "cut" {
		c.Close()
		return false
	}
	p.conns[c] = true
	return true
}

func (p *faultProxy) serve(client net.Conn) {
	if !p.track(client) {
		return
	}
	defer client.Close()
	if p.mode.Load() == "blackhole" {
		io.Copy(io.Discard, client) // accept, never answer
		return
	}
	server, err := net.Dial("tcp", p.target)
	if err != nil || !p.track(server) {
		return
	}
	defer server.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				switch p.mode.Load() {
				case "blackhole":
					continue // swallowed: the peer waits for an answer that never comes
				case "slow":
					time.Sleep(100 * time.Millisecond)
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go pipe(server, client)
	go pipe(client, server)
	<-done
	<-done
}

// set changes the mode; "cut" also closes every open connection.
func (p *faultProxy) set(mode string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode.Store(mode)
	if mode == "cut" {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

// url is testURL with the proxy in place of the database's address, plus extra query parameters.
func (p *faultProxy) url(extra string) string {
	u, _ := url.Parse(testURL)
	u.Host = p.ln.Addr().String()
	if extra != "" {
		u.RawQuery += "&" + extra
	}
	return u.String()
}

func proxyTarget(t *testing.T) string {
	u, err := url.Parse(testURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// tally counts every response of a load run and remembers each acknowledged write.
type tally struct {
	mu                                   sync.Mutex
	requests, ok, unavailable, transport int
	others                               []string
	maxLatency                           time.Duration
	users                                []string
	created                              map[int64]string // answered 201: id → title
	deleted                              map[int64]bool   // answered 204
	maybeDeleted                         map[int64]bool   // DELETE sent, not answered 204
	done                                 chan struct{}    // closed when every worker has stopped
}

func (ty *tally) record(r *http.Response, err error, took time.Duration) {
	ty.mu.Lock()
	defer ty.mu.Unlock()
	ty.requests++
	ty.maxLatency = max(ty.maxLatency, took)
	switch {
	case err != nil:
		ty.transport++
	case r.StatusCode < 300 || r.StatusCode == 304:
		ty.ok++
	case r.StatusCode == 503 && r.Header.Get("Retry-After") != "":
		ty.unavailable++
	default:
		ty.others = append(ty.others, r.Status)
	}
}

// load runs workers, each a user of its own creating (with an Idempotency-Key,
// retried on 503), listing and deleting tasks against base until ctx ends.
func load(ctx context.Context, base string, workers int) *tally {
	ty := &tally{created: map[int64]string{}, deleted: map[int64]bool{}, maybeDeleted: map[int64]bool{}, done: make(chan struct{})}
	client := &http.Client{Timeout: 30 * time.Second}
	do := func(method, path, tok, body, key string) (int, []byte) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		start := time.Now()
		resp, err := client.Do(req)
		var b []byte
		if err == nil {
			b, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		ty.record(resp, err, time.Since(start))
		if err != nil {
			return 0, nil
		}
		if resp.StatusCode == 503 && !bytes.Contains(b, []byte("Service temporarily unavailable")) {
			ty.mu.Lock()
			ty.others = append(ty.others, "503 body "+string(b))
			ty.mu.Unlock()
		}
		return resp.StatusCode, b
	}
	var wg sync.WaitGroup
	for w := range workers {
		user := fmt.Sprintf("load-%d-%s", w, rand.Text()[:8])
		ty.users = append(ty.users, user)
		tok := must(mintToken([]byte(testSecret), user, time.Hour))
		wg.Go(func() {
			var mine []int64
			for i := 0; ctx.Err() == nil; i++ {
				title := fmt.Sprintf("w%d-%d", w, i)
				for ctx.Err() == nil { // retry a create with its key until it is answered
					status, b := do("POST", "/api/"+user+"/tasks", tok, `{"title":"`+title+`"}`, title)
					if status == 201 {
						var task Task
						json.Unmarshal(b, &task)
						ty.mu.Lock()
						ty.created[task.ID] = title
						ty.mu.Unlock()
						mine = append(mine, task.ID)
						break
					}
					if status != 503 && status != 0 {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				do("GET", "/api/"+user+"/tasks?limit=5", tok, "", "")
				if i%3 == 2 && len(mine) > 0 {
					id := mine[0]
					status, _ := do("DELETE", fmt.Sprintf("/api/%s/tasks/%d", user, id), tok, "", "")
					ty.mu.Lock()
					if status == 204 {
						ty.deleted[id] = true
					} else {
						// Unanswered: the delete may have happened before the answer was lost.
						ty.maybeDeleted[id] = true
					}
					ty.mu.Unlock()
					mine = mine[1:]
				}
			}
		})
	}
	go func() { <-ctx.Done(); wg.Wait(); close(ty.done) }()
	return ty
}

// wait blocks until every worker has stopped.
func (ty *tally) wait() { <-ty.done }

// checkNoLoss fails unless every acknowledged create is in the database exactly
// once and every acknowledged delete is gone; it prints the run's figures.
func checkNoLoss(t *testing.T, name string, ty *tally) {
	t.Helper()
	rows, err := testDB.pool.Query(context.Background(), `SELECT id, title FROM tasks WHERE user_id = ANY($1)`, ty.users)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[int64]string{}
	titles := map[string]int{}
	for rows.Next() {
		var id int64
		var title string
		rows.Scan(&id, &title)
		stored[id] = title
		titles[title]++
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	lost, duplicates, undeleted := 0, 0, 0
	for id, title := range ty.created {
		if !ty.deleted[id] && !ty.maybeDeleted[id] && stored[id] != title {
			lost++
		}
	}
	for _, n := range titles {
		duplicates += n - 1
	}
	for id := range ty.deleted {
		if _, ok := stored[id]; ok {
			undeleted++
		}
	}
	t.Logf("%s: requests %d, 2xx %d, 503 %d, other %d, transport errors %d, max latency %v; creates acknowledged %d, deletes %d; lost writes %d, duplicates %d, deletes undone %d",
		name, ty.requests, ty.ok, ty.unavailable, len(ty.others), ty.transport, ty.maxLatency.Round(time.Millisecond),
		len(ty.created), len(ty.deleted), lost, duplicates, undeleted)
	if len(ty.others) > 0 {
		t.Logf("%s: answers other than 2xx or 503 + Retry-After: %q", name, ty.others[:min(5, len(ty.others))])
	}
	if lost+duplicates+undeleted > 0 {
		t.Fatalf("%s: %d acknowledged writes lost, %d duplicates, %d acknowledged deletes undone", name, lost, duplicates, undeleted)
	}
	if len(ty.others) > 0 {
		t.Fatalf("%s: answers other than 2xx or 503 + Retry-After: %q", name, ty.others[:min(5, len(ty.others))])
	}
	if len(ty.created) == 0 {
		t.Fatalf("%s: no create succeeded; the scenario tested nothing", name)
	}
}

// faultEnv serves the API on a store that reaches the database through a fault proxy.
func faultEnv(t *testing.T, timeout time.Duration, extra string) (*env, *faultProxy) {
	p := newFaultProxy(t, proxyTarget(t))
	return newEnvDB(t, testStore(t, p.url(extra), timeout), testConfig(hsAuth())), p
}

// waitReady polls until a create succeeds again and returns how long that took.
func waitReady(t *testing.T, e *env) time.Duration {
	start := time.Now()
	user := newUser(t)
	for time.Since(start) < 10*time.Second {
		if r := e.do("POST", "/api/"+user+"/tasks", tokenFor(t, user), map[string]any{"title": "back?"}); r.status == 201 {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the service did not recover within 10 s of the database's return")
	return 0
}

func TestFaultDatabaseCut(t *testing.T) {
	e, proxy := faultEnv(t, time.Second, "")
	ctx, stop := context.WithCancel(context.Background())
	ty := load(ctx, e.srv.URL, 4)
	time.Sleep(500 * time.Millisecond)
	proxy.set("cut")
	time.Sleep(time.Second)
	ty.mu.Lock()
	during := ty.unavailable
	ty.mu.Unlock()
	proxy.set("forward")
	recovery := waitReady(t, e)
	time.Sleep(500 * time.Millisecond)
	stop()
	ty.wait()
	t.Logf("recovered %v after the database came back", recovery.Round(time.Millisecond))
	if during == 0 {
		t.Fatal("no 503 while the database was cut: the cut did not happen")
	}
	checkNoLoss(t, "database cut", ty)
}

// TestFaultBlackhole: the database stops answering (a partition) while every
// pooled connection is busy, so each of them times out. pgx then cleans up a
// timed-out connection (a cancel request, then draining it) under a 15 s
// deadline, and the pool holds its slot until then: without openStore's
// dialer (the cancel request's deadline, boundedConn), no request gets a
// connection for that long after the database answers again ("did not
// recover within 10 s").
func TestFaultBlackhole(t *testing.T) {
	const timeout = 500 * time.Millisecond
	e, proxy := faultEnv(t, timeout, "pool_max_conns=4") // as many as load's workers
	// settle warms the pool to its working size, then lets idle connections go,
	// so goroutines and heap can be compared before and after.
	settle := func() (int, uint64) {
		ctx, stop := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer stop()
		load(ctx, e.srv.URL, 4).wait()
		e.srv.CloseClientConnections()
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		time.Sleep(200 * time.Millisecond)
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return runtime.NumGoroutine(), m.HeapAlloc
	}
	goroutines, heap := settle()

	ctx, stop := context.WithCancel(context.Background())
	ty := load(ctx, e.srv.URL, 4)
	time.Sleep(300 * time.Millisecond)
	proxy.set("blackhole")
	time.Sleep(2 * time.Second)
	proxy.set("forward")
	recovery := waitReady(t, e)
	time.Sleep(300 * time.Millisecond)
	stop()
	ty.wait()
	t.Logf("recovered %v after the black hole ended", recovery.Round(time.Millisecond))
	if ty.unavailable == 0 {
		t.Fatal("no 503 during the black hole")
	}
	// Each request is a statement or two, each bounded by the query timeout:
	// none may hang until the server's write timeout.
	if ty.maxLatency >= 15*time.Second {
		t.Fatalf("a request took %v during the black hole", ty.maxLatency)
	}
	checkNoLoss(t, "database black-holed", ty)

	// Nothing the black hole started is left behind.
	var afterG int
	var afterHeap uint64
	for range 10 {
		if afterG, afterHeap = settle(); afterG <= goroutines+5 {
			break
		}
	}
	t.Logf("goroutines %d before, %d after; heap %d KiB before, %d KiB after", goroutines, afterG, heap>>10, afterHeap>>10)
	if afterG > goroutines+5 || afterHeap > heap*2+8<<20 {
		t.Fatalf("the black hole left %d goroutines (was %d) and %d KiB of heap (was %d)", afterG, goroutines, afterHeap>>10, heap>>10)
	}
}

// TestFaultClientHangsUp: a client that hangs up while its statement runs
// leaves the pool's connection open (pgx closes one whose statement is
// cancelled), and its request is logged as a hang-up, not as an error.
func TestFaultClientHangsUp(t *testing.T) {
	p := newFaultProxy(t, proxyTarget(t))
	db := testStore(t, p.url("pool_max_conns=1"), 5*time.Second)
	e := newEnvDB(t, db, testConfig(hsAuth()))
	waitReady(t, e)
	conns := db.pool.Stat().NewConnsCount()
	user := newUser(t)
	p.set("slow") // each statement now takes 200 ms or more
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req := must(http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/api/"+user+"/tasks", nil))
	req.Header.Set("Authorization", "Bearer "+tokenFor(t, user))
	if resp, err := e.srv.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("GET = %d, want the client to give up first", resp.StatusCode)
	}
	eventually(t, "the request's log line", func() bool { return strings.Contains(e.logs.String(), `"client_gone":true`) })
	p.set("forward")
	waitReady(t, e)
	if n := db.pool.Stat().NewConnsCount(); n != conns {
		t.Fatalf("the pool opened %d connections after the hang-up, want none", n-conns)
	}
	for line := range strings.Lines(e.logs.String()) {
		if strings.Contains(line, `"client_gone":true`) && (!strings.Contains(line, `"level":"INFO"`) || strings.Contains(line, `"err"`)) {
			t.Fatalf("the hang-up was logged as %s, want an INFO line without an error", line)
		}
	}
}

func TestFaultPoolExhausted(t *testing.T) {
	// A keyed create's transaction takes five round trips, a second here: with
	// 3 s, two or three of the eight clients queued at once get the connection in time.
	const timeout = 3 * time.Second
	e, proxy := faultEnv(t, timeout, "pool_max_conns=1")
	waitReady(t, e)
	proxy.set("slow") // each statement now takes 200 ms or more on the one connection
	ctx, stop := context.WithTimeout(context.Background(), 6*time.Second)
	defer stop()
	ty := load(ctx, e.srv.URL, 8)
	ty.wait()
	proxy.set("forward")
	if ty.unavailable == 0 {
		t.Fatal("8 clients on one slow connection never waited past the timeout")
	}
	if ty.maxLatency >= 15*time.Second {
		t.Fatalf("a request waited %v for the pool", ty.maxLatency)
	}
	checkNoLoss(t, "pool exhausted", ty)
}

func TestFaultDatabaseAbsentAtStart(t *testing.T) {
	proxy := newFaultProxy(t, proxyTarget(t))
	proxy.set("cut")
	go func() {
		time.Sleep(1500 * time.Millisecond)
		proxy.set("forward")
	}()
	env := map[string]string{"DATABASE_URL": proxy.url(""), "BETTER_AUTH_SECRET": testSecret, "PORT": "0", "STARTUP_TIMEOUT": "20s"}
	base, stop, logs := startRun(t, env)
	resp, err := http.Get(base + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz after the database appeared: %v %v", resp, err)
	}
	resp.Body.Close()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "waiting for the database"); n < 2 {
		t.Fatalf("%d tries logged while the database was absent, want several:\n%s", n, logs)
	}
}

func TestFaultSIGTERMUnderLoad(t *testing.T) {
	proxy := newFaultProxy(t, proxyTarget(t))
	env := map[string]string{"DATABASE_URL": proxy.url(""), "BETTER_AUTH_SECRET": testSecret, "PORT": "0", "DRAIN_TIMEOUT": "10s"}
	base, stop, _ := startRun(t, env)
	proxy.set("slow") // so that requests are in flight when the signal comes
	ctx, stopLoad := context.WithCancel(context.Background())
	ty := load(ctx, base, 8)
	time.Sleep(time.Second)
	start := time.Now()
	if err := stop(); err != nil { // what SIGTERM does: cancel run's context
		t.Fatalf("run after SIGTERM = %v, want nil", err)
	}
	drained := time.Since(start)
	if _, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), time.Second); err == nil {
		t.Fatal("a new connection was accepted after shutdown")
	}
	stopLoad()
	ty.wait()
	t.Logf("run returned %v after SIGTERM", drained.Round(time.Millisecond))
	if ty.unavailable > 0 {
		t.Fatalf("%d requests answered 503 during the drain", ty.unavailable)
	}
	checkNoLoss(t, "SIGTERM under load", ty)
}
