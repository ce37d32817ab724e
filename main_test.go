// main_test.go tests the service through its real handler against a real PostgreSQL.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

const testSecret = "test-secret-0123456789-abcdefghijklmnop"

// testURL points at a database of its own, created for this run and dropped
// after it (a database rather than a schema, so the suite also runs through a
// transaction-mode PgBouncer, which passes no search_path); testDB is the one
// pool the handler tests share, so the run stays far below max_connections.
var (
	testURL string
	testDB  *store
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	base := orDefault(os.Getenv("TEST_DATABASE_URL"), "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
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
	if err := testDB.migrate(ctx, func(int, error) {}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// newUser returns a user id no other test uses.
func newUser(t *testing.T) string {
	return fmt.Sprintf("u-%s-%s", strings.ReplaceAll(t.Name(), "/", "-"), rand.Text()[:10])
}

// env is one running server with its own settings, logging to logs.
type env struct {
	t    *testing.T
	srv  *httptest.Server
	logs *syncBuffer
}

// testConfig is the production configuration with auth, minus the rate limit
// (tests hammer one user on purpose), changed by each of opts.
func testConfig(auth authConfig, opts ...func(*config)) config {
	cfg := config{Auth: auth, CORSOrigins: map[string]bool{"http://localhost:3000": true}, MaxTasks: 10000}
	for _, o := range opts {
		o(&cfg)
	}
	return cfg
}

func newEnv(t *testing.T, auth authConfig, opts ...func(*config)) *env {
	return newEnvDB(t, testDB, testConfig(auth, opts...))
}

// newEnvDB serves cfg on db through the production http.Server settings.
func newEnvDB(t *testing.T, db *store, cfg config) *env {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = newHTTPServer(newServer(log, db, cfg), log)
	srv.Start()
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, logs: logs}
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

// do sends a request; body is raw when a string, JSON otherwise; header holds name, value pairs.
func (e *env) do(method, path, token string, body any, header ...string) result {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
		header = append([]string{"Content-Type", "application/json"}, header...)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return result{resp.StatusCode, resp.Header, b}
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
	total, err := strconv.Atoi(r.header.Get("X-Total-Count"))
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

func TestTaskLifecycle(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	tok := tokenFor(t, user)
	base := "/api/" + user + "/tasks"

	r := e.do("POST", base, tok, map[string]any{"title": "  Buy milk  ", "description": "2 litres",
		"priority": "high", "due_date": "2026-12-01T10:00:00+02:00", "tags": []string{"home", "shop", "home"}})
	e.want(r, 201, "POST")
	created := decode[Task](t, r)
	if loc := r.header.Get("Location"); loc != fmt.Sprintf("%s/%d", base, created.ID) {
		t.Errorf("Location = %q, want %s/%d", loc, base, created.ID)
	}
	if created.Title != "Buy milk" || *created.Description != "2 litres" || created.Completed || created.Priority != "high" ||
		!created.DueDate.Equal(time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)) || !slices.Equal(created.Tags, []string{"home", "shop"}) ||
		created.UserID != user || created.CreatedAt.IsZero() || !created.UpdatedAt.Equal(created.CreatedAt) {
		t.Fatalf("created %+v", created)
	}
	var raw map[string]any
	json.Unmarshal(r.body, &raw)
	if raw["created_at"] != created.CreatedAt.Format(time.RFC3339Nano) || !strings.HasSuffix(raw["due_date"].(string), "Z") {
		t.Errorf("timestamps not RFC 3339 UTC: %s", r.body)
	}
	item := fmt.Sprintf("%s/%d", base, created.ID)

	got := decode[Task](t, e.do("GET", item, tok, nil))
	if got.ID != created.ID || got.Title != created.Title || !got.CreatedAt.Equal(created.CreatedAt) {
		t.Fatalf("GET = %+v, want %+v", got, created)
	}

	// Partial update: absent fields stay, title changes, updated_at moves.
	r = e.do("PUT", item, tok, map[string]any{"title": "Buy oat milk"})
	e.want(r, 200, "PUT title")
	upd := decode[Task](t, r)
	if upd.Title != "Buy oat milk" || upd.Description == nil || *upd.Description != "2 litres" || upd.Priority != "high" ||
		upd.DueDate == nil || !slices.Equal(upd.Tags, created.Tags) || !upd.UpdatedAt.After(created.UpdatedAt) || !upd.CreatedAt.Equal(created.CreatedAt) {
		t.Fatalf("PUT title gave %+v", upd)
	}
	// null clears description and due_date; a task read back can be sent as is.
	sent := upd
	sent.Completed = true
	sent.Description, sent.DueDate = nil, nil
	r = e.do("PATCH", item, tok, sent)
	e.want(r, 200, "PATCH with a task read back")
	upd2 := decode[Task](t, r)
	if upd2.Description != nil || upd2.DueDate != nil || !upd2.Completed || upd2.Title != "Buy oat milk" || !upd2.UpdatedAt.After(upd.UpdatedAt) {
		t.Fatalf("PATCH gave %+v", upd2)
	}

	for _, want := range []bool{false, true} {
		r = e.do("PATCH", item+"/complete", tok, "ignored body", "Content-Type", "text/plain")
		e.want(r, 200, "PATCH complete")
		if c := decode[Task](t, r).Completed; c != want {
			t.Fatalf("toggle: completed = %v, want %v", c, want)
		}
	}

	tasks, total := e.list(user, "")
	if len(tasks) != 1 || total != 1 || tasks[0].ID != created.ID {
		t.Fatalf("list = %+v (total %d)", tasks, total)
	}

	r = e.do("DELETE", item, tok, nil)
	e.want(r, 204, "DELETE")
	if len(r.body) != 0 {
		t.Errorf("204 body = %q", r.body)
	}
	e.want(e.do("GET", item, tok, nil), 404, "GET after DELETE")
	e.want(e.do("DELETE", item, tok, nil), 404, "DELETE again")
	e.want(e.do("PUT", item, tok, map[string]any{"title": "x"}), 404, "PUT deleted")
	e.want(e.do("PATCH", item+"/complete", tok, nil), 404, "toggle deleted")
	if r := e.do("GET", base, tok, nil); string(bytes.TrimSpace(r.body)) != "[]" || r.header.Get("X-Total-Count") != "0" {
		t.Fatalf("empty list = %s, X-Total-Count %q", r, r.header.Get("X-Total-Count"))
	}
}

func TestIsolation(t *testing.T) {
	e := newEnv(t, hsAuth())
	a, b := newUser(t), newUser(t)
	ta, tb := tokenFor(t, a), tokenFor(t, b)
	task := e.create(a, map[string]any{"title": "A's secret", "description": "only A"})
	aItem := fmt.Sprintf("/api/%s/tasks/%d", a, task.ID)
	bItem := fmt.Sprintf("/api/%s/tasks/%d", b, task.ID)
	body := map[string]any{"title": "hijacked"}

	routes := []struct {
		method, suffix string
		body           any
	}{
		{"GET", "", nil}, {"PUT", "", body}, {"PATCH", "", body}, {"DELETE", "", nil}, {"PATCH", "/complete", nil},
	}
	for _, rt := range routes {
		// B's token on A's path: 403, whatever the id.
		e.want(e.do(rt.method, aItem+rt.suffix, tb, rt.body), 403, rt.method+" A's path with B's token")
		// B's own path with A's task id: 404, the same answer as a missing id.
		r := e.do(rt.method, bItem+rt.suffix, tb, rt.body)
		missing := e.do(rt.method, fmt.Sprintf("/api/%s/tasks/%d%s", b, int64(1)<<62, rt.suffix), tb, rt.body)
		if r.status != 404 || !bytes.Equal(r.body, missing.body) {
			t.Fatalf("%s A's task under B's path = %s, want the same 404 as a missing id (%s)", rt.method, r, missing)
		}
	}
	e.want(e.do("GET", "/api/"+a+"/tasks", tb, nil), 403, "list A's path with B's token")
	e.want(e.do("POST", "/api/"+a+"/tasks", tb, body), 403, "create on A's path with B's token")
	if tasks, total := e.list(b, ""); len(tasks) != 0 || total != 0 {
		t.Fatalf("B lists %d tasks (total %d)", len(tasks), total)
	}
	got := decode[Task](t, e.do("GET", aItem, ta, nil))
	if got.Title != task.Title || got.Completed || !got.UpdatedAt.Equal(task.UpdatedAt) {
		t.Fatalf("A's task changed by B's requests: %+v", got)
	}
	if tasks, total := e.list(a, ""); total != 1 || len(tasks) != 1 {
		t.Fatalf("A's list after B's attempts: %d tasks, total %d", len(tasks), total)
	}
}

func TestValidation(t *testing.T) {
	e := newEnv(t, hsAuth())
	cases := []struct {
		name   string
		body   string
		ctype  string
		status int
		loc    []any // for 422
	}{
		{"200 multi-byte characters", `{"title":"` + strings.Repeat("日", 200) + `"}`, "", 201, nil},
		{"201 multi-byte characters", `{"title":"` + strings.Repeat("日", 201) + `"}`, "", 422, []any{"body", "title"}},
		{"whitespace title", `{"title":"  \t "}`, "", 422, []any{"body", "title"}},
		{"empty title", `{"title":""}`, "", 422, []any{"body", "title"}},
		{"missing title", `{"description":"x"}`, "", 422, []any{"body", "title"}},
		{"null title", `{"title":null}`, "", 422, []any{"body", "title"}},
		{"numeric title", `{"title":5}`, "", 422, []any{"body", "title"}},
		{"NUL in title", `{"title":"a\u0000b"}`, "", 422, []any{"body", "title"}},
		{"NUL in description", `{"title":"a","description":"\u0000"}`, "", 422, []any{"body", "description"}},
		{"1000 characters", `{"title":"a","description":"` + strings.Repeat("é", 1000) + `"}`, "", 201, nil},
		{"1001 characters", `{"title":"a","description":"` + strings.Repeat("é", 1001) + `"}`, "", 422, []any{"body", "description"}},
		{"unknown field", `{"title":"a","titel":"b"}`, "", 422, []any{"body", "titel"}},
		{"bad priority", `{"title":"a","priority":"urgent"}`, "", 422, []any{"body", "priority"}},
		{"bad due_date", `{"title":"a","due_date":"next week"}`, "", 422, []any{"body", "due_date"}},
		{"due_date year 0", `{"title":"a","due_date":"0000-01-01T00:00:00Z"}`, "", 422, []any{"body", "due_date"}},
		{"11 tags", `{"title":"a","tags":["1","2","3","4","5","6","7","8","9","10","11"]}`, "", 422, []any{"body", "tags"}},
		{"empty tag", `{"title":"a","tags":["ok"," "]}`, "", 422, []any{"body", "tags", 1}},
		{"33-character tag", `{"title":"a","tags":["` + strings.Repeat("t", 33) + `"]}`, "", 422, []any{"body", "tags", 0}},
		{"tags not a list", `{"title":"a","tags":"x"}`, "", 422, []any{"body", "tags"}},
		{"control character in a tag", `{"title":"a","tags":["ok","a\u0007b"]}`, "", 422, []any{"body", "tags", 1}},
		{"malformed JSON", `{"title": `, "", 422, []any{"body"}},
		{"two JSON values", `{"title":"a"} {"title":"b"}`, "", 422, []any{"body"}},
		{"array body", `[{"title":"a"}]`, "", 422, []any{"body"}},
		{"empty body", ``, "", 422, []any{"body"}},
		{"invalid UTF-8", "{\"title\":\"a\xff\"}", "", 422, []any{"body"}},
		{"text/plain", `{"title":"a"}`, "text/plain", 415, nil},
		{"form", `title=a`, "application/x-www-form-urlencoded", 415, nil},
		{"too large", `{"title":"a","description":"` + strings.Repeat("x", 70<<10) + `"}`, "", 413, nil},
		{"json with charset", `{"title":"a"}`, "application/json; charset=utf-8", 201, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			user := newUser(t)
			r := e.do("POST", "/api/"+user+"/tasks", tokenFor(t, user), c.body, "Content-Type", orDefault(c.ctype, "application/json"))
			if c.loc != nil {
				wantLoc(t, r, c.loc...)
			} else if r.status != c.status {
				t.Fatalf("POST %s = %s, want %d", c.name, r, c.status)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			// Nothing half-written: a rejected create leaves no task.
			if _, total := e.list(user, ""); (c.status == 201) != (total == 1) {
				t.Fatalf("after %d, user has %d tasks", r.status, total)
			}
		})
	}

	t.Run("ignored fields", func(t *testing.T) {
		user := newUser(t)
		task := e.create(user, map[string]any{"title": "a", "id": 999999, "user_id": "someone-else",
			"created_at": "2000-01-01T00:00:00Z", "updated_at": "2000-01-01T00:00:00Z", "completed": true})
		if task.ID == 999999 || task.UserID != user || task.CreatedAt.Year() == 2000 || task.Completed {
			t.Fatalf("read-only or create-ignored fields were used: %+v", task)
		}
		r := e.do("PUT", fmt.Sprintf("/api/%s/tasks/%d", user, task.ID), tokenFor(t, user),
			map[string]any{"user_id": "someone-else", "id": 1, "created_at": "2000-01-01T00:00:00Z"})
		e.want(r, 200, "PUT read-only fields")
		if got := decode[Task](t, r); got.UserID != user || got.ID != task.ID || !got.CreatedAt.Equal(task.CreatedAt) {
			t.Fatalf("PUT changed read-only fields: %+v", got)
		}
	})

	t.Run("update", func(t *testing.T) {
		user := newUser(t)
		task := e.create(user, map[string]any{"title": "keep me", "tags": []string{"a"}})
		item := fmt.Sprintf("/api/%s/tasks/%d", user, task.ID)
		tok := tokenFor(t, user)
		for _, c := range []struct {
			body string
			loc  []any
		}{
			{`{"title":""}`, []any{"body", "title"}},
			{`{"title":null}`, []any{"body", "title"}},
			{`{"completed":"yes"}`, []any{"body", "completed"}},
			{`{"completed":null}`, []any{"body", "completed"}},
			{`{"priority":null}`, []any{"body", "priority"}},
			{`{"title":"ok","titel":"typo"}`, []any{"body", "titel"}},
		} {
			wantLoc(t, e.do("PATCH", item, tok, c.body, "Content-Type", "application/json"), c.loc...)
		}
		wantLoc(t, e.do("GET", fmt.Sprintf("/api/%s/tasks/abc", user), tok, nil), "path", "id")
		wantLoc(t, e.do("GET", fmt.Sprintf("/api/%s/tasks/0", user), tok, nil), "path", "id")
		got := decode[Task](t, e.do("GET", item, tok, nil))
		if got.Title != "keep me" || !got.UpdatedAt.Equal(task.UpdatedAt) {
			t.Fatalf("rejected updates changed the task: %+v", got)
		}
		r := e.do("PATCH", item, tok, map[string]any{"tags": nil, "due_date": "2027-01-02"})
		e.want(r, 200, "PATCH tags null")
		if got := decode[Task](t, r); len(got.Tags) != 0 || !got.DueDate.Equal(time.Date(2027, 1, 2, 0, 0, 0, 0, time.UTC)) {
			t.Fatalf("PATCH tags null, date = %+v", got)
		}
	})
}

func TestList(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	tok := tokenFor(t, user)
	seed := []map[string]any{
		{"title": "alpha", "priority": "low", "due_date": "2027-03-01T00:00:00Z", "tags": []string{"work"}},
		{"title": "Bravo 50% off", "priority": "high", "tags": []string{"shop", "home"}},
		{"title": "charlie 500", "priority": "medium", "due_date": "2027-01-01T00:00:00Z", "description": "Under_score MILK"},
		{"title": "delta", "priority": "high", "due_date": "2027-02-01T00:00:00Z", "tags": []string{"home"}},
		{"title": "Echo", "priority": "medium", "tags": []string{"home", "shop", "work"}},
	}
	ids := map[string]int64{}
	for _, s := range seed {
		ids[s["title"].(string)] = e.create(user, s).ID
	}
	// delta is done; charlie is touched last.
	e.want(e.do("PATCH", fmt.Sprintf("/api/%s/tasks/%d/complete", user, ids["delta"]), tok, nil), 200, "toggle delta")
	e.want(e.do("PATCH", fmt.Sprintf("/api/%s/tasks/%d", user, ids["charlie 500"]), tok, map[string]any{"priority": "medium"}), 200, "touch charlie")
	other := newUser(t)
	e.create(other, map[string]any{"title": "alpha of another user", "tags": []string{"home"}})

	cases := []struct {
		query string
		want  []string
		total int
	}{
		{"", []string{"Echo", "delta", "charlie 500", "Bravo 50% off", "alpha"}, 5},
		{"?sort=created&order=asc", []string{"alpha", "Bravo 50% off", "charlie 500", "delta", "Echo"}, 5},
		{"?sort=title", []string{"alpha", "Bravo 50% off", "charlie 500", "delta", "Echo"}, 5},
		{"?sort=title&order=desc", []string{"Echo", "delta", "charlie 500", "Bravo 50% off", "alpha"}, 5},
		{"?sort=due_date", []string{"charlie 500", "delta", "alpha", "Bravo 50% off", "Echo"}, 5},
		{"?sort=due_date&order=desc", []string{"alpha", "delta", "charlie 500", "Echo", "Bravo 50% off"}, 5},
		{"?sort=priority", []string{"delta", "Bravo 50% off", "Echo", "charlie 500", "alpha"}, 5},
		{"?sort=priority&order=asc", []string{"alpha", "charlie 500", "Echo", "Bravo 50% off", "delta"}, 5},
		{"?sort=updated", []string{"charlie 500", "delta", "Echo", "Bravo 50% off", "alpha"}, 5},
		{"?status=completed", []string{"delta"}, 1},
		{"?status=pending&sort=title", []string{"alpha", "Bravo 50% off", "charlie 500", "Echo"}, 4},
		{"?status=all&sort=title&limit=2", []string{"alpha", "Bravo 50% off"}, 5},
		{"?q=50%25", []string{"Bravo 50% off"}, 1},
		{"?q=_", []string{"charlie 500"}, 1},
		{"?q=milk", []string{"charlie 500"}, 1},
		{"?q=ECHO", []string{"Echo"}, 1},
		{"?q=zzz", []string{}, 0},
		{"?tag=home&sort=title", []string{"Bravo 50% off", "delta", "Echo"}, 3},
		{"?tag=home&tag=shop&sort=title", []string{"Bravo 50% off", "Echo"}, 2},
		{"?tag=home&tag=nope", []string{}, 0},
		{"?sort=title&limit=2&offset=2", []string{"charlie 500", "delta"}, 5},
		{"?sort=title&offset=5", []string{}, 5},
		{"?sort=title&limit=2&offset=4", []string{"Echo"}, 5},                                          // the last page: total without a count
		{"?sort=title&limit=5", []string{"alpha", "Bravo 50% off", "charlie 500", "delta", "Echo"}, 5}, // exactly full
		{"?sort=title&offset=9", []string{}, 5},
		{"?status=pending&tag=home&q=O&sort=title&order=desc&limit=1", []string{"Echo"}, 2},
		{"?unknown=param", []string{"Echo", "delta", "charlie 500", "Bravo 50% off", "alpha"}, 5},
	}
	for _, c := range cases {
		tasks, total := e.list(user, c.query)
		titles := []string{}
		for _, task := range tasks {
			titles = append(titles, task.Title)
		}
		if !slices.Equal(titles, c.want) || total != c.total {
			t.Errorf("GET list%s = %q total %d, want %q total %d", c.query, titles, total, c.want, c.total)
		}
	}

	// Pages of a sort with ties (priority) put together give the whole list once.
	all, _ := e.list(user, "?sort=priority")
	var paged []int64
	for off := 0; off < len(all); off += 2 {
		page, _ := e.list(user, fmt.Sprintf("?sort=priority&limit=2&offset=%d", off))
		for _, task := range page {
			paged = append(paged, task.ID)
		}
	}
	var want []int64
	for _, task := range all {
		want = append(want, task.ID)
	}
	if !slices.Equal(paged, want) {
		t.Errorf("pages = %v, want %v", paged, want)
	}

	for _, c := range []struct{ query, param string }{
		{"?status=done", "status"}, {"?sort=size", "sort"}, {"?order=up", "order"}, {"?limit=0", "limit"},
		{"?limit=1001", "limit"}, {"?limit=ten", "limit"}, {"?offset=-1", "offset"}, {"?q=a%00b", "q"},
		{"?q=%ff", "q"}, {"?tag=" + strings.Repeat("t", 33), "tag"}, {"?tag=%00", "tag"},
	} {
		wantLoc(t, e.do("GET", "/api/"+user+"/tasks"+c.query, tok, nil), "query", c.param)
	}
}

// jwkOf encodes a public key as a JWK.
func jwkOf(t testing.TB, kid string, pub any) map[string]string {
	enc := base64.RawURLEncoding.EncodeToString
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return map[string]string{"kty": "OKP", "crv": "Ed25519", "x": enc(k), "kid": kid}
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "n": enc(k.N.Bytes()), "e": enc(big.NewInt(int64(k.E)).Bytes()), "kid": kid}
	case *ecdsa.PublicKey:
		b, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		n := (len(b) - 1) / 2
		return map[string]string{"kty": "EC", "crv": k.Curve.Params().Name, "x": enc(b[1 : 1+n]), "y": enc(b[1+n:]), "kid": kid}
	}
	t.Fatalf("no JWK for %T", pub)
	return nil
}

// keyServer is a JWKS endpoint whose keys a test can change while the API runs.
type keyServer struct {
	mu      sync.Mutex
	keys    []map[string]string
	fetches atomic.Int32
	srv     *httptest.Server
}

func newKeyServer(t *testing.T) *keyServer {
	ks := &keyServer{}
	ks.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ks.fetches.Add(1)
		ks.mu.Lock()
		defer ks.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"keys": ks.keys})
	}))
	t.Cleanup(ks.srv.Close)
	return ks
}

