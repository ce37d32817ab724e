// migrate_test.go tests the migrations: their numbering, that released ones never change, and upgrades in place.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
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
	"9e2823b68b02569762be43e89e77e9e498ab2b8c2d43c32f7d3939f02cba5c17", // migration 1 (1.0.0)
	"0735141193f70ceb3c950b726595531acd556afb10d3744a1f96f00a4a1bcb5f", // migration 2: recurring tasks and reminders
	"89e1e5092b0f783bb0d28f1f8517eb092e5756514747de71047e90019006d897", // migration 3: subtasks and the user's own order
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

// TestMigrateUpgradesInPlace makes a database with the C locale, starts the
// program on it, writes tasks, a deletion and an Idempotency-Key through the
// API, and starts the program again: nothing is applied again and every row is
// as it was. A later migration adds its upgrade from this database here.
func TestMigrateUpgradesInPlace(t *testing.T) {
	ctx := context.Background()
	dbURL := newDatabase(t, "TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'")
	env := map[string]string{"DATABASE_URL": dbURL, "BETTER_AUTH_SECRET": testSecret, "PORT": "0"}
	user := newUser(t)
	send := func(base, method, path, body string, header ...string) *http.Response {
		req, _ := http.NewRequest(method, base+"/api/"+user+"/tasks"+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tokenFor(t, user))
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp
	}
	db, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	snapshot := func() string {
		t.Helper()
		var s string
		err := db.QueryRow(ctx, `SELECT json_build_array((SELECT json_agg(t ORDER BY id) FROM tasks t),
			(SELECT json_agg(c) FROM task_counts c), (SELECT json_agg(k) FROM idempotency_keys k),
			(SELECT json_agg(d) FROM task_tombstones d))::text`).Scan(&s)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// A database as 1.0.0 left it: migration 1 only, with a user's rows written as 1.0.0 writes them.
	ms := must(parseMigrations(schemaSQL))
	if err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error { return applyMigrations(ctx, tx, ms[:1], slog.New(slog.DiscardHandler)) }); err != nil {
		t.Fatal(err)
	}
	old := "o-" + user
	_, err = db.Exec(ctx, `INSERT INTO task_counts VALUES ($1, 2, 4);
		INSERT INTO tasks (user_id, version, title, due_date, due_kind, completed, completed_at) VALUES
			($1, 2, 'Date', '2026-12-01', 'date', false, NULL), ($1, 3, 'Instant', '2026-12-01T09:00:00Z', 'instant', true, now());
		INSERT INTO task_tombstones (user_id, version, task_id) VALUES ($1, 4, 99)`, pgx.QueryExecModeSimpleProtocol, old)
	if err != nil {
		t.Fatal(err)
	}
	v1Rows := func() string { // all but the version, which the tree's migration moves (TestMigrateTreeUpgrade)
		var s string
		db.QueryRow(ctx, `SELECT json_agg(json_build_array(id, title, due_date, due_kind, completed, completed_at, created_at, updated_at) ORDER BY id)::text
			FROM tasks WHERE user_id = $1`, old).Scan(&s)
		return s
	}
	oldRows := v1Rows()
	var before string
	for start := 1; start <= 2; start++ {
		base, stop, logs := startRun(t, env)
		if start == 1 {
			for k := range 25 {
				due := []string{"null", `"2026-12-01"`, `"2026-12-01T10:00"`, `"2026-12-01T10:00:00+01:00"`}[k%4]
				if r := send(base, "POST", "", fmt.Sprintf(`{"title":"Task %d ü 日本","due_date":%s,"tags":["home"]}`, k, due),
					"Idempotency-Key", fmt.Sprint("key-", k)); r.StatusCode != 201 {
					t.Fatalf("POST = %d", r.StatusCode)
				}
			}
			var first int64
			db.QueryRow(ctx, `SELECT min(id) FROM tasks WHERE user_id = $1`, user).Scan(&first)
			send(base, "PATCH", fmt.Sprint("/", first+1, "/complete"), "")
			send(base, "DELETE", fmt.Sprint("/", first), "")
			before = snapshot()
		}
		if start == 1 {
			var upgraded bool
			db.QueryRow(ctx, `SELECT bool_and(recurrence IS NULL AND recur_from = 'due' AND timezone IS NULL) FROM tasks WHERE user_id = $1`, old).Scan(&upgraded)
			if got := v1Rows(); got != oldRows || !upgraded {
				t.Fatalf("1.0.0's rows after the upgrade: %s, new columns as their defaults %v; want %s, true", got, upgraded, oldRows)
			}
		}
		if got := snapshot(); got != before {
			t.Fatalf("start %d: rows changed:\n before %s\n after  %s", start, before, got)
		}
		if r := send(base, "GET", "", ""); r.StatusCode != 200 || r.Header.Get("X-Total-Count") != "24" {
			t.Fatalf("start %d: GET list = %d with X-Total-Count %q, want 200 with 24", start, r.StatusCode, r.Header.Get("X-Total-Count"))
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		var versions int
		db.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&versions)
		if applied := strings.Count(logs.String(), `"msg":"migration applied"`); versions != len(ms) ||
			start == 1 && applied != len(ms)-1 || start == 2 && applied != 0 {
			t.Fatalf("start %d: %d migrations applied, %d recorded, want %d:\n%s", start, applied, versions, len(ms), logs)
		}
	}
}

