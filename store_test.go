// store_test.go tests the store: the schema's constraints, and the answers when the database cannot be reached.
package main

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSchemaConstraints(t *testing.T) {
	ctx := context.Background()
	// Replicas starting at once: the migrations apply cleanly under their advisory lock.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := testDB.migrate(ctx, slog.New(slog.DiscardHandler)); err != nil {
				t.Errorf("migrating again: %v", err)
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
