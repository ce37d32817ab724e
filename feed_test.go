// feed_test.go tests the change feed: its answers, its cursor, and that a device following it converges.
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// changesPage is one answer of the change feed.
type changesPage struct {
	Tasks   []Task  `json:"tasks"`
	Deleted []int64 `json:"deleted"`
	Cursor  string  `json:"cursor"`
	HasMore bool    `json:"has_more"`
}

// device is a client's copy of one user's tasks, kept by the feed.
type device struct {
	tasks  map[int64]Task
	cursor string
}

// pull follows the feed until has_more is false, applying each page, and returns the pages read.
func (e *env) pull(user string, d *device, limit int) int {
	e.t.Helper()
	pages := 0
	for {
		q := url.Values{"limit": {strconv.Itoa(limit)}}
		if d.cursor != "" {
			q.Set("since", d.cursor)
		}
		r := e.do("GET", "/api/"+user+"/changes?"+q.Encode(), tokenFor(e.t, user), nil)
		e.want(r, 200, "GET changes")
		p := decode[changesPage](e.t, r)
		if len(p.Tasks)+len(p.Deleted) > limit || p.Cursor == "" || p.Tasks == nil || p.Deleted == nil {
			e.t.Fatalf("page %s: over the limit %d, or a field missing", r, limit)
		}
		for _, t := range p.Tasks {
			d.tasks[t.ID] = t
		}
		for _, id := range p.Deleted {
			delete(d.tasks, id)
		}
		d.cursor, pages = p.Cursor, pages+1
		if !p.HasMore {
			return pages
		}
	}
}

// wantSame fails unless the device holds exactly the user's list.
func (e *env) wantSame(user string, d *device, what string) {
	e.t.Helper()
	list, total := e.list(user, "?limit=100")
	if total != len(list) {
		e.t.Fatalf("%s: the user has %d tasks, more than one page", what, total)
	}
	want := map[int64]Task{}
	for _, t := range list {
		want[t.ID] = t
	}
	if !reflect.DeepEqual(d.tasks, want) {
		e.t.Fatalf("%s: the device holds\n%v\nthe list is\n%v", what, d.tasks, want)
	}
}