func (ks *keyServer) add(jwk map[string]string) {
	ks.mu.Lock()
	ks.keys = append(ks.keys, jwk)
	ks.mu.Unlock()
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

func TestAuth(t *testing.T) {
	ks := newKeyServer(t)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	ks.add(jwkOf(t, "ed", edKey.Public()))
	ks.add(jwkOf(t, "rsa", &rsaKey.PublicKey))
	ks.add(jwkOf(t, "p256", &p256.PublicKey))
	ks.add(jwkOf(t, "p521", &p521.PublicKey))
	const authURL = "http://auth.example.test"
	e := newEnv(t, authConfig{Secret: []byte(testSecret), JWKSURL: ks.srv.URL, JWKSIssuer: authURL, JWKSAudience: authURL})

	user := newUser(t)
	path := "/api/" + user + "/tasks"
	now := time.Now()
	good := func() jwt.MapClaims {
		return jwt.MapClaims{"sub": user, "exp": now.Add(15 * time.Minute).Unix(), "iss": authURL, "aud": authURL}
	}
	with := func(k string, v any) jwt.MapClaims {
		c := good()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(&rsaKey.PublicKey))})
	none := must(jwt.NewWithClaims(jwt.SigningMethodNone, good()).SignedString(jwt.UnsafeAllowNoneSignatureType))
	attacker, _, _ := ed25519.GenerateKey(rand.Reader)
	_ = attacker
	_, attackerKey, _ := ed25519.GenerateKey(rand.Reader)
	jku := jwt.NewWithClaims(jwt.SigningMethodEdDSA, good())
	jku.Header["kid"] = "attacker"
	jku.Header["jku"] = "http://attacker.test/jwks"
	jku.Header["jwk"] = jwkOf(t, "attacker", attackerKey.Public())
	jkuToken := must(jku.SignedString(attackerKey))

	cases := []struct {
		name   string
		header string // Authorization
		status int
	}{
		{"HS256", "Bearer " + hsToken(t, jwt.MapClaims{"sub": user, "exp": now.Add(time.Hour).Unix(), "email": "a@b.c", "name": "A"}), 200},
		{"scheme in lower case", "bearer " + tokenFor(t, user), 200},
		{"scheme in upper case", "BEARER " + tokenFor(t, user), 200},
		{"EdDSA from the JWKS", "Bearer " + signed(t, jwt.SigningMethodEdDSA, edKey, "ed", good()), 200},
		{"RS256 from the JWKS", "Bearer " + signed(t, jwt.SigningMethodRS256, rsaKey, "rsa", good()), 200},
		{"PS256 from the JWKS", "Bearer " + signed(t, jwt.SigningMethodPS256, rsaKey, "rsa", good()), 200},
		{"ES256 from the JWKS", "Bearer " + signed(t, jwt.SigningMethodES256, p256, "p256", good()), 200},
		{"ES512 from the JWKS", "Bearer " + signed(t, jwt.SigningMethodES512, p521, "p521", good()), 200},
		{"expired within the 30 s leeway", "Bearer " + hsToken(t, jwt.MapClaims{"sub": user, "exp": now.Add(-10 * time.Second).Unix()}), 200},
		{"no header", "", 401},
		{"Basic scheme", "Basic " + tokenFor(t, user), 401},
		{"no token after Bearer", "Bearer ", 401},
		{"garbage", "Bearer not-a-jwt", 401},
		{"alg none", "Bearer " + none, 401},
		{"HS256 signed with the RSA public key", "Bearer " + signed(t, jwt.SigningMethodHS256, rsaPEM, "rsa", good()), 401},
		{"wrong secret", "Bearer " + signed(t, jwt.SigningMethodHS256, []byte(testSecret+"x"), "", good()), 401},
		{"HS512", "Bearer " + signed(t, jwt.SigningMethodHS512, []byte(testSecret), "", good()), 401},
		{"expired", "Bearer " + hsToken(t, jwt.MapClaims{"sub": user, "exp": now.Add(-time.Minute).Unix()}), 401},
		{"no exp", "Bearer " + hsToken(t, jwt.MapClaims{"sub": user}), 401},
		{"nbf in the future", "Bearer " + hsToken(t, jwt.MapClaims{"sub": user, "exp": now.Add(time.Hour).Unix(), "nbf": now.Add(time.Minute).Unix()}), 401},
		{"no sub", "Bearer " + hsToken(t, jwt.MapClaims{"exp": now.Add(time.Hour).Unix()}), 401},
		{"empty sub", "Bearer " + hsToken(t, jwt.MapClaims{"sub": "", "exp": now.Add(time.Hour).Unix()}), 401},
		{"numeric sub", "Bearer " + hsToken(t, jwt.MapClaims{"sub": 42, "exp": now.Add(time.Hour).Unix()}), 401},
		{"JWKS token, wrong audience", "Bearer " + signed(t, jwt.SigningMethodEdDSA, edKey, "ed", with("aud", "http://other.test")), 401},
		{"JWKS token, wrong issuer", "Bearer " + signed(t, jwt.SigningMethodEdDSA, edKey, "ed", with("iss", "http://other.test")), 401},
		{"JWKS token, no audience", "Bearer " + signed(t, jwt.SigningMethodEdDSA, edKey, "ed", with("aud", nil)), 401},
		{"JWKS token, no kid", "Bearer " + signed(t, jwt.SigningMethodEdDSA, edKey, "", good()), 401},
		{"RS256 naming an Ed25519 kid", "Bearer " + signed(t, jwt.SigningMethodRS256, rsaKey, "ed", good()), 401},
		{"ES256 naming the P-521 kid", "Bearer " + signed(t, jwt.SigningMethodES256, p256, "p521", good()), 401},
		{"own key in jku and jwk headers", "Bearer " + jkuToken, 401},
		{"tampered payload", "Bearer " + tamper(signed(t, jwt.SigningMethodEdDSA, edKey, "ed", good()), "someone-else"), 401},
		{"another user's token", "Bearer " + tokenFor(t, newUser(t)), 403},
	}
	for _, c := range cases {
		r := e.do("GET", path, "", nil, "Authorization", c.header)
		if r.status != c.status {
			t.Errorf("%s: GET = %s, want %d", c.name, r, c.status)
			continue
		}
		if c.status == 401 && r.header.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
			t.Errorf("%s: WWW-Authenticate = %q", c.name, r.header.Get("WWW-Authenticate"))
		}
		if c.status != 200 {
			if d := decode[struct{ Detail string }](t, r); d.Detail == "" {
				t.Errorf("%s: no detail in %s", c.name, r)
			}
		}
	}

	// Nothing but the Authorization header carries a token.
	tok := tokenFor(t, user)
	e.want(e.do("GET", path+"?token="+tok+"&access_token="+tok, "", nil), 401, "token in the query string")
	e.want(e.do("GET", path, "", nil, "Cookie", "token="+tok+"; better-auth.session_token="+tok), 401, "token in a cookie")

	// Explicit issuer and audience apply to HS256 tokens too.
	strict := newEnv(t, authConfig{Secret: []byte(testSecret), Issuer: "api-test", Audience: "tasks"})
	strict.want(strict.do("GET", path, tok, nil), 401, "HS256 without the configured iss/aud")
	okTok := hsToken(t, jwt.MapClaims{"sub": user, "exp": now.Add(time.Hour).Unix(), "iss": "api-test", "aud": []string{"tasks"}})
	strict.want(strict.do("GET", path, okTok, nil), 200, "HS256 with the configured iss/aud")

	// Without a secret, HS256 tokens are refused.
	jwksOnly := newEnv(t, authConfig{JWKSURL: ks.srv.URL, JWKSIssuer: authURL, JWKSAudience: authURL})
	jwksOnly.want(jwksOnly.do("GET", path, tok, nil), 401, "HS256 with no secret configured")
	jwksOnly.want(jwksOnly.do("GET", path, signed(t, jwt.SigningMethodEdDSA, edKey, "ed", good()), nil), 200, "EdDSA, JWKS only")
}

