// tree_test.go tests subtasks and the user's own order: the rules of the tree, positions, moves, and what completing and deleting do to a family.
package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// move sends POST .../move for the user's task id with body.
func (e *env) move(user string, id int64, body any, header ...string) result {
	e.t.Helper()
	return e.do("POST", fmt.Sprint("/api/", user, "/tasks/", id, "/move"), tokenFor(e.t, user), body, header...)
}

// moved is move that must answer 200, and returns the task.
func (e *env) moved(user string, id int64, parent, after any) Task {
	e.t.Helper()
	r := e.move(user, id, map[string]any{"parent_id": parent, "after": after})
	e.want(r, 200, fmt.Sprintf("move %d under %v after %v", id, parent, after))
	return decode[Task](e.t, r)
}

// order is the user's tasks under parent (nil: the top level) as sort=position lists them: their titles.
func (e *env) order(user string, parent *int64) []string {
	e.t.Helper()
	query := "?sort=position&parent_id=none"
	if parent != nil {
		query = fmt.Sprint("?sort=position&parent_id=", *parent)
	}
	list, _ := e.list(user, query)
	var titles []string
	for i, t := range list {
		if i > 0 && t.Position <= list[i-1].Position {
			e.t.Fatalf("sort=position lists %q after %q", t.Position, list[i-1].Position)
		}
		titles = append(titles, t.Title)
	}
	return titles
}

// must2 is the tasks of a list, without its count.
func must2(tasks []Task, _ int) []Task { return tasks }

// drawTree is how a client draws the tree from a copy of the tasks: each task's
// title indented by its depth, children under their parent in position order (ties by id).
func drawTree(tasks []Task) string {
	children := map[int64][]Task{} // by parent id; 0 for the top level
	for _, t := range tasks {
		children[*cmp.Or(t.ParentID, new(int64(0)))] = append(children[*cmp.Or(t.ParentID, new(int64(0)))], t)
	}
	var b strings.Builder
	var draw func(parent int64, depth int)
	draw = func(parent int64, depth int) {
		kids := children[parent]
		slices.SortFunc(kids, func(a, b Task) int { return cmp.Or(strings.Compare(a.Position, b.Position), cmp.Compare(a.ID, b.ID)) })
		for _, t := range kids {
			fmt.Fprintf(&b, "%s%s %v\n", strings.Repeat("  ", depth), t.Title, t.Completed)
			draw(t.ID, depth+1)
		}
	}
	draw(0, 0)
	return b.String()
}

