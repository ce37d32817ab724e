// main_test.go holds TestMain, which gives the run a database of its own, the helpers the test files share, and the tests of main.go: run, its configuration and the token and version commands.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
)

const testSecret = "test-secret-0123456789-abcdefghijklmnop"

// testURL points at a database of its own, created for this run and dropped
// after it (a database rather than a schema, so the suite also runs through a
// transaction-mode PgBouncer, which passes no search_path); testDB is the one
// pool the handler tests share, so the run stays far below max_connections.
var (
	testURL, testBaseURL string
	testDB               *store
	testPooled           bool   // TEST_DATABASE_URL reaches a transaction-mode pooler
	testDirectURL        string // DATABASE_DIRECT_URL for testURL: "" directly; behind a pooler, from TEST_DIRECT_DATABASE_URL
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	base := cmp.Or(os.Getenv("TEST_DATABASE_URL"), "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	testBaseURL = base
	name := fmt.Sprintf("tasks_test_%d", time.Now().UnixNano())
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests need PostgreSQL at TEST_DATABASE_URL:", err)
		return 1
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer admin.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)")
	u, err := url.Parse(base)
	if err != nil {
		fmt.Fprintln(os.Stderr, "TEST_DATABASE_URL must be a URL:", err)
		return 1
	}
	u.Path = "/" + name
	testURL = u.String()
	testDB, err = openStore(testURL, 5*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer testDB.pool.Close()
	if err := testDB.migrate(ctx, slog.New(slog.DiscardHandler)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if testPooled, err = serversShared(ctx, testDB.pool.Config().ConnConfig); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Behind a pooler, every env listens on the server itself, as a deployment
	// there is told to; without one, each env's start-up check waits for a
	// NOTIFY that never comes back, and polls.
	if server := os.Getenv("TEST_DIRECT_DATABASE_URL"); testPooled && server != "" {
		d := must(url.Parse(server))
		d.Path = u.Path
		testDirectURL = d.String()
	}
	return m.Run()
}

// newUser returns a user id no other test uses.
func newUser(t *testing.T) string {
	return fmt.Sprintf("u-%s-%s", strings.ReplaceAll(t.Name(), "/", "-"), rand.Text()[:10])
}

// env is one running server with its own settings, logging to logs.
type env struct {
	t         *testing.T
	srv       *httptest.Server
	logs      *syncBuffer
	startLogs *syncBuffer // what the server logged at start (checkNotify)
	live      *streams    // the server's streams, whose timings a test may change before it opens one
}

// testConfig is the production configuration with auth, minus the rate limit
// (tests hammer one user on purpose), changed by each of opts.
func testConfig(auth authConfig, opts ...func(*config)) config {
	cfg := config{Auth: auth, CORSOrigins: map[string]bool{"http://localhost:3000": true}, MaxTasks: 10000,
		SyncRetention: 30 * 24 * time.Hour, MaxStreams: 100, DirectURL: testDirectURL}
	for _, o := range opts {
		o(&cfg)
	}
	return cfg
}

func newEnv(t *testing.T, auth authConfig, opts ...func(*config)) *env {
	return newEnvDB(t, testDB, testConfig(auth, opts...))
}

// testServer is newServer with the streams' watcher quick to poll (20 ms) and
// to end after the last stream (100 ms), as tests want it.
func testServer(log *slog.Logger, db *store, cfg config) *middleware {
	m := newServer(log, db, cfg)
	m.live.poll, m.live.linger = 20*time.Millisecond, 100*time.Millisecond
	return m
}

// newEnvDB serves cfg on db through the production http.Server settings.
func newEnvDB(t *testing.T, db *store, cfg config) *env {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	m := testServer(log, db, cfg)
	startLogs := &syncBuffer{}
	if err := m.live.checkNotify(t.Context(), cfg.DirectURL, slog.New(slog.NewJSONHandler(startLogs, nil))); err != nil { // as run does
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = newHTTPServer(m, log)
	srv.Start()
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, logs: logs, startLogs: startLogs, live: m.live}
}

// syncBuffer is a bytes.Buffer that handlers on many goroutines may log to.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func hsAuth() authConfig { return authConfig{Secret: []byte(testSecret)} }

// result is a response, read whole.
type result struct {
	status int
	header http.Header
	body   []byte
}

func (r result) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

// do sends a request to the env's server, as send does, and fails the test if none comes back.
func (e *env) do(method, path, token string, body any, header ...string) result {
	e.t.Helper()
	r, err := send(e.srv.Client(), e.srv.URL, method, path, token, body, header...)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// send sends a request to the server at base and reads the response whole; body is raw
// when a string, JSON otherwise; header holds name, value pairs. It does not touch a
// testing.T, so goroutines other than the test's may call it.
func send(client *http.Client, base, method, path, token string, body any, header ...string) (result, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return result{}, err
		}
		rd = bytes.NewReader(j)
		header = append([]string{"Content-Type", "application/json"}, header...)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return result{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return result{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return result{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return result{resp.StatusCode, resp.Header, b}, nil
}

// want fails the test unless the response has status.
func (e *env) want(r result, status int, what string) {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("%s = %s, want %d", what, r, status)
	}
}

func hsToken(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func tokenFor(t *testing.T, userID string) string {
	return hsToken(t, jwt.MapClaims{"sub": userID, "exp": time.Now().Add(time.Hour).Unix()})
}

// signed makes a token with method and key, kid in its header, and the given claims.
func signed(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func decode[T any](t *testing.T, r result) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %s: %v", r, err)
	}
	return v
}

// create makes a task for user and returns it.
func (e *env) create(user string, body map[string]any) Task {
	e.t.Helper()
	r := e.do("POST", "/api/"+user+"/tasks", tokenFor(e.t, user), body)
	e.want(r, 201, "POST create")
	return decode[Task](e.t, r)
}

func (e *env) list(user, query string) ([]Task, int) {
	e.t.Helper()
	r := e.do("GET", "/api/"+user+"/tasks"+query, tokenFor(e.t, user), nil)
	e.want(r, 200, "GET list"+query)
	total, err := strconv.Atoi(cmp.Or(r.header.Get("X-Total-Count"), "-1")) // -1: none
	if err != nil {
		e.t.Fatalf("X-Total-Count = %q", r.header.Get("X-Total-Count"))
	}
	return decode[[]Task](e.t, r), total
}

// wantLoc fails unless r is a 422 whose detail names loc.
func wantLoc(t *testing.T, r result, loc ...any) {
	t.Helper()
	if r.status != 422 {
		t.Fatalf("got %s, want 422 at %v", r, loc)
	}
	var body struct{ Detail []fieldError }
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatalf("422 body %s: %v", r.body, err)
	}
	want := fmt.Sprintf("%v", loc)
	for _, d := range body.Detail {
		if fmt.Sprintf("%v", d.Loc) == want && d.Msg != "" && d.Type != "" {
			return
		}
	}
	t.Fatalf("422 detail %s does not name %v", r.body, want)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// testStore opens a store on url for one test, closed after it.
func testStore(t testing.TB, url string, timeout time.Duration) *store {
	t.Helper()
	db, err := openStore(url, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.pool.Close)
	return db
}

// eventually fails the test unless ok becomes true within 10 s; what names the wait.
func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
	}
}

// newDatabase creates an empty database for one test, dropped after it, and
// returns its URL; options are CREATE DATABASE's, such as a locale.
func newDatabase(t testing.TB, options string) string {
	t.Helper()
	name := fmt.Sprintf("tasks_test_%d", time.Now().UnixNano())
	ctx := context.Background()
	if _, err := testDB.pool.Exec(ctx, "CREATE DATABASE "+name+" "+options); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testDB.pool.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)") })
	u := must(url.Parse(testURL))
	u.Path = "/" + name
	return u.String()
}

// startRun runs the real program with a fake environment and returns its address,
// a stop function that reports run's result, and what run logged.
func startRun(t *testing.T, env map[string]string) (string, func() error, *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"tasks"}, func(k string) string { return env[k] }, pw)
		pw.Close()
	}()
	addr := make(chan string, 1)
	logs := &syncBuffer{}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			fmt.Fprintln(logs, sc.Text())
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				addr <- line.Addr
			}
		}
	}()
	select {
	case a := <-addr:
		_, port, _ := strings.Cut(a, "]:")
		return "http://127.0.0.1:" + port, func() error {
			cancel()
			select {
			case err := <-done:
				return err
			case <-time.After(15 * time.Second):
				return fmt.Errorf("run did not return within 15 s of cancel")
			}
		}, logs
	case err := <-done:
		cancel()
		t.Fatalf("run returned before listening: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("run did not start listening within 30 s")
	}
	return "", nil, nil
}