func TestFeed(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	tok := tokenFor(t, user)
	var ids []int64
	for i := range 5 {
		ids = append(ids, e.create(user, map[string]any{"title": fmt.Sprint("task ", i)}).ID)
	}
	d := &device{tasks: map[int64]Task{}}
	if pages := e.pull(user, d, 2); pages != 3 {
		t.Fatalf("a first sync of 5 tasks at limit=2 took %d pages, want 3", pages)
	}
	e.wantSame(user, d, "first sync")

	// Each task that changed appears once, in its latest state; a deleted one by id.
	e.want(e.do("PATCH", fmt.Sprint("/api/", user, "/tasks/", ids[0]), tok, map[string]any{"title": "renamed"}), 200, "PATCH")
	e.want(e.do("PATCH", fmt.Sprint("/api/", user, "/tasks/", ids[0]), tok, map[string]any{"title": "renamed again"}), 200, "PATCH")
	e.want(e.do("PATCH", fmt.Sprint("/api/", user, "/tasks/", ids[1], "/complete"), tok, nil), 200, "toggle")
	e.want(e.do("DELETE", fmt.Sprint("/api/", user, "/tasks/", ids[2]), tok, nil), 204, "DELETE")
	e.want(e.do("DELETE", fmt.Sprint("/api/", user, "/tasks/", ids[2]), tok, nil), 404, "DELETE again")
	created := e.create(user, map[string]any{"title": "new"})
	r := e.do("GET", "/api/"+user+"/changes?since="+d.cursor, tok, nil)
	e.want(r, 200, "GET changes")
	p := decode[changesPage](t, r)
	var got []string
	for _, task := range p.Tasks {
		got = append(got, fmt.Sprint(task.ID, task.Title, task.Completed))
	}
	want := []string{fmt.Sprint(ids[0], "renamed again", false), fmt.Sprint(ids[1], "task 1", true), fmt.Sprint(created.ID, "new", false)}
	if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(p.Deleted, []int64{ids[2]}) || p.HasMore {
		t.Fatalf("changes = %s, want tasks %v and deleted [%d]", r, want, ids[2])
	}
	if p.Tasks[1].CompletedAt == nil {
		t.Fatalf("a completed task in the feed has no completed_at: %s", r)
	}
	e.pull(user, d, 1000)
	e.wantSame(user, d, "after changes")

	// Polling an unchanged feed: an empty answer, then 304 with the ETag it gave.
	r = e.do("GET", "/api/"+user+"/changes?since="+d.cursor, tok, nil)
	if p := decode[changesPage](t, r); r.status != 200 || len(p.Tasks)+len(p.Deleted) != 0 || p.HasMore || r.header.Get("ETag") == "" {
		t.Fatalf("an unchanged feed = %s %v", r, r.header)
	}
	tag := r.header.Get("ETag")
	r = e.do("GET", "/api/"+user+"/changes?since="+d.cursor, tok, nil, "If-None-Match", tag)
	if r.status != 304 || len(r.body) != 0 || r.header.Get("ETag") != tag {
		t.Fatalf("If-None-Match with the feed's ETag = %s %v, want 304", r, r.header)
	}
	e.create(user, map[string]any{"title": "one more"})
	e.want(e.do("GET", "/api/"+user+"/changes?since="+d.cursor, tok, nil, "If-None-Match", tag), 200, "If-None-Match after a change")
	// The first sync's ETag too.
	r = e.do("GET", "/api/"+user+"/changes", tok, nil)
	e.want(e.do("GET", "/api/"+user+"/changes", tok, nil, "If-None-Match", r.header.Get("ETag")), 304, "first sync, unchanged")

	// Auth and isolation, as on every route: another user's feed is not this one's.
	e.want(e.do("GET", "/api/"+user+"/changes", "", nil), 401, "no token")
	e.want(e.do("GET", "/api/someone-else/changes", tok, nil), 403, "another user's feed")
	// A cursor from another user's feed (a browser where another account signed in) is refused.
	other := newUser(t)
	wantLoc(t, e.do("GET", "/api/"+other+"/changes?since="+d.cursor, tokenFor(t, other), nil), "query", "since")
}

// TestFeedFirstSyncPages: a first sync's pages hold tasks only, full up to the
// limit, however many tasks were deleted before it.
func TestFeedFirstSyncPages(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	for i := range 6 {
		task := e.create(user, map[string]any{"title": fmt.Sprint("task ", i)})
		if i%2 == 0 {
			e.want(e.do("DELETE", fmt.Sprint("/api/", user, "/tasks/", task.ID), tokenFor(t, user), nil), 204, "DELETE")
		}
	}
	r := e.do("GET", "/api/"+user+"/changes?limit=2", tokenFor(t, user), nil)
	if p := decode[changesPage](t, r); len(p.Tasks) != 2 || len(p.Deleted) != 0 || !p.HasMore {
		t.Fatalf("a first sync's first page = %s, want 2 tasks and more", r)
	}
	p := decode[changesPage](t, r)
	r = e.do("GET", "/api/"+user+"/changes?limit=2&since="+p.Cursor, tokenFor(t, user), nil)
	if p := decode[changesPage](t, r); len(p.Tasks) != 1 || len(p.Deleted) != 0 || p.HasMore {
		t.Fatalf("a first sync's second page = %s, want the last task and no deletions from before the sync", r)
	}
	// A deletion after the first page, of a task the device holds, still comes.
	d := &device{tasks: map[int64]Task{}}
	r = e.do("GET", "/api/"+user+"/changes?limit=1", tokenFor(t, user), nil)
	first := decode[changesPage](t, r)
	d.tasks[first.Tasks[0].ID], d.cursor = first.Tasks[0], first.Cursor
	e.want(e.do("DELETE", fmt.Sprint("/api/", user, "/tasks/", first.Tasks[0].ID), tokenFor(t, user), nil), 204, "DELETE")
	e.pull(user, d, 1)
	e.wantSame(user, d, "first sync with a deletion between its pages")
}