// TestTaskPositionFunctions holds schema.sql's position functions to their promises:
// task_position falls as the version grows; task_position_between is strictly
// between its bounds, at most 64 characters, never ending in 0, or NULL past 64.
func TestTaskPositionFunctions(t *testing.T) {
	ctx := context.Background()
	var bad int
	err := testDB.pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT task_position_first(v) AS p, lead(task_position_first(v)) OVER (ORDER BY v) AS next
		FROM (SELECT generate_series(0, 300000, 7) AS v UNION ALL SELECT 9223372036854775807 - generate_series(0, 100)) AS vs) AS ps
		WHERE next IS NOT NULL AND NOT next::task_position < p::task_position`).Scan(&bad)
	if err != nil || bad != 0 {
		t.Fatalf("task_position_first rises %d times with the version (%v)", bad, err)
	}
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	digits := "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	key := func() string { // a position: 1 to 64 digits, the last not 0
		b := make([]byte, 1+rng.IntN(rng.IntN(64)+1))
		for i := range b {
			b[i] = digits[rng.IntN(62)]
		}
		b[len(b)-1] = digits[1+rng.IntN(61)]
		return string(b)
	}
	var los, his []string
	for range 3000 {
		lo, hi := key(), key()
		switch {
		case rng.IntN(5) == 0:
			hi = ""
		case rng.IntN(5) == 0: // hi just past lo
			hi = lo + digits[1:2]
		case lo == hi:
			continue
		case lo > hi:
			lo, hi = hi, lo
		}
		los, his = append(los, lo), append(his, hi)
	}
	rows, _ := testDB.pool.Query(ctx, `SELECT lo, hi, task_position_between(lo, nullif(hi, '')) FROM unnest($1::text[], $2::text[]) AS b(lo, hi)`, los, his)
	for rows.Next() {
		var lo, hi string
		var mid *string
		if err := rows.Scan(&lo, &hi, &mid); err != nil {
			t.Fatal(err)
		}
		if mid == nil {
			if len(lo) < 63 {
				t.Errorf("no position between %q and %q", lo, hi)
			}
			continue
		}
		if m := *mid; m <= lo || hi != "" && m >= hi || len(m) > 64 || m[len(m)-1] == '0' || strings.Trim(m, digits) != "" {
			t.Errorf("between %q and %q: %q", lo, hi, m)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestTreeRules: each rule of the tree, on create and on move, is a 422 at the field
// that breaks it, and leaves the tree as it was.
func TestTreeRules(t *testing.T) {
	e := newEnv(t, hsAuth())
	user, other := newUser(t), newUser(t)
	tok := tokenFor(t, user)
	a := e.create(user, map[string]any{"title": "a"})
	b := e.create(user, map[string]any{"title": "b", "parent_id": a.ID})
	c := e.create(user, map[string]any{"title": "c", "parent_id": b.ID})
	d := e.create(user, map[string]any{"title": "d", "parent_id": c.ID}) // the fourth level
	theirs := e.create(other, map[string]any{"title": "theirs"})
	series := e.create(user, map[string]any{"title": "weekly", "due_date": "2027-01-04", "recurrence": "FREQ=WEEKLY"})
	x := e.create(user, map[string]any{"title": "x", "parent_id": a.ID})
	if *d.ParentID != c.ID || *b.ParentID != a.ID || a.ParentID != nil {
		t.Fatalf("parents: %v %v %v", a.ParentID, b.ParentID, d.ParentID)
	}
	before := drawTree(must2(e.list(user, "")))
	for _, c := range []struct {
		what string
		body map[string]any
		loc  string
	}{
		{"a missing parent", map[string]any{"parent_id": d.ID + 1000000}, "parent_id"},
		{"another user's parent", map[string]any{"parent_id": theirs.ID}, "parent_id"},
		{"a fifth level", map[string]any{"parent_id": d.ID}, "parent_id"},
		{"a recurring parent", map[string]any{"parent_id": series.ID}, "parent_id"},
		{"a recurring subtask", map[string]any{"parent_id": a.ID, "due_date": "2027-01-04", "recurrence": "FREQ=DAILY"}, "recurrence"},
		{"after a task under another parent", map[string]any{"parent_id": a.ID, "after": c.ID}, "after"},
		{"after a subtask, at the top level", map[string]any{"after": b.ID}, "after"},
		{"after another user's task", map[string]any{"after": theirs.ID}, "after"},
		{"parent_id not a number", map[string]any{"parent_id": "1"}, "parent_id"},
		{"parent_id zero", map[string]any{"parent_id": 0}, "parent_id"},
		{"after a fraction", map[string]any{"after": 1.5}, "after"},
	} {
		c.body["title"] = "refused"
		wantLoc(t, e.do("POST", "/api/"+user+"/tasks", tok, c.body), "body", c.loc)
	}
	for _, c := range []struct {
		what string
		id   int64
		body map[string]any
		loc  string
	}{
		{"under itself", a.ID, map[string]any{"parent_id": a.ID}, "parent_id"},
		{"under its grandchild (a cycle)", a.ID, map[string]any{"parent_id": c.ID}, "parent_id"},
		{"a subtree of three under a second level", b.ID, map[string]any{"parent_id": x.ID}, "parent_id"},
		{"under another user's task", b.ID, map[string]any{"parent_id": theirs.ID}, "parent_id"},
		{"under a recurring task", b.ID, map[string]any{"parent_id": series.ID}, "parent_id"},
		{"a recurring task under a parent", series.ID, map[string]any{"parent_id": a.ID}, "parent_id"},
		{"after itself", a.ID, map[string]any{"after": a.ID}, "after"},
		{"after a task under another parent", b.ID, map[string]any{"parent_id": a.ID, "after": d.ID}, "after"},
		{"an unknown field", b.ID, map[string]any{"before": a.ID}, "before"},
		{"after negative", b.ID, map[string]any{"after": -3}, "after"},
	} {
		wantLoc(t, e.move(user, c.id, c.body), "body", c.loc)
	}
	e.want(e.move(user, d.ID+1000000, map[string]any{}), 404, "move a missing task")
	e.want(e.move(other, a.ID, map[string]any{}), 404, "move another user's task")
	e.want(e.do("POST", fmt.Sprint("/api/", user, "/tasks/", a.ID, "/move"), tok, "[]"), 422, "a move body that is not an object")
	// A recurring task is neither a parent nor a subtask, whichever way it would become one.
	wantLoc(t, e.do("PATCH", fmt.Sprint("/api/", user, "/tasks/", a.ID), tok, map[string]any{"due_date": "2027-01-04", "recurrence": "FREQ=DAILY"}), "body", "recurrence")
	wantLoc(t, e.do("PATCH", fmt.Sprint("/api/", user, "/tasks/", d.ID), tok, map[string]any{"due_date": "2027-01-04", "recurrence": "FREQ=DAILY"}), "body", "recurrence")
	// after is a create's and a move's; parent_id and position sent back on an update are ignored.
	wantLoc(t, e.do("PATCH", fmt.Sprint("/api/", user, "/tasks/", b.ID), tok, map[string]any{"after": a.ID}), "body", "after")
	r := e.do("PUT", fmt.Sprint("/api/", user, "/tasks/", b.ID), tok, map[string]any{"title": "b", "parent_id": nil, "position": "zzz"})
	if got := decode[Task](t, r); r.status != 200 || got.ParentID == nil || *got.ParentID != a.ID || got.Position != b.Position {
		t.Fatalf("PUT with parent_id and position sent back = %s, want them unchanged", r)
	}
	if got := drawTree(must2(e.list(user, ""))); got != before {
		t.Fatalf("the tree changed under refusals:\n%s\nwas\n%s", got, before)
	}
	// The list's filters: one parent's children, and the top level.
	if kids, total := e.list(user, fmt.Sprint("?parent_id=", a.ID, "&total=true")); len(kids) != 2 || total != 2 {
		t.Fatalf("parent_id=%d: %d tasks, X-Total-Count %d, want 2", a.ID, len(kids), total)
	}
	if top, total := e.list(user, "?parent_id=none&limit=1"); len(top) != 1 || total != -1 {
		t.Fatalf("parent_id=none&limit=1: %d tasks, X-Total-Count %d, want 1 and none (a filtered list)", len(top), total)
	}
	if top, _ := e.list(user, "?parent_id=none&total=true"); len(top) != 2 {
		t.Fatalf("parent_id=none: %d tasks, want a and the weekly one", len(top))
	}
	for _, q := range []string{"0", "-1", "x", "01", "none&parent_id=none"} {
		wantLoc(t, e.do("GET", "/api/"+user+"/tasks?parent_id="+q, tok, nil), "query", "parent_id")
	}
}

// TestTreeOrder: a new task goes first among its siblings, or right after one
// (after); the move route reorders and nests; sort=position pages by cursor in
// byte order. On a database whose collation orders letters as people read them
// (ICU en-US: a, A, b, B) and on one with LC_CTYPE C, the order is the same.
func TestTreeOrder(t *testing.T) {
	for _, options := range []string{"", "TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'", "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"} {
		t.Run(cmp.Or(options, "default"), func(t *testing.T) {
			db := testDB
			if options != "" {
				db = testStore(t, newDatabase(t, options), 5*time.Second)
				if err := db.migrate(context.Background(), slog.New(slog.DiscardHandler)); err != nil {
					t.Fatal(err)
				}
			}
			e := newEnvDB(t, db, testConfig(hsAuth()))
			user := newUser(t)
			ids := map[string]int64{}
			for _, title := range []string{"one", "two", "three"} {
				ids[title] = e.create(user, map[string]any{"title": title}).ID
			}
			if got := e.order(user, nil); !slices.Equal(got, []string{"three", "two", "one"}) {
				t.Fatalf("new tasks, first among their siblings: %v", got)
			}
			ids["after two"] = e.create(user, map[string]any{"title": "after two", "after": ids["two"]}).ID
			e.moved(user, ids["one"], nil, nil)
			e.moved(user, ids["three"], nil, ids["after two"])
			if got := e.order(user, nil); !slices.Equal(got, []string{"one", "two", "after two", "three"}) {
				t.Fatalf("after moves: %v", got)
			}
			// Nesting: a task with its subtree moves under another, and back out.
			parent := ids["two"]
			ids["sub"] = e.create(user, map[string]any{"title": "sub", "parent_id": ids["one"]}).ID
			e.moved(user, ids["one"], parent, nil)
			e.moved(user, ids["three"], parent, ids["one"])
			if got, top := e.order(user, &parent), e.order(user, nil); !slices.Equal(got, []string{"one", "three"}) || !slices.Equal(top, []string{"two", "after two"}) {
				t.Fatalf("under two: %v, at the top: %v", got, top)
			}
			if sub := must2(e.list(user, fmt.Sprint("?parent_id=", ids["one"]))); len(sub) != 1 || sub[0].ID != ids["sub"] {
				t.Fatalf("the moved task's subtask: %v", sub)
			}
			e.moved(user, ids["three"], nil, nil)
			// Many moves to one place mix digits and both cases in positions; sort=position
			// pages through them, by cursor, in byte order.
			for i := range 40 {
				ids[fmt.Sprint("m", i)] = e.create(user, map[string]any{"title": fmt.Sprint("m", i), "after": ids["three"]}).ID
			}
			var all []Task
			for path := "/api/" + user + "/tasks?sort=position&limit=7"; path != ""; {
				r := e.do("GET", path, tokenFor(t, user), nil)
				e.want(r, 200, "a page of sort=position")
				all = append(all, decode[[]Task](t, r)...)
				path, _, _ = strings.Cut(strings.TrimPrefix(r.header.Get("Link"), "<"), ">")
			}
			positions := make([]string, len(all))
			for i, task := range all {
				positions[i] = task.Position
			}
			if len(all) != 45 || !slices.IsSorted(positions) || strings.ToLower(strings.Join(positions, "")) == strings.Join(positions, "") {
				t.Fatalf("sort=position paged %d tasks, positions %v: want 45, in byte order, with capitals", len(all), positions)
			}
			if got := e.order(user, nil); !slices.Equal(got[:2], []string{"three", "m39"}) || got[40] != "m0" {
				t.Fatalf("the top level: %v", got)
			}
			// Positions in both cases: the order is their bytes', not the collation's.
			other := newUser(t)
			_, err := db.pool.Exec(context.Background(), `INSERT INTO task_counts VALUES ($1, 5, 5);
				INSERT INTO tasks (user_id, version, title, position) SELECT $1, v, p, p FROM unnest('{a,B,Z,b,1}'::text[]) WITH ORDINALITY AS x(p, v)`,
				pgx.QueryExecModeSimpleProtocol, other)
			if err != nil {
				t.Fatal(err)
			}
			if got := e.order(other, nil); !slices.Equal(got, []string{"1", "B", "Z", "a", "b"}) {
				t.Fatalf("positions 1, B, Z, a, b listed as %v", got)
			}
			byTitle := map[string]int64{}
			for _, task := range must2(e.list(other, "")) {
				byTitle[task.Title] = task.ID
			}
			e.moved(other, byTitle["1"], nil, byTitle["B"])
			e.create(other, map[string]any{"title": "new", "after": byTitle["Z"]})
			if got := e.order(other, nil); !slices.Equal(got, []string{"B", "1", "Z", "new", "a", "b"}) {
				t.Fatalf("after a move and a create: %v", got)
			}
		})
	}
}

// TestTreeCompletion: completing a task completes its open descendants, reopening
// one reopens its completed ancestors, each a write of its own in the feed; a
// recurring task, which has no subtasks, completes as a series does.
func TestTreeCompletion(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	tok := tokenFor(t, user)
	path := func(id int64) string { return fmt.Sprint("/api/", user, "/tasks/", id) }
	p := e.create(user, map[string]any{"title": "p"})
	c1 := e.create(user, map[string]any{"title": "c1", "parent_id": p.ID})
	g1 := e.create(user, map[string]any{"title": "g1", "parent_id": c1.ID})
	c2 := e.create(user, map[string]any{"title": "c2", "parent_id": p.ID})
	done := decode[Task](t, e.do("PATCH", path(c2.ID)+"/complete", tok, nil))
	other := e.create(user, map[string]any{"title": "unrelated"})
	d := &device{tasks: map[int64]Task{}}
	e.pull(user, d, 100)
	changed := func(what string, want ...int64) {
		t.Helper()
		r := e.do("GET", "/api/"+user+"/changes?since="+d.cursor, tok, nil)
		var got []int64
		for _, task := range decode[changesPage](t, r).Tasks {
			got = append(got, task.ID)
		}
		slices.Sort(got)
		slices.Sort(want)
		var distinct bool // each task written has a version of its own: the feed pages by them
		testDB.pool.QueryRow(context.Background(), `SELECT count(*) = count(DISTINCT version) FROM tasks WHERE user_id = $1`, user).Scan(&distinct)
		if !slices.Equal(got, want) || !distinct {
			t.Fatalf("%s: the feed has %v, want %v; versions distinct: %v", what, got, want, distinct)
		}
		e.pull(user, d, 100)
		e.wantSame(user, d, what)
	}
	state := func() string {
		return drawTree(must2(e.list(user, "?parent_id=none"))) + drawTree(must2(e.list(user, fmt.Sprint("?parent_id=", p.ID))))
	}

	e.want(e.do("PATCH", path(p.ID)+"/complete", tok, nil, "If-Match", e.do("GET", path(p.ID), tok, nil).header.Get("ETag")), 200, "complete p")
	changed("completing p", p.ID, c1.ID, g1.ID)
	if got := d.tasks[c2.ID]; !got.Completed || !got.CompletedAt.Equal(*done.CompletedAt) {
		t.Fatalf("c2, completed before, has completed_at %v, want %v", got.CompletedAt, done.CompletedAt)
	}
	e.want(e.do("PATCH", path(g1.ID), tok, map[string]any{"completed": false}), 200, "reopen g1")
	changed("reopening g1", g1.ID, c1.ID, p.ID)
	if d.tasks[c2.ID].Completed != true || d.tasks[other.ID].Completed {
		t.Fatalf("reopening g1 changed its aunt or an unrelated task: %s", state())
	}
	e.want(e.do("PATCH", path(c1.ID), tok, map[string]any{"completed": true, "title": "c1 done"}), 200, "complete c1")
	changed("completing c1", c1.ID, g1.ID)
	if d.tasks[p.ID].Completed || !d.tasks[g1.ID].Completed {
		t.Fatalf("completing c1: %s", state())
	}
	// An open task does not go under a completed one, by a create or a move; a completed one does.
	wantLoc(t, e.do("POST", "/api/"+user+"/tasks", tok, map[string]any{"title": "late", "parent_id": c1.ID}), "body", "parent_id")
	wantLoc(t, e.do("POST", path(other.ID)+"/move", tok, map[string]any{"parent_id": c1.ID}), "body", "parent_id")
	e.want(e.do("POST", path(c2.ID)+"/move", tok, map[string]any{"parent_id": c1.ID}), 200, "move the completed c2 under the completed c1")
	changed("moving c2 under c1", c2.ID)
	// Completing what is completed, and reopening what is open, touch no family.
	e.want(e.do("PATCH", path(c1.ID), tok, map[string]any{"completed": true}), 200, "complete c1 again")
	changed("completing c1 again", c1.ID)
	e.want(e.do("PATCH", path(p.ID), tok, map[string]any{"completed": false}), 200, "reopen open p")
	changed("reopening p, open", p.ID)

	// A recurring task completes as a series: its completed copy is a top-level task, first.
	series := e.create(user, map[string]any{"title": "weekly", "due_date": "2027-01-04", "recurrence": "FREQ=WEEKLY"})
	e.want(e.do("PATCH", path(series.ID)+"/complete", tok, nil), 200, "complete the weekly task")
	top := must2(e.list(user, "?parent_id=none&sort=position"))
	if top[0].Title != "weekly" || !top[0].Completed || top[0].ID == series.ID || top[1].ID != series.ID || top[1].Completed {
		t.Fatalf("after completing a recurring task, the top level is %s", drawTree(top))
	}
	e.pull(user, d, 100)
	e.wantSame(user, d, "after a series moved")
}

// TestTreeDelete: deleting a task deletes its subtree, each task with its
// tombstone in the feed, and counts them all out.
func TestTreeDelete(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	tok := tokenFor(t, user)
	p := e.create(user, map[string]any{"title": "p"})
	c := e.create(user, map[string]any{"title": "c", "parent_id": p.ID})
	g := e.create(user, map[string]any{"title": "g", "parent_id": c.ID})
	c2 := e.create(user, map[string]any{"title": "c2", "parent_id": p.ID})
	keep := e.create(user, map[string]any{"title": "keep"})
	d := &device{tasks: map[int64]Task{}}
	e.pull(user, d, 100)
	item := fmt.Sprint("/api/", user, "/tasks/", p.ID)
	e.want(e.do("DELETE", item, tok, nil, "If-Match", etag(p.Version+100)), 412, "DELETE with a stale If-Match")
	e.want(e.do("DELETE", item, tok, nil), 204, "DELETE p")
	r := e.do("GET", "/api/"+user+"/changes?since="+d.cursor, tok, nil)
	deleted := decode[changesPage](t, r).Deleted
	slices.Sort(deleted)
	if !slices.Equal(deleted, []int64{p.ID, c.ID, g.ID, c2.ID}) {
		t.Fatalf("the feed deleted %v, want p, c, g and c2", deleted)
	}
	if list, total := e.list(user, ""); len(list) != 1 || list[0].ID != keep.ID || total != 1 {
		t.Fatalf("after deleting p: %d tasks (X-Total-Count %d), want keep alone", len(list), total)
	}
	e.pull(user, d, 1)
	e.wantSame(user, d, "after deleting a subtree")
	e.want(e.do("DELETE", fmt.Sprint("/api/", user, "/tasks/", g.ID), tok, nil), 404, "DELETE a task deleted with its parent")
}

// TestTreeConcurrent: moves of one sibling group from many devices at once all
// land, each in its place, with no two siblings at one position; two devices
// nesting two tasks in each other at once make no cycle; creates under a task
// being deleted leave no orphan. A device following the feed draws the tree the
// database holds.
func TestTreeConcurrent(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	tok := tokenFor(t, user)
	var ids []int64
	for i := range 12 {
		ids = append(ids, e.create(user, map[string]any{"title": fmt.Sprint("t", i)}).ID)
	}
	d := &device{tasks: map[int64]Task{}}
	e.pull(user, d, 100)
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for range 15 {
				id, after := ids[rng.IntN(len(ids))], ids[rng.IntN(len(ids))]
				body := map[string]any{"after": after}
				if id == after {
					body["after"] = nil
				}
				r, err := send(e.srv.Client(), e.srv.URL, "POST", fmt.Sprint("/api/", user, "/tasks/", id, "/move"), tok, body)
				if err != nil || r.status != 200 {
					t.Errorf("move %d after %v = %v %v", id, body["after"], r, err)
					return
				}
				if got := decode[Task](t, r); got.ParentID != nil || got.Position == "" {
					t.Errorf("a move answered %s", r)
				}
			}
		})
	}
	wg.Wait()
	e.pull(user, d, 3)
	e.wantSame(user, d, "after concurrent moves")
	if got := e.order(user, nil); len(got) != 12 {
		t.Fatalf("after concurrent moves the top level is %v", got)
	}

	// A under B and B under A at once: one lands, the other is a cycle.
	for round := range 10 {
		a, b := e.create(user, map[string]any{"title": fmt.Sprint("a", round)}), e.create(user, map[string]any{"title": fmt.Sprint("b", round)})
		statuses := make([]int, 2)
		wg.Go(func() {
			r, _ := send(e.srv.Client(), e.srv.URL, "POST", fmt.Sprint("/api/", user, "/tasks/", a.ID, "/move"), tok, map[string]any{"parent_id": b.ID})
			statuses[0] = r.status
		})
		wg.Go(func() {
			r, _ := send(e.srv.Client(), e.srv.URL, "POST", fmt.Sprint("/api/", user, "/tasks/", b.ID, "/move"), tok, map[string]any{"parent_id": a.ID})
			statuses[1] = r.status
		})
		wg.Wait()
		slices.Sort(statuses)
		if !slices.Equal(statuses, []int{200, 422}) {
			t.Fatalf("round %d: moving a under b and b under a at once = %v, want one 200 and one 422", round, statuses)
		}
	}

	// Creates under a task while it is deleted: each is in the subtree deleted, or refused.
	for round := range 10 {
		p := e.create(user, map[string]any{"title": fmt.Sprint("p", round)})
		statuses := make([]int, 4)
		for i := range statuses {
			wg.Go(func() {
				r, _ := send(e.srv.Client(), e.srv.URL, "POST", "/api/"+user+"/tasks", tok, map[string]any{"title": "child", "parent_id": p.ID})
				statuses[i] = r.status
			})
		}
		wg.Go(func() {
			send(e.srv.Client(), e.srv.URL, "DELETE", fmt.Sprint("/api/", user, "/tasks/", p.ID), tok, nil)
		})
		wg.Wait()
		for _, s := range statuses {
			if s != 201 && s != 422 {
				t.Fatalf("round %d: creates under a task being deleted = %v, want 201 or 422", round, statuses)
			}
		}
	}
	e.pull(user, d, 7)
	e.wantSame(user, d, "after the races")
	for _, task := range d.tasks {
		seen := map[int64]bool{}
		for at := task; at.ParentID != nil; at = d.tasks[*at.ParentID] {
			if _, ok := d.tasks[*at.ParentID]; !ok || seen[at.ID] {
				t.Fatalf("task %d: an orphan or in a cycle at %d:\n%s", task.ID, at.ID, drawTree(slices.Collect(maps.Values(d.tasks))))
			}
			seen[at.ID] = true
		}
	}
}

// TestTreeRenumber: always inserting at the same place, right after one task,
// runs out of positions between it and the one moved before; the move then
// renumbers that task and the siblings before it (each a write in the feed) and
// lands, and the next few hundred moves write one row each.
func TestTreeRenumber(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	var ids []int64
	for i := range 8 {
		ids = append(ids, e.create(user, map[string]any{"title": fmt.Sprint("t", i)}).ID)
	}
	other := e.create(user, map[string]any{"title": "elsewhere", "parent_id": ids[0]}) // another group, left alone
	d := &device{tasks: map[int64]Task{}}
	e.pull(user, d, 100)
	version := func() (v int64) {
		testDB.pool.QueryRow(context.Background(), `SELECT version FROM task_counts WHERE user_id = $1`, user).Scan(&v)
		return v
	}
	anchor := ids[4] // fourth: t7, t6, t5, t4, then the others
	var renumbered, moves int
	for i := range 700 {
		id := ids[i%4] // each of t0 to t3 in turn right after t4
		before := version()
		e.moved(user, id, nil, anchor)
		switch v := version(); v - before {
		case 1:
		case 1 + 4: // t7 to t4, then the move
			renumbered++
		default:
			t.Fatalf("move %d wrote %d versions", i, v-before)
		}
		if got := e.order(user, nil); !slices.Equal(got[:5], []string{"t7", "t6", "t5", "t4", fmt.Sprint("t", i%4)}) {
			t.Fatalf("move %d: the order is %v", i, got)
		}
		moves++
	}
	// 700 moves at one place: about one renumbering in 300 (each halves the room, 5 to 6 per character, 64 characters).
	if renumbered < 1 || renumbered > 3 {
		t.Fatalf("%d moves at one place renumbered %d times, want 1 to 3", moves, renumbered)
	}
	for _, task := range decode[changesPage](t, e.do("GET", "/api/"+user+"/changes?since="+d.cursor, tokenFor(t, user), nil)).Tasks {
		if task.ID == other.ID {
			t.Fatalf("a task of another group changed: %+v", task)
		}
	}
	e.pull(user, d, 50)
	e.wantSame(user, d, "after renumbering")
}

// TestMoveHonoursIfMatchAndIdempotencyKey: a move under a stale If-Match is a 412
// that moves nothing; one retried with its Idempotency-Key moves once, and the
// key with another move is a 422.
func TestMoveHonoursIfMatchAndIdempotencyKey(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	a, b, c := e.create(user, map[string]any{"title": "a"}), e.create(user, map[string]any{"title": "b"}), e.create(user, map[string]any{"title": "c"})
	tag := e.do("GET", fmt.Sprint("/api/", user, "/tasks/", a.ID), tokenFor(t, user), nil).header.Get("ETag")
	e.create(user, map[string]any{"title": "d", "parent_id": a.ID}) // a's version stays: a create under it writes the new task alone
	r := e.move(user, a.ID, map[string]any{"after": c.ID}, "If-Match", `"999"`)
	if e.want(r, 412, "a move under a stale If-Match"); r.header.Get("ETag") != tag {
		t.Fatalf("412's ETag %q, want a's %q", r.header.Get("ETag"), tag)
	}
	if got := e.order(user, nil); !slices.Equal(got, []string{"c", "b", "a"}) {
		t.Fatalf("after a refused move: %v", got)
	}
	first := e.move(user, a.ID, map[string]any{"after": c.ID}, "If-Match", tag, "Idempotency-Key", "move-a")
	e.want(first, 200, "a move under If-Match and an Idempotency-Key")
	e.moved(user, b.ID, nil, nil) // b, c, a, d under a
	again := e.move(user, a.ID, map[string]any{"after": c.ID}, "If-Match", tag, "Idempotency-Key", "move-a")
	if again.status != 200 || again.header.Get("Idempotent-Replayed") != "true" || string(again.body) != string(first.body) {
		t.Fatalf("the move retried = %s %v, want the first answer replayed", again, again.header)
	}
	if got := e.order(user, nil); !slices.Equal(got, []string{"b", "c", "a"}) {
		t.Fatalf("after a replayed move: %v", got)
	}
	wantLoc(t, e.move(user, a.ID, map[string]any{"after": b.ID}, "Idempotency-Key", "move-a"), "header", "Idempotency-Key")
}

// TestMoveRenumberingKeepsIfMatch: a move under a current If-Match that must first
// renumber its group, the task itself among the renumbered, lands (200, not 404).
func TestMoveRenumberingKeepsIfMatch(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	tok := tokenFor(t, user)
	a := e.create(user, map[string]any{"title": "A"})
	task := e.create(user, map[string]any{"title": "T"}) // first, so before A
	for i := 0; ; i++ {                                  // until the positions right after A run out
		if n := e.create(user, map[string]any{"title": "x", "after": a.ID}); len(n.Position) == 64 && strings.HasSuffix(n.Position, "01") {
			break
		} else if i > 3000 {
			t.Fatalf("the positions after A never ran out: %q", n.Position)
		}
	}
	one := "/api/" + user + "/tasks/" + fmt.Sprint(task.ID)
	r := e.do("POST", one+"/move", tok, map[string]any{"after": a.ID}, "If-Match", e.do("GET", one, tok, nil).header.Get("ETag"))
	if e.want(r, 200, "a move under a current If-Match that renumbers its group"); e.order(user, nil)[1] != "T" {
		t.Fatalf("after the move the order is %v, want T right after A", e.order(user, nil)[:3])
	}
}