// TestMigrateRefusesPreRelease: a database that a build before 1.0 made, with
// its own schema_migrations or with none, stops the program at start with one
// line saying so, and is left as it was.
func TestMigrateRefusesPreRelease(t *testing.T) {
	ctx := context.Background()
	for name, sql := range map[string]string{
		"recorded": `CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, sha256 bytea NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now());
			INSERT INTO schema_migrations (version, name, sha256) VALUES (1, 'tasks, per-user task counts and Idempotency-Keys', '\x5327');
			CREATE TABLE tasks (id bigint PRIMARY KEY, user_id text, title text)`,
		"unrecorded":            `CREATE TABLE tasks (id bigint PRIMARY KEY, user_id text, title text)`,
		"another table of ours": `CREATE TABLE task_counts (user_id text PRIMARY KEY, n integer)`,
		"another tool's bookkeeping": `CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL);
			INSERT INTO schema_migrations VALUES (20240101, false)`,
	} {
		dbURL := newDatabase(t, "")
		db := must(pgx.Connect(ctx, dbURL))
		defer db.Close(ctx)
		if _, err := db.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
		tables := func() (s string) {
			db.QueryRow(ctx, `SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'`).Scan(&s)
			return s
		}
		before := tables()
		env := map[string]string{"DATABASE_URL": dbURL, "BETTER_AUTH_SECRET": testSecret, "PORT": "0"}
		err := run(ctx, []string{"tasks"}, func(k string) string { return env[k] }, &syncBuffer{})
		if err == nil || !errors.Is(err, errPreRelease) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: run = %v, want one line saying the database is a pre-release one", name, err)
		}
		if after := tables(); after != before {
			t.Errorf("%s: tables %s after the refusal, were %s", name, after, before)
		}
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
// nothing is run again; another migration 1 is a pre-release database, refused.
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
	if err := apply("-- migration 1: a\nCREATE TABLE a (n int);\n-- migration 2: b\nCREATE TABLE b (n int, edited int);\n-- migration 3: c\nSELECT 1;\n"); err != nil {
		t.Fatalf("an edited migration 2 = %v, want a start with a warning", err)
	}
	if err := apply("-- migration 1: a\nCREATE TABLE a (n int);\n"); err != nil {
		t.Fatalf("a database with a migration 3 this binary does not know = %v, want a start with a warning", err)
	}
	if err := apply("-- migration 1: a\nCREATE TABLE a (n int, edited int);\n"); !errors.Is(err, errPreRelease) {
		t.Fatalf("another migration 1 = %v, want errPreRelease", err)
	}
	if l := logs.String(); !strings.Contains(l, `"msg":"a migration was edited`) || !strings.Contains(l, `"msg":"the database has a migration this binary does not know`) {
		t.Fatalf("want warnings for the edited and the unknown migration:\n%s", l)
	}
	var columns int
	db.pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.columns WHERE table_name = 'b'`).Scan(&columns)
	if columns != 1 {
		t.Fatalf("table b has %d columns: the edited migration ran again", columns)
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

// TestMigrateTreeUpgrade upgrades a database from the migration before the
// tree's, with two users' tasks, tombstones and cursors in it: each task is
// re-stamped with a version after the user's last, oldest first, so that a
// device's next pull brings it with its parent_id and position; those put the
// newest first, as the default list does; every device's cursor stays valid.
func TestMigrateTreeUpgrade(t *testing.T) {
	ctx := context.Background()
	dbURL := newDatabase(t, "")
	db := testStore(t, dbURL, 5*time.Second)
	ms := must(parseMigrations(schemaSQL))
	tree := slices.IndexFunc(ms, func(m migration) bool { return m.name == "subtasks and the user's own order" })
	apply := func(ms []migration) {
		if err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error { return applyMigrations(ctx, tx, ms, slog.New(slog.DiscardHandler)) }); err != nil {
			t.Fatal(err)
		}
	}
	apply(ms[:tree])
	a, b := newUser(t), newUser(t)
	_, err := db.pool.Exec(ctx, `INSERT INTO task_counts VALUES ($1, 3, 9), ($2, 1, 2);
		INSERT INTO tasks (user_id, version, title, created_at) VALUES ($1, 9, 'oldest', now() - interval '3 days'),
			($1, 4, 'newest', now() - interval '1 day'), ($1, 7, 'middle', now() - interval '2 days'), ($2, 1, 'theirs', now());
		INSERT INTO task_tombstones (user_id, version, task_id) VALUES ($1, 8, 1000)`, pgx.QueryExecModeSimpleProtocol, a, b)
	if err != nil {
		t.Fatal(err)
	}
	apply(ms)
	e := newEnvDB(t, db, testConfig(hsAuth()))
	// A device that synced up to version 9 before the upgrade holds the tasks without their new fields.
	d := &device{tasks: map[int64]Task{}, cursor: feedCursor{9, time.Now(), -1, userTag(a)}.String()}
	type row struct {
		Title    string
		Version  int64
		Position string
		ParentID *int64
	}
	rows, _ := db.pool.Query(ctx, `SELECT title, version, position, parent_id FROM tasks WHERE user_id = $1 ORDER BY created_at`, a)
	got := must(pgx.CollectRows(rows, pgx.RowToStructByPos[row]))
	var version int64
	db.pool.QueryRow(ctx, `SELECT version FROM task_counts WHERE user_id = $1`, a).Scan(&version)
	if len(got) != 3 || got[0].Version != 10 || got[1].Version != 11 || got[2].Version != 12 || version != 12 ||
		!(got[2].Position < got[1].Position && got[1].Position < got[0].Position) || got[0].ParentID != nil {
		t.Fatalf("user a after the upgrade: %+v, version %d; want versions 10, 11, 12 oldest first, positions newest first, version 12", got, version)
	}
	r := e.do("GET", "/api/"+a+"/changes?since="+d.cursor, tokenFor(t, a), nil)
	if p := decode[changesPage](t, r); r.status != 200 || len(p.Tasks) != 3 || len(p.Deleted) != 0 || p.Tasks[0].Position == "" {
		t.Fatalf("the device's pull after the upgrade = %s, want its three tasks again", r)
	}
	e.pull(a, d, 100)
	e.wantSame(a, d, "after the upgrade")
	if order := e.order(a, nil); !slices.Equal(order, []string{"newest", "middle", "oldest"}) {
		t.Fatalf("sort=position after the upgrade: %v", order)
	}
	if order := e.order(b, nil); !slices.Equal(order, []string{"theirs"}) {
		t.Fatalf("user b's tasks after the upgrade: %v", order)
	}
	// And the API goes on from there: a new task first, a subtask, a move.
	first := e.create(a, map[string]any{"title": "new"})
	e.create(a, map[string]any{"title": "sub", "parent_id": first.ID})
	for _, task := range d.tasks {
		if task.Title == "oldest" {
			e.moved(a, first.ID, nil, task.ID)
		}
	}
	if order := e.order(a, nil); !slices.Equal(order, []string{"newest", "middle", "oldest", "new"}) {
		t.Fatalf("after a create and a move: %v", order)
	}
}