// tamper replaces the sub of a signed token without signing it again.
func tamper(token, sub string) string {
	parts := strings.Split(token, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims map[string]any
	json.Unmarshal(payload, &claims)
	claims["sub"] = sub
	b, _ := json.Marshal(claims)
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestKeyRotation(t *testing.T) {
	ks := newKeyServer(t)
	_, key1, _ := ed25519.GenerateKey(rand.Reader)
	ks.add(jwkOf(t, "k1", key1.Public()))
	e := newEnv(t, authConfig{JWKSURL: ks.srv.URL})
	user := newUser(t)
	path := "/api/" + user + "/tasks"
	claims := jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix()}

	e.want(e.do("GET", path, signed(t, jwt.SigningMethodEdDSA, key1, "k1", claims), nil), 200, "token from key 1")
	e.want(e.do("GET", path, signed(t, jwt.SigningMethodEdDSA, key1, "k1", claims), nil), 200, "token from key 1, cached")
	if n := ks.fetches.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times for one key, want 1", n)
	}

	// A token with an unknown kid that no fetch can find: fetches stay rate-limited.
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	for i := range 50 {
		e.want(e.do("GET", path, signed(t, jwt.SigningMethodEdDSA, stranger, fmt.Sprintf("unknown-%d", i), claims), nil), 401, "unknown kid")
	}
	if n := ks.fetches.Load(); n > 10 {
		t.Fatalf("50 unknown kids fetched the JWKS %d times", n)
	}

	// Rotation: the auth server adds key 2; its tokens work without a restart.
	_, key2, _ := ed25519.GenerateKey(rand.Reader)
	ks.add(jwkOf(t, "k2", key2.Public()))
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := e.do("GET", path, signed(t, jwt.SigningMethodEdDSA, key2, "k2", claims), nil)
		if r.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("token from the new key = %s after 5 s", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.want(e.do("GET", path, signed(t, jwt.SigningMethodEdDSA, key1, "k1", claims), nil), 200, "token from key 1 after rotation")
}

func TestCORS(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	path := "/api/" + user + "/tasks"
	preflight := func(origin string) result {
		return e.do("OPTIONS", path, "", nil, "Origin", origin, "Access-Control-Request-Method", "POST",
			"Access-Control-Request-Headers", "authorization,content-type")
	}
	r := preflight("http://localhost:3000")
	if r.status != 204 || r.header.Get("Access-Control-Allow-Origin") != "http://localhost:3000" ||
		r.header.Get("Access-Control-Allow-Credentials") != "true" ||
		!strings.Contains(r.header.Get("Access-Control-Allow-Methods"), "PATCH") ||
		!strings.Contains(r.header.Get("Access-Control-Allow-Headers"), "Authorization") ||
		!strings.Contains(r.header.Get("Access-Control-Allow-Headers"), "If-Match") ||
		!strings.Contains(r.header.Get("Access-Control-Allow-Headers"), "Idempotency-Key") {
		t.Fatalf("allowed preflight = %s %v", r, r.header)
	}
	r = preflight("http://evil.test")
	if r.status < 400 || r.header.Get("Access-Control-Allow-Origin") != "" || r.header.Get("Access-Control-Allow-Methods") != "" {
		t.Fatalf("refused preflight = %s %v", r, r.header)
	}

	r = e.do("GET", path, tokenFor(t, user), nil, "Origin", "http://localhost:3000")
	if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "http://localhost:3000" ||
		!strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "X-Total-Count") ||
		!strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "ETag") {
		t.Fatalf("allowed GET = %s %v", r, r.header)
	}
	r = e.do("GET", path, tokenFor(t, user), nil, "Origin", "http://evil.test")
	if r.header.Get("Access-Control-Allow-Origin") != "" || r.header.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("GET from another origin got CORS headers: %v", r.header)
	}
}

