// migrate_test.go tests the migrations: their numbering, that released ones never change, and upgrades in place.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// releasedMigrations are the SHA-256 sums of the migrations released so far, in
// order. A database records a migration once and never runs it again, so an
// edit of one of them would never reach a database: append a migration instead,
// and its sum here.
var releasedMigrations = []string{
	"5327a752fed5034fcff1ff9c9a5c96b6659223a03542deaf75e202b70ea09d71", // migration 1
	"9241f9ecde340a3de1ae3ac3d9695f743602382c00072e18eed11f413f81147e", // migration 2
	"8a6b18e7bf55288a90f94affd0a9a371051d2028cf75c6302cdabdcd7cd445a2", // migration 3
	"9677e57a4da9818238a254650fd74ac10c0822d9ea9b3ea8338038eeba7e3ff4", // migration 4
	"855dd6ac30c752e565851afd7115b44ca07d53385cb98f41e41273addd890609", // migration 5
	"4294a22dca5d1f56908dd95aecd42a7e3f02fcab2f7d32ef969a3bf8a2dd1aaa", // migration 6
	"0082073edae12cd6fe11d5a956558bc5ea7b50c8bbdef64255114c31549d3338", // migration 7
	"5eb668e322001378bfb3fa54a5988b8d1e06ec14b20b8a43a2b06d9b2cd127cc", // migration 8
	"7c311256b5c4899ead54cad0c98577dbb59f5264802aca050a040f993dbde952", // migration 9
	"10bc4610621e5e0c3b1e9ec024765d417cd1b95143b3f861af5ad6f5df6a93a2", // migration 10
	"b5f7b94f83e79f097f45e994c8590d72ace8eb4a40e812310d5c161e28101303", // migration 11
}

func TestMigrationsUnchanged(t *testing.T) {
	ms, err := parseMigrations(schemaSQL)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != len(releasedMigrations) {
		t.Errorf("schema.sql has %d migrations, releasedMigrations %d: add the new one's sum", len(ms), len(releasedMigrations))
	}
	for i, m := range ms {
		got := hex.EncodeToString(m.sha256[:])
		switch {
		case i >= len(releasedMigrations):
			t.Errorf("migration %d (%s) is new: add %q to releasedMigrations", m.version, m.name, got)
		case got != releasedMigrations[i]:
			t.Errorf("migration %d (%s) has SHA-256 %s, released as %q: never edit a migration, add one", m.version, m.name, got, releasedMigrations[i])
		}
	}
}

func TestParseMigrations(t *testing.T) {
	for _, c := range []struct{ name, schema, want string }{
		{"none", "CREATE TABLE t ();", "no migrations"},
		{"not from 1", "-- migration 2: b\nSELECT 1;", "number 1"},
		{"a gap", "-- migration 1: a\nSELECT 1;\n-- migration 3: c\nSELECT 1;", "number 2"},
		{"twice", "-- migration 1: a\nSELECT 1;\n-- migration 1: a again\nSELECT 1;", "number 2"},
	} {
		if _, err := parseMigrations(c.schema); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: parseMigrations = %v, want an error naming %q", c.name, err, c.want)
		}
	}
	ms, err := parseMigrations("-- header\n-- migration 1: a\nSELECT 1;\n\n-- migration 2: b c\nSELECT 2;\n")
	if err != nil || len(ms) != 2 || ms[0].name != "a" || ms[0].sql != "SELECT 1;" || ms[1].name != "b c" || ms[1].sql != "SELECT 2;" {
		t.Fatalf("parseMigrations = %+v, %v", ms, err)
	}
}