func TestFeedRefusesBadInput(t *testing.T) {
	e := newEnv(t, hsAuth(), func(c *config) { c.SyncRetention = time.Hour })
	user := newUser(t)
	tok := tokenFor(t, user)
	for range 3 {
		e.create(user, map[string]any{"title": "x"})
	}
	me := userTag(user)
	good := feedCursor{3, time.Now(), -1, me}.String()
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, since := range []string{"", "x", "!!!!", good + "=", good[:len(good)-1], base64.URLEncoding.EncodeToString([]byte("1.20.-1." + me)),
		feedCursor{-2, time.Now(), -1, me}.String(), feedCursor{1, time.Now(), -2, me}.String(),
		feedCursor{1, time.Now(), -1, userTag("someone else")}.String(),
		b64("01.2.-1." + me), b64("+1.2.-1." + me), b64("1.-1." + me), b64("1.2.3.-1." + me), b64("1.x.-1." + me),
		b64("1.2.-2." + me), b64("1.2.-1")} {
		wantLoc(t, e.do("GET", "/api/"+user+"/changes?since="+url.QueryEscape(since), tok, nil), "query", "since")
	}
	for _, limit := range []string{"0", "1001", "-1", "x", "1e3"} {
		wantLoc(t, e.do("GET", "/api/"+user+"/changes?limit="+limit, tok, nil), "query", "limit")
	}
	wantLoc(t, e.do("GET", "/api/"+user+"/changes?limit=1&limit=2", tok, nil), "query", "limit")
	wantLoc(t, e.do("GET", "/api/"+user+"/changes?since="+good+"&since="+good, tok, nil), "query", "since")

	// Older than SYNC_RETENTION: 410, whether or not anything was deleted since.
	old := feedCursor{3, time.Now().Add(-time.Hour - time.Second), -1, me}.String()
	r := e.do("GET", "/api/"+user+"/changes?since="+old, tok, nil)
	if r.status != 410 || !json410(r) {
		t.Fatalf("a cursor older than SYNC_RETENTION = %s, want 410 with a detail", r)
	}
	// Past half of it, a 200 with a new cursor rather than a 304 that keeps the old one.
	aging := feedCursor{3, time.Now().Add(-40 * time.Minute), -1, me}
	r = e.do("GET", "/api/"+user+"/changes?since="+aging.String(), tok, nil, "If-None-Match", etag(aging.Version))
	if p := decode[changesPage](t, r); r.status != 200 || p.Cursor == aging.String() {
		t.Fatalf("a cursor past half the retention, unchanged = %s, want 200 with a new cursor", r)
	}
	// Issued in the future (another replica's clock, or forged): as if issued now.
	future := feedCursor{3, time.Now().Add(time.Hour), -1, me}
	r = e.do("GET", "/api/"+user+"/changes?since="+future.String(), tok, nil)
	if p := decode[changesPage](t, r); r.status != 200 || p.Cursor == future.String() {
		t.Fatalf("a cursor issued in the future = %s, want 200 with a cursor of now", r)
	}
	// Ahead of the user's version (a database restored from a backup): 410, start over.
	ahead := feedCursor{4, time.Now(), -1, me}.String()
	if r := e.do("GET", "/api/"+user+"/changes?since="+ahead, tok, nil); r.status != 410 || !json410(r) {
		t.Fatalf("a cursor ahead of the feed = %s, want 410", r)
	}
}

// json410 reports whether r's body tells the client to sync from scratch.
func json410(r result) bool {
	var body struct{ Detail string }
	return json.Unmarshal(r.body, &body) == nil && body.Detail != ""
}