func TestConcurrentWrites(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	tok := tokenFor(t, user)
	task := e.create(user, map[string]any{"title": "toggle me"})
	item := fmt.Sprintf("/api/%s/tasks/%d/complete", user, task.ID)

	const n = 50
	var wg sync.WaitGroup
	states := make(chan bool, n)
	ids := make(chan int64, n)
	for i := range n {
		wg.Go(func() {
			r := e.do("PATCH", item, tok, nil)
			if r.status == 200 {
				states <- decode[Task](t, r).Completed
			} else {
				t.Errorf("toggle = %s", r)
			}
			r = e.do("POST", "/api/"+user+"/tasks", tok, map[string]any{"title": fmt.Sprintf("concurrent %d", i)})
			if r.status == 201 {
				ids <- decode[Task](t, r).ID
			} else {
				t.Errorf("create = %s", r)
			}
		})
	}
	wg.Wait()
	close(states)
	close(ids)
	done := 0
	for s := range states {
		if s {
			done++
		}
	}
	// Serialised toggles see each state in turn: half of them end completed.
	if done != n/2 {
		t.Errorf("%d of %d toggles answered completed, want %d", done, n, n/2)
	}
	if got := decode[Task](t, e.do("GET", fmt.Sprintf("/api/%s/tasks/%d", user, task.ID), tok, nil)); got.Completed {
		t.Errorf("after %d toggles completed = true", n)
	}
	seen := map[int64]bool{}
	for id := range ids {
		seen[id] = true
	}
	if _, total := e.list(user, ""); len(seen) != n || total != n+1 {
		t.Errorf("%d distinct ids from %d creates, %d tasks listed", len(seen), n, total)
	}
}

func TestRoutingAndHeaders(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	tok := tokenFor(t, user)
	task := e.create(user, map[string]any{"title": "slash"})

	e.want(e.do("GET", "/api/"+user+"/tasks/", tok, nil), 200, "list with a trailing slash")
	e.want(e.do("POST", "/api/"+user+"/tasks/", tok, map[string]any{"title": "x"}), 201, "create with a trailing slash")
	e.want(e.do("GET", fmt.Sprintf("/api/%s/tasks/%d/", user, task.ID), tok, nil), 200, "get with a trailing slash")
	e.want(e.do("PATCH", fmt.Sprintf("/api/%s/tasks/%d/complete/", user, task.ID), tok, nil), 200, "toggle with a trailing slash")
	e.want(e.do("GET", "/healthz", "", nil), 200, "healthz")
	e.want(e.do("GET", "/readyz", "", nil), 200, "readyz")

	for _, c := range []struct {
		method, path string
		status       int
		tok          string
	}{
		{"GET", "/nope", 404, ""},
		{"GET", "/api/" + user, 404, tok},
		{"DELETE", "/api/" + user + "/tasks", 405, tok},
		{"POST", "/healthz", 405, ""},
		{"GET", "/api/" + user + "/tasks", 401, ""},
		{"GET", "/api/" + user + "/tasks", 200, tok},
	} {
		r := e.do(c.method, c.path, c.tok, nil)
		if r.status != c.status || r.header.Get("Content-Type") != "application/json" ||
			r.header.Get("Cache-Control") != "no-store" || r.header.Get("X-Content-Type-Options") != "nosniff" || !json.Valid(r.body) {
			t.Errorf("%s %s = %s %v, want %d with JSON and security headers", c.method, c.path, r, r.header, c.status)
		}
		if c.status == 405 && r.header.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", c.method, c.path)
		}
	}
}