func TestRun(t *testing.T) {
	env := map[string]string{"DATABASE_URL": testURL, "BETTER_AUTH_SECRET": testSecret, "PORT": "0"}
	base, stop, logs := startRun(t, env)
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(base + p)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s = %v %v", p, resp, err)
		}
		resp.Body.Close()
	}
	// The token command mints what the server accepts.
	var out bytes.Buffer
	user := newUser(t)
	if err := run(context.Background(), []string{"tasks", "token", user}, func(k string) string { return env[k] }, &out); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", base+"/api/"+user+"/tasks", strings.NewReader(`{"title":"from run"}`))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(out.String()))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("POST with the token command's token = %v %v", resp, err)
	}
	resp.Body.Close()
	if err := stop(); err != nil {
		t.Fatalf("run after cancel = %v, want nil", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("server still answers after run returned")
	}
	if l := logs.String(); strings.Contains(l, testSecret) || strings.Contains(l, strings.TrimSpace(out.String())) || !strings.Contains(l, `"status":201`) {
		t.Fatalf("run's log holds a secret or misses the request:\n%s", l)
	}
}

func TestRunRefusesBadConfig(t *testing.T) {
	for _, c := range []struct {
		name string
		env  map[string]string
		want string // in the error
	}{
		{"no key at all", map[string]string{}, "BETTER_AUTH_SECRET"},
		{"short secret", map[string]string{"BETTER_AUTH_SECRET": "too-short"}, "at least 32 bytes"},
		{"bad port", map[string]string{"BETTER_AUTH_SECRET": testSecret, "PORT": "http"}, "PORT"},
		{"bad auth URL", map[string]string{"BETTER_AUTH_URL": "auth.example.com"}, "BETTER_AUTH_URL"},
		{"wildcard CORS", map[string]string{"BETTER_AUTH_SECRET": testSecret, "CORS_ORIGINS": "*"}, "CORS_ORIGINS"},
		{"CORS with a path", map[string]string{"BETTER_AUTH_SECRET": testSecret, "CORS_ORIGINS": "http://localhost:3000/app"}, "CORS_ORIGINS"},
		{"bad startup timeout", map[string]string{"BETTER_AUTH_SECRET": testSecret, "STARTUP_TIMEOUT": "soon"}, "STARTUP_TIMEOUT"},
		{"VAPID key without a subject", map[string]string{"BETTER_AUTH_SECRET": testSecret, "VAPID_PRIVATE_KEY": "AAAA"}, "VAPID_SUBJECT"},
		{"allow private, spelled otherwise", map[string]string{"BETTER_AUTH_SECRET": testSecret, "WEB_PUSH_ALLOW_PRIVATE": "yes"}, "WEB_PUSH_ALLOW_PRIVATE"},
		{"bad database URL", map[string]string{"BETTER_AUTH_SECRET": testSecret, "DATABASE_URL": "postgres://u:hunter2@[::1"}, "DATABASE_URL"},
		{"bad direct URL", map[string]string{"BETTER_AUTH_SECRET": testSecret, "DATABASE_URL": testURL, "PORT": "0",
			"DATABASE_DIRECT_URL": "postgres://u:hunter2@[::1"}, "DATABASE_DIRECT_URL"},
		{"database never appears", map[string]string{"BETTER_AUTH_SECRET": testSecret, "STARTUP_TIMEOUT": "1s",
			"DATABASE_URL": "postgres://postgres:hunter2@127.0.0.1:1/x?sslmode=disable"}, "database not reachable"},
		{"token without a secret", map[string]string{"BETTER_AUTH_URL": "http://localhost:3000"}, "BETTER_AUTH_SECRET"},
		{"token with a short secret", map[string]string{"BETTER_AUTH_SECRET": "short"}, "at least 32 bytes"},
		{"rate limit not a number", map[string]string{"BETTER_AUTH_SECRET": testSecret, "RATE_LIMIT_PER_SECOND": "lots"}, "RATE_LIMIT_PER_SECOND"},
		{"no task limit", map[string]string{"BETTER_AUTH_SECRET": testSecret, "MAX_TASKS_PER_USER": "0"}, "MAX_TASKS_PER_USER"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"tasks"}
			if strings.HasPrefix(c.name, "token") {
				args = append(args, "token", "u1")
			}
			var out bytes.Buffer
			err := run(context.Background(), args, func(k string) string { return c.env[k] }, &out)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("run = %v, want one line naming %q", err, c.want)
			}
			if all := err.Error() + out.String(); strings.Contains(all, "hunter2") || strings.Contains(all, testSecret) {
				t.Fatalf("a secret reached the error or the log: %s", all)
			}
		})
	}
}

