// bench_test.go measures each route through the real handler and database, and token verification alone.
package main

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
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
	// As the API would have written them: each task a version, each user a count and a version.
	_, err := testDB.pool.Exec(context.Background(), `WITH seeded AS (INSERT INTO tasks (user_id, title, description, tags, version, position)
		SELECT ($1::text[])[u], 'Seed task ' || k, CASE WHEN k % 2 = 0 THEN 'description ' || k END, '{home}', k, task_position_first(k)
		FROM generate_series(1, cardinality($1::text[])) u, generate_series(1, $2) k RETURNING user_id)
		INSERT INTO task_counts (user_id, n, version) SELECT user_id, count(*), count(*) FROM seeded GROUP BY user_id`, ids, tasks)
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
	h := testServer(slog.New(slog.NewJSONHandler(io.Discard, nil)), testDB, testConfig(hsAuth()))
	users, toks := benchUsers(b, 100, 20)
	bigUsers, bigToks := benchUsers(b, 100, 2000)
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
	anchors := make([]int64, len(users)) // a task of each user besides taskIDs, for move_same_place
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
				sent := body
				if strings.Contains(body, "%") { // the user's next task, and their anchor
					sent = fmt.Sprintf(body, taskIDs[u][(n+1)%20], anchors[u])
				}
				req := httptest.NewRequest(method, path(u, taskIDs[u][n%20]), strings.NewReader(sent))
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
	b.Run("list20_of_2000", func(b *testing.B) { // a page of 20 for users who hold 2,000 tasks each, as list_page_of_more is for 20
		few, fewToks := users, toks
		users, toks = bigUsers, bigToks
		defer func() { users, toks = few, fewToks }()
		serve(b, "GET", func(u int, _ int64) string { return "/api/" + users[u] + "/tasks?limit=20" }, "", 200)
	})
	b.Run("list20_position", func(b *testing.B) {
		serve(b, "GET", func(u int, _ int64) string { return "/api/" + users[u] + "/tasks?sort=position" }, "", 200)
	})
	b.Run("list20_of_2000_position", func(b *testing.B) {
		few, fewToks := users, toks
		users, toks = bigUsers, bigToks
		defer func() { users, toks = few, fewToks }()
		serve(b, "GET", func(u int, _ int64) string { return "/api/" + users[u] + "/tasks?limit=20&sort=position" }, "", 200)
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
		h = testServer(slog.New(slog.NewJSONHandler(io.Discard, nil)), testDB, testConfig(authConfig{Secret: []byte(testSecret), JWKSURL: ks.URL}))
		serve(b, "GET", item, "", 200)
	})
	b.Run("changes_first_sync", func(b *testing.B) { // the user's 20 tasks
		serve(b, "GET", func(u int, _ int64) string { return "/api/" + users[u] + "/changes" }, "", 200)
	})
	b.Run("changes_nothing_new", func(b *testing.B) { // a poll from the cursor of the last one
		cursors := make([]string, len(users))
		for u, id := range users {
			var v int64
			testDB.pool.QueryRow(context.Background(), `SELECT version FROM task_counts WHERE user_id = $1`, id).Scan(&v)
			cursors[u] = feedCursor{v, time.Now(), -1, userTag(id)}.String()
		}
		serve(b, "GET", func(u int, _ int64) string { return "/api/" + users[u] + "/changes?since=" + cursors[u] }, "", 200)
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
	b.Run("create_under_parent", func(b *testing.B) { // under the user's next task, which moves do not nest
		serve(b, "POST", list, `{"title":"Load task","description":"created under load","parent_id":%[1]d}`, 201)
	})
	b.Run("move", func(b *testing.B) { // each task right after the next one, at the top level
		serve(b, "POST", func(u int, id int64) string { return item(u, id) + "/move" }, `{"parent_id":null,"after":%[1]d}`, 200)
	})
	b.Run("move_same_place", func(b *testing.B) { // the worst pattern: always right after one task, so the room there halves each time
		for u := range users {
			req := httptest.NewRequest("POST", list(u, 0), strings.NewReader(`{"title":"Anchor"}`))
			req.Header.Set("Authorization", "Bearer "+toks[u])
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			anchors[u] = must(decodeTask201(w.Body.Bytes()))
		}
		serve(b, "POST", func(u int, id int64) string { return item(u, id) + "/move" }, `{"after":%[2]d}`, 200)
	})
}

// BenchmarkMoveSamePlace moves a user's tasks in turn right after the same one,
// the worst pattern for positions: the room there halves with each move, and runs
// out every few hundred moves, when one move renumbers the group. rows/op is the
// rows written per move (1, and the group's each renumbering); max-ms/op the
// slowest move's time.
//
//	go test -run '^$' -bench MoveSamePlace -benchtime 3000x
func BenchmarkMoveSamePlace(b *testing.B) {
	h := testServer(slog.New(slog.NewJSONHandler(io.Discard, nil)), testDB, testConfig(hsAuth()))
	for _, n := range []int{20, 1000} {
		b.Run(fmt.Sprint(n, "_siblings"), func(b *testing.B) {
			users, toks := benchUsers(b, 1, n)
			rows, _ := testDB.pool.Query(context.Background(), `SELECT id FROM tasks WHERE user_id = $1 ORDER BY id`, users[0])
			ids := must(pgx.CollectRows(rows, pgx.RowTo[int64]))
			version := func() (v int64) {
				testDB.pool.QueryRow(context.Background(), `SELECT version FROM task_counts WHERE user_id = $1`, users[0]).Scan(&v)
				return v
			}
			before, cpu, slowest := version(), processCPU(), time.Duration(0)
			for i := 0; b.Loop(); i++ {
				req := httptest.NewRequest("POST", fmt.Sprintf("/api/%s/tasks/%d/move", users[0], ids[1+i%(n-1)]), strings.NewReader(fmt.Sprintf(`{"after":%d}`, ids[0])))
				req.Header.Set("Authorization", "Bearer "+toks[0])
				w, start := httptest.NewRecorder(), time.Now()
				if h.ServeHTTP(w, req); w.Code != 200 {
					b.Fatalf("move = %d %s", w.Code, w.Body)
				}
				slowest = max(slowest, time.Since(start))
			}
			b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
			b.ReportMetric(float64(version()-before)/float64(b.N), "rows/op")
			b.ReportMetric(float64(slowest.Microseconds())/1000, "max-ms/op")
		})
	}
}

// decodeTask201 reads a created task's id.
func decodeTask201(body []byte) (int64, error) {
	var t Task
	err := json.Unmarshal(body, &t)
	return t.ID, err
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
					if _, _, err := v.verify(c.token); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
		b.Run(c.name+"/first", func(b *testing.B) { // a token's first use: parse and check the signature
			b.ReportAllocs()
			for b.Loop() {
				clear(v.verified)
				if _, _, err := v.verify(c.token); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFastPaths sets each hand-written fast path beside what it replaces,
// on the same input: a page of 20 tasks written as JSON, and one task row
// decoded from the binary values PostgreSQL sent.
//
//	go test -run '^$' -bench FastPaths -benchmem
func BenchmarkFastPaths(b *testing.B) {
	ctx := context.Background()
	users, _ := benchUsers(b, 1, 20)
	q, _ := parseListQuery(httptest.NewRequest("GET", "/", nil))
	page, _, _, err := testDB.listTasks(ctx, users[0], q)
	if err != nil || len(page) != 20 {
		b.Fatalf("list = %d tasks, %v", len(page), err)
	}
	due := time.Now().UTC()
	page[0].DueDate, page[0].Tags = &Due{due, dueInstant}, []string{"home", "work"}
	b.Run("json_page20/appendTask", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf := make([]byte, 0, 64+400*len(page))
			for i := range page {
				buf = appendTask(buf, &page[i])
			}
		}
	})
	b.Run("json_page20/encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			json.Marshal(page)
		}
	})

	// One row as the binary protocol delivers it: description, due date and tags set.
	var fields []pgconn.FieldDescription
	var raw [][]byte
	rows, _ := testDB.pool.Query(ctx, `SELECT `+taskColumns+` FROM tasks WHERE id = $1`, page[1].ID)
	_, err = pgx.CollectOneRow(rows, func(row pgx.CollectableRow) (int, error) {
		fields = slices.Clone(row.FieldDescriptions())
		for _, v := range row.RawValues() {
			raw = append(raw, slices.Clone(v))
		}
		return 0, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	if _, ok := taskFromBinary(fields, raw); !ok {
		b.Skip("rows arrive in the text format in this query mode: nothing to compare")
	}
	b.Run("row/taskFromBinary", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			taskFromBinary(fields, raw)
		}
	})
	b.Run("row/pgx_Scan", func(b *testing.B) { // what rows.Scan does per column, with its type map
		m := pgtype.NewMap()
		b.ReportAllocs()
		for b.Loop() {
			var t Task
			var due *time.Time
			var kind *string
			dst := []any{&t.ID, &t.UserID, &t.Title, &t.Description, &t.Completed, &t.Priority, &due, &t.Tags, &t.CreatedAt, &t.UpdatedAt, &kind, &t.CompletedAt,
				&t.Version, &t.Recurrence, &t.RecurFrom, &t.Timezone, &t.Reminders, &t.NextReminder, &t.ParentID, &t.Position}
			for i, f := range fields {
				if err := m.Scan(f.DataTypeOID, f.Format, raw[i], dst[i]); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// TestBenchSQLIsTheStoresSQL holds bench/sql/, which bench/run.sh gives
// pgbench as "the statement the API sends", to the store: each file returns
// taskColumns, sets what the store's statement sets, and runs on the schema.
func TestBenchSQLIsTheStoresSQL(t *testing.T) {
	flat := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	for file, sets := range map[string][]string{"get.sql": nil, "list.sql": {"LIMIT 1001"},
		"create.sql":  {"due_kind, tags, recurrence, recur_from, timezone, reminders, parent_id, position)", "version, 'Load task'", "task_position_first(version)"},
		"toggle.sql":  {"completed_at =", "version = next.v", "AND EXISTS (SELECT FROM tasks WHERE tasks.id =", "OR tasks.completed)", "tasks.parent_id IS NULL"},
		"update.sql":  {"completed_at =", "due_kind =", "recurrence =", "reminders =", "version = next.v", "AND EXISTS (SELECT FROM tasks WHERE tasks.id =", "IS NULL OR tasks.version = ANY("},
		"move.sql":    {"version = v, updated_at = now(), parent_id =", "task_position_between(position, next)", "AND EXISTS (SELECT FROM tasks WHERE id ="},
		"changes.sql": {"SELECT version FROM task_counts WHERE user_id ="}} {
		sql := string(must(os.ReadFile("bench/sql/" + file)))
		if file != "changes.sql" { // the one statement that reads no task
			sets = append(sets, flat(taskColumns))
		} else if strings.Contains(sql, "FROM tasks") {
			t.Errorf("bench/sql/changes.sql reads tasks: a poll that finds nothing new reads only the user's version")
		}
		for _, want := range sets {
			if !strings.Contains(flat(sql), want) {
				t.Errorf("bench/sql/%s lacks %q", file, want)
			}
		}
		var lines []string // pgbench's \set lines out, its variables as user 1 and task 1
		for line := range strings.Lines(sql) {
			if !strings.HasPrefix(line, `\set`) {
				lines = append(lines, strings.NewReplacer(":id", "1", ":u", "1", ":moved", "1", ":anchor", "2").Replace(line))
			}
		}
		tx := must(testDB.pool.Begin(context.Background()))
		_, err := tx.Exec(context.Background(), strings.Join(lines, ""))
		tx.Rollback(context.Background())
		if err != nil {
			t.Errorf("bench/sql/%s does not run: %v", file, err)
		}
	}
}

// BenchmarkRRuleNext is a completion's search for the next occurrence: a
// weekly rule, and the worst case, a rule with none, which searches the 400
// years in which the calendar repeats itself (rrule.next).
func BenchmarkRRuleNext(b *testing.B) {
	for _, rule := range []string{"FREQ=WEEKLY;BYDAY=MO,WE", "FREQ=MONTHLY;BYDAY=5MO;BYMONTHDAY=9"} {
		r, err := parseRRule(rule)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(rule, func(b *testing.B) {
			for b.Loop() {
				r.next(time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC), time.UTC)
			}
		})
	}
}

// BenchmarkRemindersDue10000 is the time from a moment to the push for 10,000
// reminders due at it: 100 users with 100 tasks each and one push subscription
// each, two schedulers as two replicas would run, and a push service on
// loopback that takes every push. It reports the seconds from the moment to the
// last reminder fired and to the last push taken. Run it alone: go test -run XXX
// -bench RemindersDue -benchtime 1x.
func BenchmarkRemindersDue10000(b *testing.B) {
	const users, perUser = 100, 100
	var taken atomic.Int64
	var last atomic.Int64 // Unix nanoseconds of the last push taken
	service := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		taken.Add(1)
		last.Store(time.Now().UnixNano())
		w.WriteHeader(http.StatusCreated)
	}))
	defer service.Close()
	private, _ := newVAPIDKeys(b)
	key := must(parseVAPIDKey(private, "mailto:bench@example.com"))
	subscriber := must(ecdh.P256().GenerateKey(rand.Reader))
	p256dh := base64.RawURLEncoding.EncodeToString(subscriber.PublicKey().Bytes())
	auth := base64.RawURLEncoding.EncodeToString(make([]byte, 16))
	for b.Loop() {
		db := testStore(b, newDatabase(b, ""), 30*time.Second)
		ctx := context.Background()
		if err := db.migrate(ctx, slog.New(slog.DiscardHandler)); err != nil {
			b.Fatal(err)
		}
		moment := time.Now().Add(10 * time.Second).Truncate(time.Second)
		for u := range users {
			user := fmt.Sprintf("bench-%d", u)
			_, err := db.pool.Exec(ctx, `INSERT INTO task_counts VALUES ($1, $3, 1);
				INSERT INTO tasks (user_id, version, title, due_date, due_kind, reminders, position)
				SELECT $1, 1, 'Task ' || g, $2, 'instant', json_build_array(json_build_object('at', $2::timestamptz)), task_position_first(g)
				FROM generate_series(1, $3) g;
				INSERT INTO push_subscriptions VALUES ($1, $4, $5, $6)`, pgx.QueryExecModeSimpleProtocol,
				user, moment, perUser, service.URL+"/"+user, p256dh, auth)
			if err != nil {
				b.Fatal(err)
			}
		}
		taken.Store(0)
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan struct{}, 2)
		for range 2 {
			p := &pusher{db: db, log: slog.New(slog.DiscardHandler), key: key, client: newPushClient(true)}
			go func() { remind(runCtx, db, p, slog.New(slog.DiscardHandler)); done <- struct{}{} }()
		}
		var firedAt time.Time
		for deadline := time.Now().Add(5 * time.Minute); taken.Load() < users*perUser && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			var fired int
			if firedAt.IsZero() && db.pool.QueryRow(ctx, `SELECT count(*) FROM fired_reminders`).Scan(&fired) == nil && fired == users*perUser {
				firedAt = time.Now()
			}
		}
		stop()
		<-done
		<-done
		if n := taken.Load(); n != users*perUser {
			b.Fatalf("%d pushes taken, want %d", n, users*perUser)
		}
		b.ReportMetric(firedAt.Sub(moment).Seconds(), "s-to-last-fired")
		b.ReportMetric(time.Unix(0, last.Load()).Sub(moment).Seconds(), "s-to-last-push")
	}
}