func TestDatabaseUnavailable(t *testing.T) {
	down, err := openStore("postgres://postgres@127.0.0.1:1/none?sslmode=disable", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(down.pool.Close)
	e := newEnvDB(t, down, testConfig(hsAuth()))
	user := newUser(t)
	for _, r := range []result{
		e.do("GET", "/api/"+user+"/tasks", tokenFor(t, user), nil),
		e.do("POST", "/api/"+user+"/tasks", tokenFor(t, user), map[string]any{"title": "lost?"}),
		e.do("GET", "/readyz", "", nil),
	} {
		if r.status != 503 || r.header.Get("Retry-After") == "" {
			t.Errorf("with the database down: %s, want 503 with Retry-After", r)
		}
		if s := strings.ToLower(string(r.body)); strings.Contains(s, "dial") || strings.Contains(s, "127.0.0.1") || strings.Contains(s, "pg") {
			t.Errorf("503 body leaks the driver's error: %s", r.body)
		}
	}
	e.want(e.do("GET", "/healthz", "", nil), 200, "healthz without a database")
}

func TestSchemaConstraints(t *testing.T) {
	ctx := context.Background()
	// Two replicas starting at once: the schema applies cleanly under its advisory lock.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if _, err := testDB.pool.Exec(ctx, schemaSQL); err != nil {
				t.Errorf("applying the schema again: %v", err)
			}
		})
	}
	wg.Wait()
	// The database holds the limits even for a writer that skips the Go checks.
	for _, c := range []struct {
		name, title string
		tags        []string
	}{
		{"201-character title", strings.Repeat("日", 201), nil},
		{"blank title", "   ", nil},
		{"11 tags", "a", []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"}},
		{"33-character tag", "a", []string{strings.Repeat("t", 33)}},
		{"empty tag", "a", []string{""}},
		{"control character in a tag", "a", []string{"a\x1fb"}},
	} {
		_, err := testDB.pool.Exec(ctx, `INSERT INTO tasks (user_id, title, tags) VALUES ('constraint-test', $1, coalesce($2, '{}'::text[]))`, c.title, c.tags)
		if err == nil || !strings.Contains(err.Error(), "23514") {
			t.Errorf("%s: insert = %v, want a check violation", c.name, err)
		}
	}
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
		{"bad database URL", map[string]string{"BETTER_AUTH_SECRET": testSecret, "DATABASE_URL": "postgres://u:hunter2@[::1"}, "DATABASE_URL"},
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

func TestTaskLimit(t *testing.T) {
	const limit = 5
	e := newEnv(t, hsAuth(), func(c *config) { c.MaxTasks = limit })
	user := newUser(t)
	for i := range limit {
		e.create(user, map[string]any{"title": fmt.Sprint("task ", i)})
	}
	r := e.do("POST", "/api/"+user+"/tasks", tokenFor(t, user), map[string]any{"title": "one too many"})
	if r.status != 409 || decode[struct{ Detail string }](t, r).Detail == "" {
		t.Fatalf("create beyond the limit = %s, want 409 with a detail", r)
	}
	tasks, total := e.list(user, "")
	if total != limit {
		t.Fatalf("user holds %d tasks, want %d", total, limit)
	}
	// A delete frees a place; a delete that finds nothing frees none.
	e.want(e.do("DELETE", fmt.Sprintf("/api/%s/tasks/%d", user, tasks[0].ID), tokenFor(t, user), nil), 204, "DELETE")
	e.want(e.do("DELETE", fmt.Sprintf("/api/%s/tasks/%d", user, tasks[0].ID), tokenFor(t, user), nil), 404, "DELETE again")
	e.create(user, map[string]any{"title": "in the freed place"})
	e.want(e.do("POST", "/api/"+user+"/tasks", tokenFor(t, user), map[string]any{"title": "over again"}), 409, "create beyond the limit again")

	// Concurrent creates cannot overshoot: the user's count row makes them take turns.
	racer := newUser(t)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() { e.do("POST", "/api/"+racer+"/tasks", tokenFor(t, racer), map[string]any{"title": "race"}) })
	}
	wg.Wait()
	if _, total := e.list(racer, ""); total != limit {
		t.Fatalf("50 concurrent creates left %d tasks, want %d", total, limit)
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, hsAuth(), func(c *config) { c.RatePerSecond, c.RateBurst = 1, 3 })
	user, other := newUser(t), newUser(t)
	var limited result
	ok := 0
	for range 10 {
		r := e.do("GET", "/api/"+user+"/tasks", tokenFor(t, user), nil)
		switch r.status {
		case 200:
			ok++
		case 429:
			limited = r
		default:
			t.Fatalf("GET = %s, want 200 or 429", r)
		}
	}
	// 10 requests at 1/s with a burst of 3 cannot all pass unless they took 7 s.
	if limited.status != 429 || ok < 3 {
		t.Fatalf("%d of 10 passed, last refusal %v; want the first 3 to pass, then 429", ok, limited)
	}
	if ra, err := strconv.Atoi(limited.header.Get("Retry-After")); err != nil || ra < 1 || !json.Valid(limited.body) {
		t.Fatalf("429 with Retry-After %q and body %s", limited.header.Get("Retry-After"), limited.body)
	}
	e.want(e.do("GET", "/api/"+other+"/tasks", tokenFor(t, other), nil), 200, "another user while the first is limited")

	// The bucket itself, on a clock the test controls.
	l := newRateLimiter(1, 2)
	t0 := time.Now()
	for i, want := range []bool{true, true, false} {
		if got, _ := l.allow("u", t0); got != want {
			t.Fatalf("request %d at t0: allow = %v, want %v", i, got, want)
		}
	}
	if _, wait := l.allow("u", t0); wait <= 0 || wait > time.Second {
		t.Fatalf("wait = %v, want (0, 1s]", wait)
	}
	if ok, _ := l.allow("u", t0.Add(time.Second)); !ok {
		t.Fatal("no token a second later")
	}
	for i := range 1000 {
		l.allow(fmt.Sprint("idle-", i), t0)
	}
	l.allow("active", t0.Add(2*time.Minute))
	if n := len(l.buckets); n != 1 {
		t.Fatalf("%d buckets kept after everyone else went idle, want 1", n)
	}
	if newRateLimiter(0, 100) != nil {
		t.Fatal("RATE_LIMIT_PER_SECOND=0 should turn the limit off")
	}
}

func TestSizeLimits(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	path := "/api/" + user + "/tasks"
	big := hsToken(t, jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix(), "pad": strings.Repeat("p", 9000)})
	e.want(e.do("GET", path, big, nil), 401, "a validly signed token over 8 KiB")
	r := e.do("GET", path, tokenFor(t, user), nil, "X-Padding", strings.Repeat("h", 40<<10))
	if r.status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("40 KiB of headers = %s, want 431", r)
	}
	r = e.do("POST", path, tokenFor(t, user), `{"title":"`+strings.Repeat("x", 64<<10)+`"}`, "Content-Type", "application/json")
	if r.status != 413 || !json.Valid(r.body) {
		t.Fatalf("a 64 KiB body = %s, want a JSON 413", r)
	}
}

func TestPreviousSecret(t *testing.T) {
	const previous = "previous-secret-0123456789-abcdefghijkl"
	e := newEnv(t, authConfig{Secret: []byte(testSecret), Previous: []byte(previous)})
	user := newUser(t)
	path := "/api/" + user + "/tasks"
	claims := jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix()}
	e.want(e.do("GET", path, signed(t, jwt.SigningMethodHS256, []byte(previous), "", claims), nil), 200, "token signed with the previous secret")
	e.want(e.do("GET", path, tokenFor(t, user), nil), 200, "token signed with the current secret")
	e.want(e.do("GET", path, signed(t, jwt.SigningMethodHS256, []byte(previous+"x"), "", claims), nil), 401, "token signed with neither")

	_, err := loadConfig(func(k string) string {
		return map[string]string{"BETTER_AUTH_SECRET_PREVIOUS": previous, "BETTER_AUTH_URL": "http://localhost:3000"}[k]
	})
	if err == nil || !strings.Contains(err.Error(), "BETTER_AUTH_SECRET_PREVIOUS") {
		t.Fatalf("a previous secret without a current one: %v", err)
	}
}

// TestLogsHoldNoSecrets runs every kind of request with the log captured: each
// makes one line, and no line holds a token, the secret, a header or a body.
func TestLogsHoldNoSecrets(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	tok := tokenFor(t, user)
	const marker = "body-marker-7f3a"
	base := "/api/" + user + "/tasks"
	task := e.create(user, map[string]any{"title": marker, "description": marker})
	item := fmt.Sprintf("%s/%d", base, task.ID)
	badToken := tokenFor(t, user) + "tampered"
	requests := []func() result{
		func() result { return e.do("GET", base+"?q="+marker, tok, nil) },
		func() result { return e.do("GET", item, tok, nil) },
		func() result { return e.do("PUT", item, tok, map[string]any{"description": marker}) },
		func() result { return e.do("PATCH", item+"/complete", tok, nil) },
		func() result { return e.do("POST", base, tok, map[string]any{"title": marker, "titel": marker}) },
		func() result { return e.do("GET", base, badToken, nil) },
		func() result { return e.do("GET", base, "", nil, "Authorization", "Basic "+testSecret) },
		func() result { return e.do("GET", "/api/someone-else/tasks", tok, nil) },
		func() result { return e.do("DELETE", item, tok, nil) },
	}
	for _, req := range requests {
		req()
	}
	logs := e.logs.String()
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	if len(lines) != len(requests)+1 {
		t.Fatalf("%d log lines for %d requests:\n%s", len(lines), len(requests)+1, logs)
	}
	for _, line := range lines {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil || entry["route"] == nil || entry["status"] == nil {
			t.Fatalf("log line is not a request line: %s", line)
		}
	}
	for _, secret := range []string{tok, badToken, testSecret, marker, "Bearer", "Authorization", strings.Split(tok, ".")[2]} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds %q:\n%s", secret, logs)
		}
	}
}