// TestFeedConverges runs writers that create (at the top, under a task, after a
// sibling), update, toggle (completing a parent, reopening a subtask), move and
// delete (a subtree) one user's tasks concurrently while a device follows the
// feed in small pages, over many random schedules; when the writers stop, one
// more pull must leave the device holding exactly the list, and so drawing the
// same tree in the same order.
func TestFeedConverges(t *testing.T) {
	e := newEnv(t, hsAuth())
	schedules := 12
	if testing.Short() {
		schedules = 3
	}
	var moved, nested atomic.Int64 // moves that landed, subtasks left at the end: the schedules grew trees
	defer func() {
		if moved.Load() == 0 || nested.Load() == 0 {
			t.Errorf("%d moves landed and %d subtasks were left over %d schedules: the schedules grew no trees", moved.Load(), nested.Load(), schedules)
		}
	}()
	for s := range schedules {
		rng := rand.New(rand.NewPCG(uint64(s), uint64(time.Now().UnixNano())))
		user := newUser(t) + strconv.Itoa(s)
		tok := tokenFor(t, user)
		writers, ops := 2+rng.IntN(4), 15+rng.IntN(25)
		var wg sync.WaitGroup
		for w := range writers {
			seed := rng.Uint64()
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(seed, uint64(w)))
				var mine []int64
				for range ops {
					path := func() string { return fmt.Sprint("/api/", user, "/tasks/", mine[rng.IntN(len(mine))]) }
					some := func() any { // one of mine, or null
						if len(mine) == 0 || rng.IntN(2) == 0 {
							return nil
						}
						return mine[rng.IntN(len(mine))]
					}
					switch op := rng.IntN(14); {
					case op < 4 || len(mine) == 0:
						r := e.do("POST", "/api/"+user+"/tasks", tok, map[string]any{"title": fmt.Sprint("w", w, " ", rng.Int()), "parent_id": some()})
						if r.status == 201 {
							mine = append(mine, decode[Task](t, r).ID)
						}
					case op < 6:
						e.do("PATCH", path(), tok, map[string]any{"title": fmt.Sprint("edit ", rng.Int()), "priority": "high"})
					case op < 8:
						e.do("PATCH", path()+"/complete", tok, nil)
					case op < 9:
						e.do("PATCH", path(), tok, map[string]any{"completed": false})
					case op < 12:
						if e.do("POST", path()+"/move", tok, map[string]any{"parent_id": some(), "after": some()}).status == 200 {
							moved.Add(1)
						}
					default:
						i := rng.IntN(len(mine))
						e.do("DELETE", fmt.Sprint("/api/", user, "/tasks/", mine[i]), tok, nil)
						mine = append(mine[:i], mine[i+1:]...)
					}
				}
			})
		}
		d := &device{tasks: map[int64]Task{}}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		limit := 1 + rng.IntN(4)
		for polling := true; polling; {
			select {
			case <-done:
				polling = false
			default:
				e.pull(user, d, limit)
			}
		}
		e.pull(user, d, limit)
		what := fmt.Sprintf("schedule %d (%d writers × %d writes, pages of %d)", s, writers, ops, limit)
		e.wantSame(user, d, what)
		if got, want := drawTree(slices.Collect(maps.Values(d.tasks))), drawTree(must2(e.list(user, "?sort=position&limit=1000"))); got != want {
			t.Fatalf("%s: the device draws\n%s\nthe database\n%s", what, got, want)
		}
		for _, task := range d.tasks {
			if task.ParentID != nil {
				nested.Add(1)
			}
		}
	}
}

// TestFeedNoOpWrites: a write that changes no row (404, 412, with a key or
// without) moves no version: the feed still answers 304 to its ETag, and a
// task's ETag is the user's version when it was last written.
func TestFeedNoOpWrites(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	tok := tokenFor(t, user)
	task := e.create(user, map[string]any{"title": "kept"})
	item := fmt.Sprint("/api/", user, "/tasks/", task.ID)
	missing := fmt.Sprint("/api/", user, "/tasks/", task.ID+1000000)
	feed := e.do("GET", "/api/"+user+"/changes", tok, nil)
	tag := feed.header.Get("ETag")
	if got := e.do("GET", item, tok, nil).header.Get("ETag"); got != tag {
		t.Fatalf("the only task's ETag = %s, want the feed's %s: both are the user's version", got, tag)
	}
	for _, w := range []struct {
		method, path string
		body         any
		header       []string
		status       int
	}{
		{"PATCH", missing, map[string]any{"title": "x"}, nil, 404},
		{"PUT", missing, map[string]any{"title": "x"}, []string{"Idempotency-Key", "k1"}, 404},
		{"PATCH", missing + "/complete", nil, nil, 404},
		{"DELETE", missing, nil, nil, 404},
		{"PATCH", item, map[string]any{"title": "x"}, []string{"If-Match", `"999"`}, 412},
		{"PATCH", item + "/complete", nil, []string{"If-Match", `"999"`, "Idempotency-Key", "k2"}, 412},
		{"DELETE", item, nil, []string{"If-Match", `"999"`}, 412},
	} {
		e.want(e.do(w.method, w.path, tok, w.body, w.header...), w.status, w.method+" "+w.path)
		e.want(e.do("GET", "/api/"+user+"/changes", tok, nil, "If-None-Match", tag), 304, "the feed after "+w.method+" "+w.path)
	}
}

