// http_test.go tests the middleware: routing, trailing slashes, JSON 404/405, security headers, CORS, the log line, and the handler under fuzzing.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

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

// FuzzHandler sends anything through the real handler and database, with a
// valid token or a fuzzed Authorization header: the answer is never a 5xx, and
// any body is JSON.
func FuzzHandler(f *testing.F) {
	const user = "fuzz-user"
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	h := testServer(log, testDB, testConfig(hsAuth(), func(c *config) { c.MaxTasks = 200 }))
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
		if w.Code >= 500 || w.Code >= 300 && w.Code < 400 && w.Code != 304 || w.Header().Get("Location") != "" && w.Code != 201 {
			t.Fatalf("%s %q = %d %s (Location %q)", method, suffix, w.Code, w.Body, w.Header().Get("Location"))
		}
		if w.Body.Len() > 0 && (!json.Valid(w.Body.Bytes()) || w.Header().Get("Content-Type") != "application/json") {
			t.Fatalf("%s %q = %d with a body that is not JSON: %q", method, suffix, w.Code, w.Body)
		}
	})
}

// TestResponseControllerReachesConn checks that http.ResponseController sees
// through the middleware's responseWriter, as a streaming handler needs.
func TestResponseControllerReachesConn(t *testing.T) {
	rec := httptest.NewRecorder()
	rc := http.NewResponseController(&responseWriter{ResponseWriter: rec, status: http.StatusOK})
	if err := rc.Flush(); err != nil || !rec.Flushed {
		t.Fatalf("Flush through responseWriter = %v (flushed %v), want nil", err, rec.Flushed)
	}
}

// TestNoRedirects: a path with an empty segment, . or .. is not found, never
// redirected to a cleaned path (re-escaped, or another route), and does nothing.
func TestNoRedirects(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := "al ice " + newUser(t) // a user id with spaces, escaped in paths
	tok := tokenFor(t, user)
	base := "/api/" + url.PathEscape(user) + "/tasks"
	task := e.create(user, map[string]any{"title": "stays open"})
	item := fmt.Sprintf("%s/%d", base, task.ID)
	for _, c := range [][2]string{
		{"GET", "/api/" + url.PathEscape(user) + "//tasks"},
		{"GET", base + "//"},
		{"GET", "/" + base},
		{"PATCH", item + "/complete/.."},
		{"PATCH", item + "/complete/%2e%2e"},
		{"PATCH", item + "/./complete"},
		{"PUT", item + "/complete/.."},
		{"DELETE", item + "/x/.."},
		{"GET", "/../healthz"},
		{"GET", "/healthz/."},
	} {
		r := e.do(c[0], c[1], tok, `{"completed":true}`, "Content-Type", "application/json")
		if r.status != 404 || r.header.Get("Location") != "" || !json.Valid(r.body) {
			t.Errorf("%s %s = %s (Location %q), want a JSON 404 without Location", c[0], c[1], r, r.header.Get("Location"))
		}
	}
	if got := decode[Task](t, e.do("GET", item, tok, nil)); got.Completed || got.UpdatedAt != task.UpdatedAt {
		t.Fatalf("after unclean paths the task is %+v, want it unchanged", got)
	}
	e.want(e.do("GET", base+"/", tok, nil), 200, "a single trailing slash")
	// An absolute-form target with an empty path reaches the mux as "", which it
	// would redirect to "/": the only redirect left, which responseWriter turns into a 404.
	conn := must(net.Dial("tcp", e.srv.Listener.Addr().String()))
	defer conn.Close()
	fmt.Fprintf(conn, "GET http://%s HTTP/1.1\r\nHost: %[1]s\r\nConnection: close\r\n\r\n", e.srv.Listener.Addr())
	resp := must(http.ReadResponse(bufio.NewReader(conn), nil))
	resp.Body.Close()
	if resp.StatusCode != 404 || resp.Header.Get("Location") != "" {
		t.Fatalf("GET http://host (empty path) = %d, Location %q; want 404 without Location", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestOneSpellingPerPath: an escaped slash belongs to its segment, a task has
// one id, and a user id with an escaped slash keeps its single trailing slash.
func TestOneSpellingPerPath(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := "al/ice " + newUser(t)
	tok := tokenFor(t, user)
	base := "/api/" + url.PathEscape(user) + "/tasks"
	r := e.do("POST", base, tok, map[string]any{"title": "one"})
	e.want(r, 201, "create for a user id with an escaped slash")
	task := decode[Task](t, r)
	item := fmt.Sprintf("%s/%d", base, task.ID)
	e.want(e.do("GET", base+"/", tok, nil), 200, "a user id with an escaped slash, and a trailing slash")
	for _, c := range [][2]string{{"POST", base + "%2F"}, {"PATCH", item + "%2F"}, {"DELETE", item + "%2F"},
		{"GET", fmt.Sprintf("%s/0%d", base, task.ID)}, {"GET", fmt.Sprintf("%s/+%d", base, task.ID)}, {"DELETE", fmt.Sprintf("%s/0%d", base, task.ID)}} {
		if r := e.do(c[0], c[1], tok, `{"title":"x"}`, "Content-Type", "application/json"); r.status != 404 && r.status != 422 {
			t.Errorf("%s %s = %s, want 404 or 422", c[0], c[1], r)
		}
	}
	if tasks := decode[[]Task](t, e.do("GET", base, tok, nil)); len(tasks) != 1 || tasks[0].UpdatedAt != task.UpdatedAt {
		t.Fatalf("the user has %+v, want the one task unchanged: a refused path did something", tasks)
	}
	// Two Content-Types, or a charset that is not UTF-8: 415. Two If-Match lines are one list.
	send := func(method, path string, header http.Header, body string) int {
		req := must(http.NewRequest(method, e.srv.URL+path, strings.NewReader(body)))
		req.Header = header
		req.Header.Set("Authorization", "Bearer "+tok)
		resp := must(e.srv.Client().Do(req))
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, ct := range [][]string{{"text/plain", "application/json"}, {"application/json", "text/plain"},
		{"application/json; charset=latin-1"}, {"application/json; charset=utf-16"}} {
		if got := send("PATCH", item, http.Header{"Content-Type": ct}, `{"title":"x"}`); got != 415 {
			t.Errorf("Content-Type %q = %d, want 415", ct, got)
		}
	}
	for _, charset := range []string{"UTF-8", "utf-8", "utf8"} {
		if got := send("PATCH", item, http.Header{"Content-Type": {"application/json; charset=" + charset}}, `{"title":"utf8"}`); got != 200 {
			t.Errorf("charset=%s = %d, want 200", charset, got)
		}
	}
	current := e.do("GET", item, tok, nil).header.Get("ETag")
	if got := send("PATCH", item, http.Header{"Content-Type": {"application/json"}, "If-Match": {`"1"`, current}}, `{"title":"listed"}`); got != 200 {
		t.Errorf("If-Match on two lines, the second current = %d, want 200", got)
	}
}
