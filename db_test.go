// db_test.go tests how driver and network errors become store errors and statuses.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

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

// TestStoreErrorClasses holds storeError to its rule: 503 only on evidence that
// the database could not be reached or serve; a rejected value 422; the rest a bug.
func TestStoreErrorClasses(t *testing.T) {
	pg := func(code string) error { return fmt.Errorf("exec: %w", &pgconn.PgError{Code: code}) }
	// A real connect error that carries an SQLSTATE: 3D000, no such database.
	u := must(url.Parse(testURL))
	u.Path = "/no_such_database"
	_, connectErr := pgx.Connect(context.Background(), u.String())
	if _, ok := errors.AsType[*pgconn.ConnectError](connectErr); !ok {
		t.Fatalf("connecting to a missing database = %v, want a *pgconn.ConnectError", connectErr)
	}
	for _, c := range []struct {
		name string
		err  error
		want error // nil: passes through, for a 500
	}{
		{"no row", pgx.ErrNoRows, errNotFound},
		{"connect error with an SQLSTATE (3D000)", connectErr, errUnavailable},
		{"statement timeout (57014)", pg("57014"), errUnavailable},
		{"admin shutdown (57P01)", pg("57P01"), errUnavailable},
		{"too many connections (53300)", pg("53300"), errUnavailable},
		{"connection failure (08006)", pg("08006"), errUnavailable},
		{"deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), errUnavailable},
		{"network", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, errUnavailable},
		{"EOF mid-answer", fmt.Errorf("receive message: %w", io.ErrUnexpectedEOF), errUnavailable},
		{"connection closed", fmt.Errorf("query: %w", pgconn.ErrConnClosed), errUnavailable},
		{"check violation (23514)", pg("23514"), errRejected},
		{"data exception (22001)", pg("22001"), errRejected},
		{"unique violation (23505)", pg("23505"), nil},
		{"undefined column (42703)", pg("42703"), nil},
		{"scan", errors.New("can't scan into dest[7]: cannot scan int4 into *[]string"), nil},
		{"encode", fmt.Errorf("failed to encode args[3]: %w", errors.New("unable to encode")), nil},
	} {
		got := storeError(c.err)
		if c.want == nil && (errors.Is(got, errUnavailable) || errors.Is(got, errRejected) || errors.Is(got, errNotFound)) ||
			c.want != nil && !errors.Is(got, c.want) {
			t.Errorf("%s: storeError = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestNonPostgresError500 breaks the table under the real handler, so that
// reading a task fails in pgx rather than in PostgreSQL: that is a bug, a 500
// the client should not retry, with its cause on the log line only.
func TestNonPostgresError500(t *testing.T) {
	ctx := context.Background()
	db := testStore(t, newDatabase(t, ""), 5*time.Second)
	if err := db.migrate(ctx, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	user := newUser(t)
	var id int64
	err := db.pool.QueryRow(ctx, `INSERT INTO tasks (user_id, version, title, position) VALUES ($1, 1, 'broken', task_position_first(1)) RETURNING id`, user).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	// A column whose values pgx cannot turn into the Task's field.
	if _, err := db.pool.Exec(ctx, `ALTER TABLE tasks ALTER COLUMN tags DROP DEFAULT, ALTER COLUMN tags TYPE point USING point(1, 2)`); err != nil {
		t.Fatal(err)
	}
	e := newEnvDB(t, db, testConfig(hsAuth()))
	for _, path := range []string{"/api/" + user + "/tasks", fmt.Sprintf("/api/%s/tasks/%d", user, id)} {
		r := e.do("GET", path, tokenFor(t, user), nil)
		if r.status != 500 || r.header.Get("Retry-After") != "" || string(r.body) != `{"detail":"Internal Server Error"}`+"\n" {
			t.Errorf("GET %s = %s with Retry-After %q, want a generic 500 without it", path, r, r.header.Get("Retry-After"))
		}
	}
	n := 0
	for l := range strings.Lines(e.logs.String()) {
		var line struct{ Level, Err string }
		json.Unmarshal([]byte(l), &line)
		if n++; line.Level != "ERROR" || line.Err == "" || strings.Contains(line.Err, "unavailable") {
			t.Errorf("log line %s: want level ERROR and the cause, not unavailable", l)
		}
	}
	if n != 2 {
		t.Errorf("%d log lines for 2 requests", n)
	}
}