// TestFeedTombstonesExpire checks that the purge removes only tombstones past
// the retention and its hour of margin: with a retention of an hour, one 2 h 1 min
// old goes, one 1 h 30 min old and a new one stay.
func TestFeedTombstonesExpire(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	for range 3 { // tombstones of versions 2, 4 and 6
		task := e.create(user, map[string]any{"title": "to delete"})
		e.want(e.do("DELETE", fmt.Sprint("/api/", user, "/tasks/", task.ID), tokenFor(t, user), nil), 204, "DELETE")
	}
	ctx := t.Context()
	if _, err := testDB.pool.Exec(ctx, `UPDATE task_tombstones SET deleted_at = now() - CASE version
		WHEN 2 THEN interval '2 hours 1 minute' ELSE interval '90 minutes' END WHERE user_id = $1 AND version IN (2, 4)`, user); err != nil {
		t.Fatal(err)
	}
	if _, err := testDB.deleteOld(ctx, time.Hour, forgetBatch); err != nil {
		t.Fatal(err)
	}
	rows, _ := testDB.pool.Query(ctx, `SELECT version FROM task_tombstones WHERE user_id = $1 ORDER BY version`, user)
	left, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil || !slices.Equal(left, []int64{4, 6}) {
		t.Fatalf("tombstones left: %v (%v), want those of versions 4 and 6", left, err)
	}
}

// TestFeedCommitOrder pins the property the feed rests on: a write that takes
// the user's next version while another holds the one before waits until that
// one commits, so two of one user's writes cannot commit in the opposite order
// to their versions, and a feed read between them misses neither.
func TestFeedCommitOrder(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	a, b := e.create(user, map[string]any{"title": "a"}), e.create(user, map[string]any{"title": "b"})
	d := &device{tasks: map[int64]Task{}}
	e.pull(user, d, 10)
	ctx := t.Context()
	inTx := func() (querier, func() error) {
		tx := must(testDB.pool.Begin(ctx))
		t.Cleanup(func() { tx.Rollback(ctx) })
		return tx, func() error { return tx.Commit(ctx) }
	}
	first, commitFirst := inTx()
	if _, err := testDB.updateTask(ctx, first, user, a.ID, taskChange{Title: new("a, first")}, nil); err != nil {
		t.Fatal(err)
	}
	// The second write, on another task, starts after the first and waits on it.
	second, commitSecond := inTx()
	wrote := make(chan error, 1)
	go func() {
		_, err := testDB.updateTask(ctx, second, user, b.ID, taskChange{Title: new("b, second")}, nil)
		wrote <- err
	}()
	for tries, waiting := 0, false; !waiting; tries++ { // until it waits on the first's lock
		if tries == 1000 {
			t.Fatal("the second write did not wait for the first to commit")
		}
		time.Sleep(10 * time.Millisecond)
		testDB.pool.QueryRow(ctx, `SELECT count(*) > 0 FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND query LIKE '%UPDATE task_counts SET version%'`).Scan(&waiting)
	}
	e.pull(user, d, 10)
	if d.tasks[a.ID].Title != "a" || d.tasks[b.ID].Title != "b" {
		t.Fatalf("a read while neither committed holds %v", d.tasks)
	}
	// The first commits; the second has written but not committed: a read sees the first only.
	if err := commitFirst(); err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	e.pull(user, d, 10)
	if d.tasks[a.ID].Title != "a, first" || d.tasks[b.ID].Title != "b" {
		t.Fatalf("a read between the commits holds %v", d.tasks)
	}
	// The second commits: the next read, from the cursor the last one gave, has it.
	if err := commitSecond(); err != nil {
		t.Fatal(err)
	}
	e.pull(user, d, 10)
	e.wantSame(user, d, "after both commits")
}