// TestConfigReportsInOrder: of several bad settings, the same one is reported every time.
func TestConfigReportsInOrder(t *testing.T) {
	env := map[string]string{"BETTER_AUTH_SECRET": testSecret, "STARTUP_TIMEOUT": "soon", "DRAIN_TIMEOUT": "later",
		"QUERY_TIMEOUT": "never", "MAX_TASKS_PER_USER": "0", "RATE_LIMIT_BURST": "none"}
	for range 20 {
		if _, err := loadConfig(func(k string) string { return env[k] }); err == nil || !strings.HasPrefix(err.Error(), "STARTUP_TIMEOUT") {
			t.Fatalf("loadConfig = %v, want STARTUP_TIMEOUT, the first in order", err)
		}
	}
	delete(env, "STARTUP_TIMEOUT")
	delete(env, "DRAIN_TIMEOUT")
	delete(env, "QUERY_TIMEOUT")
	for range 20 {
		if _, err := loadConfig(func(k string) string { return env[k] }); err == nil || !strings.HasPrefix(err.Error(), "MAX_TASKS_PER_USER") {
			t.Fatalf("loadConfig = %v, want MAX_TASKS_PER_USER, the first in order", err)
		}
	}
}

// TestTokenNeedsOnlyTheSecret: the token command reads BETTER_AUTH_SECRET and
// nothing else, so a setting the server would refuse does not stop it.
func TestTokenNeedsOnlyTheSecret(t *testing.T) {
	env := map[string]string{"BETTER_AUTH_SECRET": testSecret, "PORT": "http", "DATABASE_URL": "postgres://[::1"}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"tasks", "token", "u1"}, func(k string) string { return env[k] }, &out); err != nil {
		t.Fatalf("token with other settings wrong = %v, want a token", err)
	}
	v := newVerifier(hsAuth(), http.DefaultClient, slog.New(slog.DiscardHandler))
	if sub, _, err := v.verify(strings.TrimSpace(out.String())); err != nil || sub != "u1" {
		t.Fatalf("the printed token verifies as %q, %v; want u1", sub, err)
	}
}