// checkChange fails unless a decoded change satisfies every limit of the contract.
func checkChange(t *testing.T, c taskChange, create bool) {
	t.Helper()
	text := func(name, s string, lo, hi int) {
		if n := utf8.RuneCountInString(s); n < lo || n > hi || badText(s) != "" {
			t.Fatalf("%s %q: %d characters or bad text passed", name, s, n)
		}
	}
	if create && c.Title == nil {
		t.Fatal("a create without a title passed")
	}
	if c.Title != nil {
		text("title", *c.Title, 1, maxTitle)
		if strings.TrimSpace(*c.Title) != *c.Title {
			t.Fatalf("title %q is not trimmed", *c.Title)
		}
	}
	if c.Description != nil {
		text("description", *c.Description, 0, maxDescription)
	}
	if c.Priority != nil && !slices.Contains([]string{"low", "medium", "high"}, *c.Priority) {
		t.Fatalf("priority %q passed", *c.Priority)
	}
	if c.DueDate != nil && (c.DueDate.Year() < 1 || c.DueDate.Year() > 9999 || c.DueDate.Location() != time.UTC) {
		t.Fatalf("due_date %v passed", c.DueDate)
	}
	if len(c.Tags) > maxTags {
		t.Fatalf("%d tags passed", len(c.Tags))
	}
	for i, tag := range c.Tags {
		text("tag", tag, 1, maxTag)
		if slices.Contains(c.Tags[:i], tag) || strings.TrimSpace(tag) != tag {
			t.Fatalf("tags %q: duplicate or untrimmed", c.Tags)
		}
	}
	if c.ClearDesc && c.Description != nil || c.ClearDue && c.DueDate != nil {
		t.Fatal("a field is both set and cleared")
	}
}

// wantClientError fails unless err answers a 4xx with a JSON body.
func wantClientError(t *testing.T, err error) {
	t.Helper()
	w := httptest.NewRecorder()
	writeError(w, httptest.NewRequest("GET", "/", nil), err)
	if w.Code < 400 || w.Code > 499 || !json.Valid(w.Body.Bytes()) {
		t.Fatalf("error %v answers %d %s, want a JSON 4xx", err, w.Code, w.Body)
	}
}

func FuzzDecodeTask(f *testing.F) {
	f.Add([]byte(`{"title":"a","description":null,"priority":"high","due_date":"2026-12-01","tags":["x","x"]}`), true)
	f.Fuzz(func(t *testing.T, body []byte, create bool) {
		r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		c, err := decodeTask(httptest.NewRecorder(), r, create)
		if err != nil {
			wantClientError(t, err)
			return
		}
		checkChange(t, c, create)
	})
}

func FuzzListQuery(f *testing.F) {
	f.Add("status=pending&sort=due_date&order=desc&q=50%25&tag=a&tag=b&limit=10&offset=5")
	f.Fuzz(func(t *testing.T, raw string) {
		values, _ := url.ParseQuery(raw) // as r.URL.Query does, malformed pairs are dropped
		q, err := parseListQuery(values)
		if err != nil {
			wantClientError(t, err)
			return
		}
		if _, ok := listOrders[q.Sort]; !ok || q.Limit < 1 || q.Limit > maxLimit || q.Offset < 0 ||
			len(q.Tags) > maxTags || badText(q.Q) != "" || utf8.RuneCountInString(q.Q) > maxQuery {
			t.Fatalf("query %q passed as %+v", raw, q)
		}
		for _, tag := range q.Tags {
			if n := utf8.RuneCountInString(tag); n < 1 || n > maxTag || badText(tag) != "" {
				t.Fatalf("tag %q passed", tag)
			}
		}
	})
}

// FuzzVerify feeds the verifier tokens: whatever verifies has a usable user id,
// and whatever fails is a 401.
func FuzzVerify(f *testing.F) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"keys": []any{jwkOf(f, "ed", edKey.Public())}})
	}))
	defer ks.Close()
	v := newVerifier(authConfig{Secret: []byte(testSecret), JWKSURL: ks.URL}, ks.Client(), slog.New(slog.NewJSONHandler(io.Discard, nil)))
	exp := time.Now().Add(time.Hour).Unix()
	f.Add(must(jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "u1", "exp": exp}).SignedString([]byte(testSecret))))
	ed := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"sub": "u1", "exp": exp})
	ed.Header["kid"] = "ed"
	f.Add(must(ed.SignedString(edKey)))
	f.Fuzz(func(t *testing.T, token string) {
		sub, err := v.verify(token)
		if err != nil {
			var se *statusError
			if !errors.As(err, &se) || se.status != 401 {
				t.Fatalf("verify(%q) = %v, want a 401", token, err)
			}
			return
		}
		if !validUserID(sub) {
			t.Fatalf("verify(%q) passed with sub %q", token, sub)
		}
	})
}

// FuzzHandler sends anything through the real handler and database, with a
// valid token or a fuzzed Authorization header: the answer is never a 5xx, and
// any body is JSON.
func FuzzHandler(f *testing.F) {
	const user = "fuzz-user"
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	h := newServer(log, testDB, testConfig(hsAuth(), func(c *config) { c.MaxTasks = 200 }))
	tok := hsToken(f, jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix()})
	f.Add("POST", "", "", true, "application/json", []byte(`{"title":"a","tags":["x"],"due_date":"2026-12-01T00:00:00+02:00"}`))
	f.Fuzz(func(t *testing.T, method, suffix, authorization string, useToken bool, ctype string, body []byte) {
		req, err := http.NewRequest(method, "http://api.test/api/"+user+"/tasks"+suffix, bytes.NewReader(body))
		if err != nil {
			return // not a request a client can send
		}
		req.Header.Set("Authorization", authorization)
		if useToken {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		req.Header.Set("Content-Type", ctype)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %q = %d %s", method, suffix, w.Code, w.Body)
		}
		if w.Body.Len() > 0 && (!json.Valid(w.Body.Bytes()) || w.Header().Get("Content-Type") != "application/json") {
			t.Fatalf("%s %q = %d with a body that is not JSON: %q", method, suffix, w.Code, w.Body)
		}
	})
}

func TestConditionalRequests(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	tok := tokenFor(t, user)
	r := e.do("POST", "/api/"+user+"/tasks", tok, map[string]any{"title": "shared"})
	e.want(r, 201, "create")
	v1 := r.header.Get("ETag")
	task := decode[Task](t, r)
	item := fmt.Sprintf("/api/%s/tasks/%d", user, task.ID)
	if !strings.HasPrefix(v1, `"`) || strings.HasPrefix(v1, "W/") {
		t.Fatalf("ETag = %q, want a strong tag", v1)
	}
	if got := e.do("GET", item, tok, nil).header.Get("ETag"); got != v1 {
		t.Fatalf("GET ETag = %q, want %q", got, v1)
	}
	r = e.do("GET", item, tok, nil, "If-None-Match", v1)
	if r.status != 304 || len(r.body) != 0 || r.header.Get("ETag") != v1 {
		t.Fatalf("GET If-None-Match current = %s, want an empty 304", r)
	}

	// The laptop saves first; the phone, still holding v1, is refused and told the current ETag.
	r = e.do("PATCH", item, tok, map[string]any{"title": "from the laptop"}, "If-Match", v1)
	e.want(r, 200, "PATCH If-Match current")
	v2 := r.header.Get("ETag")
	if v2 == v1 || v2 == "" {
		t.Fatalf("ETag after a write = %q, was %q", v2, v1)
	}
	for _, c := range []struct {
		method, suffix string
		body           any
	}{{"PUT", "", map[string]any{"title": "from the phone"}}, {"PATCH", "", map[string]any{"title": "from the phone"}},
		{"PATCH", "/complete", nil}, {"DELETE", "", nil}} {
		r = e.do(c.method, item+c.suffix, tok, c.body, "If-Match", v1)
		if r.status != 412 || r.header.Get("ETag") != v2 || !strings.Contains(decode[struct{ Detail string }](t, r).Detail, v2) {
			t.Fatalf("stale %s %s = %s (ETag %q), want 412 naming %s", c.method, c.suffix, r, r.header.Get("ETag"), v2)
		}
	}
	got := decode[Task](t, e.do("GET", item, tok, nil))
	if got.Title != "from the laptop" || got.Completed || etag(got) != v2 {
		t.Fatalf("a stale write changed the task: %+v", got)
	}
	e.want(e.do("GET", item, tok, nil, "If-None-Match", v1), 200, "GET If-None-Match stale")
	e.want(e.do("PATCH", item, tok, map[string]any{"priority": "low"}, "If-Match", "*"), 200, "If-Match *")
	e.want(e.do("PATCH", item, tok, map[string]any{"priority": "low"}, "If-Match", "garbage"), 412, "If-Match that matches nothing")
	v3 := e.do("GET", item, tok, nil).header.Get("ETag")
	r = e.do("PATCH", item+"/complete", tok, nil, "If-Match", v1+", "+v3)
	e.want(r, 200, "toggle If-Match list holding the current")
	e.want(e.do("DELETE", item, tok, nil, "If-Match", r.header.Get("ETag")), 204, "DELETE If-Match current")
	e.want(e.do("DELETE", item, tok, nil, "If-Match", v1), 404, "DELETE If-Match on a deleted task")
	e.want(e.do("PATCH", fmt.Sprintf("/api/%s/tasks/%d", newUser(t), task.ID), "", nil), 401, "no token")
}

