// bench_test.go measures each route through the real handler and database, and token verification alone.
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

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