// TestMigrateUpgradesInPlace builds a database as the release before migrations
// made it (testdata/schema/3e8dfed.sql, a copy of that release's schema.sql),
// with tasks, counts and Idempotency-Keys in it, on a database with the C locale;
// starts the program; and finds every row as it was. Started again, the program
// applies nothing and still finds every row.
func TestMigrateUpgradesInPlace(t *testing.T) {
	ctx := context.Background()
	dbURL := newDatabase(t, "TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'")
	old, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close(ctx)
	if _, err := old.Exec(ctx, string(must(os.ReadFile("testdata/schema/3e8dfed.sql")))); err != nil {
		t.Fatal(err)
	}
	user := newUser(t)
	_, err = old.Exec(ctx, `INSERT INTO tasks (user_id, title, description, completed, priority, due_date, tags, created_at, updated_at)
		SELECT $1, 'Task ' || k || ' ü 日本', CASE WHEN k % 2 = 0 THEN 'desc ' || k END, k % 3 = 0,
			(ARRAY['low','medium','high'])[k % 3 + 1], CASE WHEN k % 4 = 0 THEN '2026-12-01T17:00:00Z'::timestamptz END,
			CASE WHEN k % 5 = 0 THEN '{home,work}'::text[] ELSE '{}' END,
			'2026-01-01'::timestamptz + k * interval '1 minute', '2026-02-01'::timestamptz + k * interval '1 second'
		FROM generate_series(1, 25) k`, user)
	if err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{`INSERT INTO task_counts SELECT user_id, count(*) FROM tasks GROUP BY user_id`,
		`INSERT INTO idempotency_keys (user_id, key, request_hash, task_id) SELECT user_id, 'key-1', '\x00', min(id) FROM tasks GROUP BY user_id`} {
		if _, err := old.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	snapshot := func() string {
		t.Helper()
		var s string
		err := old.QueryRow(ctx, `SELECT json_build_array(
			(SELECT json_agg(t ORDER BY id) FROM (SELECT id, user_id, title, description, completed, priority,
				due_date, tags, created_at, updated_at FROM tasks) t), -- the columns the old release had
			(SELECT json_agg(c ORDER BY user_id) FROM (SELECT user_id, n FROM task_counts) c),
			(SELECT json_agg(k ORDER BY key) FROM (SELECT user_id, key, request_hash, task_id, created_at FROM idempotency_keys) k))::text`).Scan(&s)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := snapshot()

	env := map[string]string{"DATABASE_URL": dbURL, "BETTER_AUTH_SECRET": testSecret, "PORT": "0"}
	var appliedAt time.Time
	for start := 1; start <= 2; start++ {
		base, stop, logs := startRun(t, env)
		if got := snapshot(); got != before {
			t.Fatalf("start %d: rows changed by the upgrade:\n before %s\n after  %s", start, before, got)
		}
		// The API reads the old rows, all of them.
		req, _ := http.NewRequest("GET", base+"/api/"+user+"/tasks", nil)
		req.Header.Set("Authorization", "Bearer "+tokenFor(t, user))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var tasks []Task
		json.NewDecoder(resp.Body).Decode(&tasks)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(tasks) != 25 || resp.Header.Get("X-Total-Count") != "25" {
			t.Fatalf("start %d: GET list = %d with %d tasks, want 200 with 25", start, resp.StatusCode, len(tasks))
		}
		for _, task := range tasks { // a due date the old release stored is the instant it returned
			if d := task.DueDate; d != nil && (d.Kind != dueInstant || !d.At.Equal(time.Date(2026, 12, 1, 17, 0, 0, 0, time.UTC))) {
				t.Fatalf("start %d: an old due date reads as %+v", start, d)
			}
			// A task completed before completed_at existed reads its last write's time.
			if c := task.CompletedAt; task.Completed != (c != nil) || c != nil && !c.Equal(task.UpdatedAt) {
				t.Fatalf("start %d: completed %v with completed_at %v (updated_at %v)", start, task.Completed, c, task.UpdatedAt)
			}
		}
		// A first sync of the change feed returns every task there before the feed.
		req, _ = http.NewRequest("GET", base+"/api/"+user+"/changes?limit=10", nil)
		req.Header.Set("Authorization", "Bearer "+tokenFor(t, user))
		var synced []int64
		for more := true; more; {
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var page struct {
				Tasks   []Task
				Cursor  string
				HasMore bool `json:"has_more"`
			}
			json.NewDecoder(resp.Body).Decode(&page)
			resp.Body.Close()
			for _, task := range page.Tasks {
				synced = append(synced, task.ID)
			}
			req.URL.RawQuery, more = "limit=10&since="+page.Cursor, page.HasMore
		}
		if len(synced) != 25 || synced[0] != 1 || synced[24] != 25 {
			t.Fatalf("start %d: a first sync returned tasks %v, want 1 to 25", start, synced)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		var versions int
		var at time.Time
		if err := old.QueryRow(ctx, `SELECT count(*), max(applied_at) FROM schema_migrations`).Scan(&versions, &at); err != nil {
			t.Fatal(err)
		}
		ms := must(parseMigrations(schemaSQL))
		applied := strings.Count(logs.String(), `"msg":"migration applied"`)
		switch {
		case versions != len(ms):
			t.Fatalf("start %d: schema_migrations holds %d versions, want %d", start, versions, len(ms))
		case start == 1 && applied != len(ms):
			t.Fatalf("start %d: %d migrations applied, want %d:\n%s", start, applied, len(ms), logs)
		case start == 2 && (applied != 0 || !at.Equal(appliedAt)):
			t.Fatalf("start %d: applied %d migrations again (applied_at %v, was %v)", start, applied, at, appliedAt)
		}
		appliedAt = at
	}
}

// TestMigrateRecordsEachOnce checks the bookkeeping the test database got from
// TestMain: every migration recorded once, with the SHA-256 of its text.
func TestMigrateRecordsEachOnce(t *testing.T) {
	rows, _ := testDB.pool.Query(context.Background(), `SELECT version, name, sha256 FROM schema_migrations ORDER BY version`)
	type record struct {
		Version int
		Name    string
		Sha256  []byte
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByName[record])
	if err != nil {
		t.Fatal(err)
	}
	ms := must(parseMigrations(schemaSQL))
	if len(got) != len(ms) {
		t.Fatalf("schema_migrations = %+v, want %d rows", got, len(ms))
	}
	for i, m := range ms {
		if sum := sha256.Sum256([]byte(m.sql)); got[i].Version != m.version || got[i].Name != m.name || string(got[i].Sha256) != string(sum[:]) {
			t.Errorf("row %d = %+v, want migration %d %q", i, got[i], m.version, m.name)
		}
	}
}

// TestMigrationFailsWhole runs migrations the way migrate does on a new
// database: a failing migration leaves nothing behind, not even the ones before
// it; an edited migration and one this binary does not know are logged, and
// nothing is run again.
func TestMigrationFailsWhole(t *testing.T) {
	ctx := context.Background()
	db := testStore(t, newDatabase(t, ""), 5*time.Second)
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	apply := func(schema string) error {
		ms, err := parseMigrations(schema)
		if err != nil {
			t.Fatal(err)
		}
		return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error { return applyMigrations(ctx, tx, ms, log) })
	}
	one := "-- migration 1: a\nCREATE TABLE a (n int);\n"
	if err := apply(one + "-- migration 2: b\nCREATE TABLE b (n int);\nSELECT no_such_function();\n"); err == nil || !strings.Contains(err.Error(), "migration 2 (b)") {
		t.Fatalf("a failing migration 2 = %v, want an error naming it", err)
	}
	var tables int
	db.pool.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename IN ('a', 'b', 'schema_migrations')`).Scan(&tables)
	if tables != 0 {
		t.Fatalf("after a failed migration, %d of its tables remain, want none", tables)
	}
	if err := apply(one + "-- migration 2: b\nCREATE TABLE b (n int);\n"); err != nil {
		t.Fatal(err)
	}
	if err := apply("-- migration 1: a\nCREATE TABLE a (n int, edited int);\n"); err != nil {
		t.Fatalf("an edited migration 1 and an unknown migration 2 = %v, want a start with warnings", err)
	}
	if l := logs.String(); !strings.Contains(l, `"msg":"a migration was edited`) || !strings.Contains(l, `"msg":"the database has a migration this binary does not know`) {
		t.Fatalf("want warnings for the edited and the unknown migration:\n%s", l)
	}
	var columns int
	db.pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.columns WHERE table_name = 'a'`).Scan(&columns)
	if columns != 1 {
		t.Fatalf("table a has %d columns: the edited migration ran again", columns)
	}
}

// TestStartRefusesWhatCannotWork: a database not in UTF8 (what initdb --locale=C
// gives without -E), and a DATABASE_URL whose settings stop pgx from running a
// statement, stop the program at start with one line, rather than serve 500s.
func TestStartRefusesWhatCannotWork(t *testing.T) {
	u := must(url.Parse(testURL))
	q := u.Query()
	q.Set("default_query_exec_mode", "cache_describe")
	q.Set("description_cache_capacity", "0")
	u.RawQuery = q.Encode()
	for name, c := range map[string][2]string{
		"SQL_ASCII database": {newDatabase(t, "ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"), "needs UTF8"},
		"no statement cache": {u.String(), "a statement cannot run"},
	} {
		env := map[string]string{"DATABASE_URL": c[0], "BETTER_AUTH_SECRET": testSecret, "PORT": "0", "STARTUP_TIMEOUT": "10s"}
		err := run(context.Background(), []string{"tasks"}, func(k string) string { return env[k] }, &syncBuffer{})
		if err == nil || !strings.Contains(err.Error(), c[1]) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: run = %v, want one line saying %q", name, err, c[1])
		}
	}
}