func TestIdempotencyKey(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	tok := tokenFor(t, user)
	base := "/api/" + user + "/tasks"
	body := map[string]any{"title": "pay rent", "tags": []string{"home"}}

	first := e.do("POST", base, tok, body, "Idempotency-Key", "key-1")
	e.want(first, 201, "first POST with a key")
	retry := e.do("POST", base, tok, `{"tags":["home"], "title":"pay rent"}`, "Idempotency-Key", "key-1", "Content-Type", "application/json")
	if retry.status != 201 || !bytes.Equal(retry.body, first.body) || retry.header.Get("Location") != first.header.Get("Location") ||
		retry.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry = %s %v, want the first answer %s", retry, retry.header, first)
	}
	wantLoc(t, e.do("POST", base, tok, map[string]any{"title": "pay rent twice"}, "Idempotency-Key", "key-1"), "header", "Idempotency-Key")
	wantLoc(t, e.do("POST", base, tok, body, "Idempotency-Key", "has space"), "header", "Idempotency-Key")
	wantLoc(t, e.do("POST", base, tok, body, "Idempotency-Key", strings.Repeat("k", 256)), "header", "Idempotency-Key")
	if _, total := e.list(user, ""); total != 1 {
		t.Fatalf("%d tasks after a create and its retries, want 1", total)
	}
	// Keys belong to their user.
	other := newUser(t)
	r := e.do("POST", "/api/"+other+"/tasks", tokenFor(t, other), body, "Idempotency-Key", "key-1")
	if r.status != 201 || decode[Task](t, r).ID == decode[Task](t, first).ID {
		t.Fatalf("another user's create with the same key = %s", r)
	}

	// 50 concurrent POSTs with one key create exactly one task, and all answer it.
	racer := newUser(t)
	var wg sync.WaitGroup
	ids := make(chan int64, 50)
	for range 50 {
		wg.Go(func() {
			r := e.do("POST", "/api/"+racer+"/tasks", tokenFor(t, racer), body, "Idempotency-Key", "one-key")
			if r.status != 201 {
				t.Errorf("concurrent POST = %s", r)
				return
			}
			ids <- decode[Task](t, r).ID
		})
	}
	wg.Wait()
	close(ids)
	seen := map[int64]int{}
	for id := range ids {
		seen[id]++
	}
	if _, total := e.list(racer, ""); total != 1 || len(seen) != 1 {
		t.Fatalf("50 concurrent POSTs with one key: %d tasks, answered ids %v", total, seen)
	}

	// Keys past their lifetime are deleted; fresh ones stay.
	if _, err := testDB.pool.Exec(context.Background(), `UPDATE idempotency_keys SET created_at = now() - interval '25 hours'
		WHERE user_id = $1`, user); err != nil {
		t.Fatal(err)
	}
	if _, err := testDB.deleteOldKeys(context.Background()); err != nil {
		t.Fatal(err)
	}
	var left int
	testDB.pool.QueryRow(context.Background(), `SELECT count(*) FROM idempotency_keys WHERE user_id = ANY($1)`, []string{user, racer}).Scan(&left)
	if left != 1 {
		t.Fatalf("%d keys left, want only the racer's", left)
	}
}

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
	db, err := openStore(p.url(extra), timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.pool.Close)
	return newEnvDB(t, db, testConfig(hsAuth())), p
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

func TestFaultBlackhole(t *testing.T) {
	const timeout = 500 * time.Millisecond
	e, proxy := faultEnv(t, timeout, "")
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

func TestFaultPoolExhausted(t *testing.T) {
	const timeout = time.Second
	e, proxy := faultEnv(t, timeout, "pool_max_conns=1")
	waitReady(t, e)
	proxy.set("slow") // each statement now takes 200 ms or more on the one connection
	ctx, stop := context.WithTimeout(context.Background(), 3*time.Second)
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

// TestOpenAPIMatchesRoutes fails when a route in the route table is missing
// from openapi.json, or the document names a route the server lacks.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Fatalf("openapi.json: %v (version %q)", err, doc.OpenAPI)
	}
	var documented []string
	for path, item := range doc.Paths {
		for method := range item {
			if method != "parameters" {
				documented = append(documented, strings.ToUpper(method)+" "+path)
			}
		}
	}
	served := slices.Clone(newServer(slog.New(slog.DiscardHandler), testDB, testConfig(hsAuth())).(*middleware).routes)
	slices.Sort(documented)
	slices.Sort(served)
	if !slices.Equal(documented, served) {
		t.Fatalf("openapi.json documents\n%s\nthe server routes\n%s", strings.Join(documented, "\n"), strings.Join(served, "\n"))
	}

	e := newEnv(t, hsAuth())
	r := e.do("GET", "/openapi.json", "", nil)
	if r.status != 200 || !bytes.Equal(r.body, openAPI) || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /openapi.json = %d %q", r.status, r.header.Get("Content-Type"))
	}
	r = e.do("GET", "/docs", "", nil)
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") || !bytes.Contains(r.body, []byte(`"/openapi.json"`)) {
		t.Fatalf("GET /docs = %s", r)
	}
}

// benchUsers seeds users × tasks for the benchmarks and returns their ids and tokens.
func benchUsers(b *testing.B, users, tasks int) ([]string, []string) {
	b.Helper()
	run := rand.Text()[:8]
	ids, toks := make([]string, users), make([]string, users)
	for u := range users {
		ids[u] = fmt.Sprintf("bench-%s-%04d", run, u)
		toks[u] = must(mintToken([]byte(testSecret), ids[u], time.Hour))
	}
	_, err := testDB.pool.Exec(context.Background(), `INSERT INTO tasks (user_id, title, description, tags)
		SELECT ($1::text[])[u], 'Seed task ' || k, CASE WHEN k % 2 = 0 THEN 'description ' || k END, '{home}'
		FROM generate_series(1, cardinality($1::text[])) u, generate_series(1, $2) k`, ids, tasks)
	if err != nil {
		b.Fatal(err)
	}
	return ids, toks
}