// TestVersion: `tasks version` prints the version, and CHANGELOG.md's latest release and
// openapi.json's info.version are the same one.
func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"tasks", "version"}, func(string) string { return "" }, &out); err != nil || out.String() != release+"\n" {
		t.Fatalf("tasks version = %q, %v; want %q", out.String(), err, release)
	}
	if err := run(context.Background(), []string{"tasks", "version", "now"}, func(string) string { return "" }, &out); err == nil {
		t.Fatal("tasks version now = nil, want an unknown command")
	}
	changelog, err := os.ReadFile("CHANGELOG.md")
	if err != nil {
		t.Fatal(err)
	}
	// Keep a Changelog: "## [Unreleased]", then each release as "## [1.2.3] - 2026-12-07", the latest first.
	latest := ""
	if m := regexp.MustCompile(`(?m)^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$`).FindSubmatch(changelog); m != nil {
		latest = string(m[1])
	}
	var doc struct{ Info struct{ Version string } }
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	if latest != release || doc.Info.Version != release {
		t.Fatalf("CHANGELOG.md's latest release %q, openapi.json's info.version %q, main.go's release %q: want one", latest, doc.Info.Version, release)
	}
}

// TestOriginsAsBrowsersSpellThem: CORS_ORIGINS are compared with the Origin
// header a browser sends, host in lower case and no default port.
func TestOriginsAsBrowsersSpellThem(t *testing.T) {
	env := map[string]string{"BETTER_AUTH_SECRET": testSecret, "CORS_ORIGINS": "http://LOCALHOST:3000, https://App.Example.com:443, http://a.test:80"}
	cfg, err := loadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	for _, origin := range []string{"http://localhost:3000", "https://app.example.com", "http://a.test"} {
		if !cfg.CORSOrigins[origin] {
			t.Errorf("CORS_ORIGINS %q does not admit the browser's Origin %q: %v", env["CORS_ORIGINS"], origin, cfg.CORSOrigins)
		}
	}
}