// BenchmarkRoutes measures each route through the real handler and database,
// in process (no sockets): the CPU this service spends per request, plus the wait for PostgreSQL.
//
//	go test -run '^$' -bench Routes -benchmem
func BenchmarkRoutes(b *testing.B) {
	h := newServer(slog.New(slog.NewJSONHandler(io.Discard, nil)), testDB, testConfig(hsAuth()))
	users, toks := benchUsers(b, 100, 20)
	var taskIDs [][]int64
	for _, u := range users {
		var ids []int64
		rows, _ := testDB.pool.Query(context.Background(), `SELECT id FROM tasks WHERE user_id = $1`, u)
		for rows.Next() {
			var id int64
			rows.Scan(&id)
			ids = append(ids, id)
		}
		taskIDs = append(taskIDs, ids)
	}
	serve := func(b *testing.B, method string, path func(u int, id int64) string, body string, want int) {
		var next atomic.Int64
		b.ReportAllocs()
		// This process's CPU per request (the handler, pgx and the test's own request
		// building; not PostgreSQL's): steadier than ns/op on a shared machine.
		cpu := processCPU()
		defer func() { b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/op") }()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				n := next.Add(1)
				u := int(n % int64(len(users)))
				req := httptest.NewRequest(method, path(u, taskIDs[u][n%20]), strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+toks[u])
				if body != "" {
					req.Header.Set("Content-Type", "application/json")
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != want {
					b.Fatalf("%s = %d %s", method, w.Code, w.Body)
				}
			}
		})
	}
	list := func(u int, _ int64) string { return "/api/" + users[u] + "/tasks" }
	item := func(u int, id int64) string { return fmt.Sprintf("/api/%s/tasks/%d", users[u], id) }
	b.Run("list20", func(b *testing.B) { serve(b, "GET", list, "", 200) })
	b.Run("list20_all_params", func(b *testing.B) {
		serve(b, "GET", func(u int, _ int64) string {
			return "/api/" + users[u] + "/tasks?status=pending&sort=title&order=desc&q=task&tag=home&limit=20"
		}, "", 200)
	})
	b.Run("list_page_of_more", func(b *testing.B) { // more tasks follow the page: the page, then a count
		serve(b, "GET", func(u int, _ int64) string { return "/api/" + users[u] + "/tasks?limit=10&offset=5" }, "", 200)
	})
	b.Run("get", func(b *testing.B) { serve(b, "GET", item, "", 200) })
	b.Run("get_EdDSA", func(b *testing.B) { // the same with Better Auth's tokens, from a JWKS
		_, key, _ := ed25519.GenerateKey(rand.Reader)
		ks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			json.NewEncoder(w).Encode(map[string]any{"keys": []any{jwkOf(b, "ed", key.Public())}})
		}))
		defer ks.Close()
		hs, hsHandler := toks, h
		toks = make([]string, len(users))
		for u, id := range users {
			toks[u] = signed(b, jwt.SigningMethodEdDSA, key, "ed", jwt.MapClaims{"sub": id, "exp": time.Now().Add(time.Hour).Unix()})
		}
		defer func() { toks, h = hs, hsHandler }()
		h = newServer(slog.New(slog.NewJSONHandler(io.Discard, nil)), testDB, testConfig(authConfig{Secret: []byte(testSecret), JWKSURL: ks.URL}))
		serve(b, "GET", item, "", 200)
	})
	b.Run("update", func(b *testing.B) {
		serve(b, "PUT", item, `{"title":"Updated","description":"changed under load"}`, 200)
	})
	b.Run("toggle", func(b *testing.B) {
		serve(b, "PATCH", func(u int, id int64) string { return item(u, id) + "/complete" }, "", 200)
	})
	b.Run("create", func(b *testing.B) {
		serve(b, "POST", list, `{"title":"Load task","description":"created under load"}`, 201)
	})
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkVerify measures token verification alone, per algorithm.
func BenchmarkVerify(b *testing.B) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"keys": []any{jwkOf(b, "ed", edKey.Public()), jwkOf(b, "rsa", &rsaKey.PublicKey)}})
	}))
	defer ks.Close()
	v := newVerifier(authConfig{Secret: []byte(testSecret), JWKSURL: ks.URL}, ks.Client(), slog.New(slog.DiscardHandler))
	claims := jwt.MapClaims{"sub": "bench-user", "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
		"email": "bench@example.com", "name": "Bench User", "iss": "http://localhost:3000", "aud": "http://localhost:3000"}
	for _, c := range []struct {
		name  string
		token string
	}{
		{"HS256", signed(b, jwt.SigningMethodHS256, []byte(testSecret), "", claims)},
		{"EdDSA", signed(b, jwt.SigningMethodEdDSA, edKey, "ed", claims)},
		{"RS256", signed(b, jwt.SigningMethodRS256, rsaKey, "rsa", claims)},
	} {
		b.Run(c.name+"/repeat", func(b *testing.B) { // a client's next request: the token is known
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := v.verify(c.token); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
		b.Run(c.name+"/first", func(b *testing.B) { // a token's first use: parse and check the signature
			b.ReportAllocs()
			for b.Loop() {
				clear(v.verified)
				if _, err := v.verify(c.token); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// checkAppendTask fails unless appendTask writes valid JSON that reads back as t,
// and as json.Marshal's output reads back.
func checkAppendTask(t *testing.T, task Task) {
	t.Helper()
	got := appendTask(nil, &task)
	want, err := json.Marshal(task)
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	if err := json.Unmarshal(got, &a); err != nil {
		t.Fatalf("appendTask wrote invalid JSON %s: %v", got, err)
	}
	json.Unmarshal(want, &b)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("appendTask = %s\njson.Marshal = %s", got, want)
	}
}

func TestAppendTask(t *testing.T) {
	due := time.Date(2026, 12, 1, 17, 0, 0, 123456000, time.UTC)
	for _, s := range []string{"", "plain", `quote " backslash \ slash /`, "tab\tnew\nline\rcr", "\x00\x01\x1f\x7f",
		"<html>&amp;", "日本語 é 🎉", "line\u2028para\u2029", "bad \xff\xfe utf8", "\ufffd literal", "\xed\xa0\x80 surrogate"} {
		checkAppendTask(t, Task{ID: 1 << 40, UserID: s, Title: s, Description: &s, Priority: "high", DueDate: &due,
			Tags: []string{s, "x"}, CreatedAt: due, UpdatedAt: due.Add(time.Microsecond)})
	}
	checkAppendTask(t, Task{ID: 7, Tags: []string{}, CreatedAt: time.Unix(0, 0).UTC(), UpdatedAt: time.Unix(1, 0).UTC()})
}

func FuzzAppendTask(f *testing.F) {
	f.Add("title", "description", "tag", int64(1), int64(1795680000123456), true)
	f.Fuzz(func(t *testing.T, title, description, tag string, id, micros int64, completed bool) {
		ts := time.UnixMicro(int64(uint64(micros) % 253402300799000000)).UTC() // within years 1970 to 9999
		checkAppendTask(t, Task{ID: id, UserID: tag, Title: title, Description: &description, Completed: completed,
			Priority: "low", DueDate: &ts, Tags: []string{tag, title}, CreatedAt: ts, UpdatedAt: ts})
	})
}

// TestVerifiedTokenCacheExpires: a remembered token stops working when it expires.
func TestVerifiedTokenCacheExpires(t *testing.T) {
	v := newVerifier(hsAuth(), http.DefaultClient, slog.New(slog.DiscardHandler))
	expired := hsToken(t, jwt.MapClaims{"sub": "u1", "exp": time.Now().Add(-time.Minute).Unix()})
	v.verified[expired] = verifiedToken{sub: "u1", expires: time.Now().Add(-time.Minute)}
	if _, err := v.verify(expired); err != errExpiredToken {
		t.Fatalf("an expired token the cache remembers: verify = %v, want %v", err, errExpiredToken)
	}
	fresh := tokenFor(t, "u2")
	if sub, err := v.verify(fresh); err != nil || sub != "u2" || v.verified[fresh].sub != "u2" {
		t.Fatalf("a fresh token: verify = %q, %v; remembered %+v", sub, err, v.verified[fresh])
	}
}

// TestScanTaskFromBinary: tasks decoded from the binary format by taskFromBinary
// equal what pgx's Scan makes of the same rows, read over the simple protocol
// (text format, where scanTask leaves every row to pgx).
func TestScanTaskFromBinary(t *testing.T) {
	ctx := context.Background()
	user := newUser(t)
	_, err := testDB.pool.Exec(ctx, `INSERT INTO tasks (user_id, title, description, completed, priority, due_date, tags, created_at) VALUES
		($1, 'plain', NULL, false, 'medium', NULL, '{}', now()),
		($1, '日本語 "quoted" \ é 🎉', 'tab	and
newline', true, 'high', '1969-07-20 20:17:40.5+00', '{"a,b","c d","{e}","\"f\""}', '1999-12-31 23:59:59.999999+00'),
		($1, 't', '', false, 'low', '9999-12-31 23:59:59.999999+00', '{x}', '0001-01-01 00:00:00+00')`, user)
	if err != nil {
		t.Fatal(err)
	}
	simple, err := openStore(testURL+"&default_query_exec_mode=simple_protocol", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer simple.pool.Close()
	q, _ := parseListQuery(url.Values{})
	viaBinary, _, err := testDB.listTasks(ctx, user, q)
	if err != nil {
		t.Fatal(err)
	}
	viaPgx, _, err := simple.listTasks(ctx, user, q)
	if err != nil {
		t.Fatal(err)
	}
	if len(viaBinary) != 3 || !reflect.DeepEqual(viaBinary, viaPgx) {
		t.Fatalf("binary decoding:\n%+v\npgx's Scan:\n%+v", viaBinary, viaPgx)
	}
	// And unless the test database is read in a mode whose results are text (exec,
	// simple_protocol), the rows really were decoded by taskFromBinary.
	if strings.Contains(testURL, "exec_mode=exec") || strings.Contains(testURL, "exec_mode=simple_protocol") {
		return
	}
	rows, err := testDB.pool.Query(ctx, `SELECT `+taskColumns+` FROM tasks WHERE user_id = $1`, user)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		if _, ok := taskFromBinary(rows.FieldDescriptions(), rows.RawValues()); !ok {
			t.Fatalf("taskFromBinary refused a row of %v", rows.FieldDescriptions())
		}
	}
}

// FuzzTaskFromBinary holds taskFromBinary to pgx's own binary codecs on arbitrary
// tags and timestamps: whatever it accepts, pgx must read the same way.
func FuzzTaskFromBinary(f *testing.F) {
	m := pgtype.NewMap()
	encode := func(oid uint32, v any) []byte { return must(m.Encode(oid, pgtype.BinaryFormatCode, v, nil)) }
	f.Add(encode(pgtype.TextArrayOID, []string{"a", `b,"c"`, "日本"}), encode(pgtype.TimestamptzOID, time.Date(2026, 11, 26, 12, 0, 0, 123456000, time.UTC)))
	f.Add(encode(pgtype.TextArrayOID, []string{}), encode(pgtype.TimestamptzOID, time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)))
	fields := make([]pgconn.FieldDescription, len(taskColumnTypes))
	for i, oid := range taskColumnTypes {
		fields[i] = pgconn.FieldDescription{DataTypeOID: oid, Format: pgx.BinaryFormatCode}
	}
	id := encode(pgtype.Int8OID, int64(7))
	f.Fuzz(func(t *testing.T, tags, ts []byte) {
		got, ok := taskFromBinary(fields, [][]byte{id, []byte("u"), []byte("t"), nil, {1}, []byte("low"), ts, tags, ts, ts})
		if !ok {
			return
		}
		var wantTags []string
		var wantTime time.Time
		if err := m.Scan(pgtype.TextArrayOID, pgtype.BinaryFormatCode, tags, &wantTags); err != nil {
			t.Fatalf("tags %x: decoded as %q, pgx: %v", tags, got.Tags, err)
		}
		if err := m.Scan(pgtype.TimestamptzOID, pgtype.BinaryFormatCode, ts, &wantTime); err != nil {
			t.Fatalf("timestamp %x: decoded as %v, pgx: %v", ts, got.CreatedAt, err)
		}
		if !slices.Equal(got.Tags, wantTags) && len(got.Tags)+len(wantTags) > 0 || !got.CreatedAt.Equal(wantTime) || !got.DueDate.Equal(wantTime) {
			t.Fatalf("tags %x, timestamp %x: decoded %q %v, pgx %q %v", tags, ts, got.Tags, got.CreatedAt, wantTags, wantTime)
		}
	})
}
