// tasks_test.go tests the task handlers: the lifecycle, isolation between users, listing, the per-user limit, ETag/If-Match, Idempotency-Key and concurrent writes.
package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

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
		!created.DueDate.At.Equal(time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)) || created.DueDate.Kind != dueInstant || !slices.Equal(created.Tags, []string{"home", "shop"}) ||
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
		{"?status=pending&tag=home&q=O&sort=title&order=desc&limit=1&total=true", []string{"Echo"}, 2},
		{"?status=pending&tag=home&q=O&sort=title&order=desc&limit=1", []string{"Echo"}, -1}, // more follow: not counted unless asked
		{"?status=pending&tag=home&q=O&sort=title&order=desc&limit=2", []string{"Echo", "Bravo 50% off"}, 2},
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

	// A create whose answer was lost, retried with its Idempotency-Key after it
	// took the last place, replays rather than answering 409.
	keyed := newUser(t)
	post := func(key string, body map[string]any) result {
		return e.do("POST", "/api/"+keyed+"/tasks", tokenFor(t, keyed), body, "Idempotency-Key", key)
	}
	for i := range limit {
		e.want(post(fmt.Sprint("k", i), map[string]any{"title": fmt.Sprint("keyed ", i)}), 201, "keyed create")
	}
	last := fmt.Sprint("k", limit-1)
	r = post(last, map[string]any{"title": fmt.Sprint("keyed ", limit-1)})
	if r.status != 201 || r.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry of the create that took the last place = %s, want 201 replayed", r)
	}
	wantLoc(t, post(last, map[string]any{"title": "another body"}), "header", "Idempotency-Key")
	e.want(post("new-key", map[string]any{"title": "one too many"}), 409, "a new key beyond the limit")

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
	r = e.do("GET", item, tok, nil)
	if got := decode[Task](t, r); got.Title != "from the laptop" || got.Completed || r.header.Get("ETag") != v2 {
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
	// Whatever happened to the task since, the retry gets the first answer as it was.
	item := first.header.Get("Location")
	e.want(e.do("PATCH", item, tok, map[string]any{"title": "renamed"}), 200, "PATCH")
	e.want(e.do("DELETE", item, tok, nil), 204, "DELETE")
	retry = e.do("POST", base, tok, body, "Idempotency-Key", "key-1")
	if retry.status != 201 || !bytes.Equal(retry.body, first.body) || retry.header.Get("Location") != item ||
		retry.header.Get("ETag") != first.header.Get("ETag") || retry.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry after a delete = %s %v, want the first answer %s", retry, retry.header, first)
	}
	e.create(user, body)
	// A key matches its request as it is hashed now: an instant is not the date
	// at its midnight, nor the floating time with the same digits.
	for _, c := range [][2]string{{"2026-12-01T00:00:00Z", "2026-12-01"}, {"2026-12-01T10:00:00Z", "2026-12-01T10:00"}} {
		key := "due-" + c[1]
		e.want(e.do("POST", base, tok, map[string]any{"title": "i", "due_date": c[0]}, "Idempotency-Key", key), 201, "POST an instant")
		wantLoc(t, e.do("POST", base, tok, map[string]any{"title": "i", "due_date": c[1]}, "Idempotency-Key", key), "header", "Idempotency-Key")
		e.want(e.do("DELETE", e.do("POST", base, tok, map[string]any{"title": "i", "due_date": c[0]}, "Idempotency-Key", key).header.Get("Location"), tok, nil), 204, "DELETE")
	}
	// Reminders are part of the request: the same key with other reminders is another request.
	reminded := e.do("POST", base, tok, map[string]any{"title": "r", "reminders": []any{map[string]any{"at": "2030-01-01T08:00:00Z"}}}, "Idempotency-Key", "reminders")
	e.want(reminded, 201, "POST with a reminder")
	wantLoc(t, e.do("POST", base, tok, map[string]any{"title": "r", "reminders": []any{map[string]any{"at": "2030-01-01T09:00:00Z"}}}, "Idempotency-Key", "reminders"),
		"header", "Idempotency-Key")
	e.want(e.do("DELETE", reminded.header.Get("Location"), tok, nil), 204, "DELETE")
	wantLoc(t, e.do("POST", base, tok, body, "Idempotency-Key", "has space"), "header", "Idempotency-Key")
	wantLoc(t, e.do("POST", base, tok, body, "Idempotency-Key", ""), "header", "Idempotency-Key") // an empty key is not no key
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

	// Keys past their lifetime are deleted, a batch at a time; fresh ones stay.
	if _, err := testDB.pool.Exec(context.Background(), `UPDATE idempotency_keys SET created_at = now() - interval '25 hours'
		WHERE user_id = $1`, user); err != nil {
		t.Fatal(err)
	}
	var old int64
	testDB.pool.QueryRow(context.Background(), `SELECT count(*) FROM idempotency_keys WHERE created_at < now() - interval '24 hours'`).Scan(&old)
	for deleted := int64(0); deleted < old; {
		n, err := testDB.deleteOld(context.Background(), 30*24*time.Hour, 2)
		if err != nil {
			t.Fatal(err)
		}
		if n > 2 || n == 0 {
			t.Fatalf("a cleanup batch of 2 deleted %d keys, with %d of %d old ones left", n, old-deleted, old)
		}
		deleted += n
	}
	var left int
	testDB.pool.QueryRow(context.Background(), `SELECT count(*) FROM idempotency_keys WHERE user_id = ANY($1)`, []string{user, racer}).Scan(&left)
	if left != 1 {
		t.Fatalf("%d keys left, want only the racer's", left)
	}
}

// TestIdempotentWrites: an update, a toggle or a delete retried with its
// Idempotency-Key gets its first answer and changes nothing.
func TestIdempotentWrites(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	tok := tokenFor(t, user)
	task := e.create(user, map[string]any{"title": "water plants"})
	path := fmt.Sprint("/api/", user, "/tasks/", task.ID)

	first := e.do("PATCH", path, tok, map[string]any{"title": "water the plants"}, "Idempotency-Key", "edit-1")
	e.want(first, 200, "PATCH with a key")
	e.want(e.do("PATCH", path, tok, map[string]any{"priority": "high"}), 200, "another device's PATCH")
	retry := e.do("PATCH", path, tok, `{ "title" : "water the plants" }`, "Idempotency-Key", "edit-1", "Content-Type", "application/json")
	if retry.status != 200 || !bytes.Equal(retry.body, first.body) || retry.header.Get("ETag") != first.header.Get("ETag") ||
		retry.header.Get("Idempotent-Replayed") != "true" || first.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("retried PATCH = %s %v, want the first answer %s", retry, retry.header, first)
	}
	if now := decode[Task](t, e.do("GET", path, tok, nil)); now.Priority != "high" || now.Title != "water the plants" {
		t.Fatalf("after the retry the task is %+v: the retry wrote", now)
	}
	// The same key with another body, on another task, route or method, or for a create: another request.
	other := e.create(user, map[string]any{"title": "other"})
	wantLoc(t, e.do("PATCH", path, tok, map[string]any{"title": "else"}, "Idempotency-Key", "edit-1"), "header", "Idempotency-Key")
	wantLoc(t, e.do("PATCH", fmt.Sprint("/api/", user, "/tasks/", other.ID), tok, map[string]any{"title": "water the plants"}, "Idempotency-Key", "edit-1"), "header", "Idempotency-Key")
	wantLoc(t, e.do("PUT", path, tok, map[string]any{"title": "water the plants"}, "Idempotency-Key", "edit-1"), "header", "Idempotency-Key")
	wantLoc(t, e.do("PATCH", path+"/complete", tok, nil, "Idempotency-Key", "edit-1"), "header", "Idempotency-Key")
	wantLoc(t, e.do("DELETE", path, tok, nil, "Idempotency-Key", "edit-1"), "header", "Idempotency-Key")
	wantLoc(t, e.do("POST", "/api/"+user+"/tasks", tok, map[string]any{"title": "water the plants"}, "Idempotency-Key", "edit-1"), "header", "Idempotency-Key")
	e.do("POST", "/api/"+user+"/tasks", tok, map[string]any{"title": "made"}, "Idempotency-Key", "create-1")
	wantLoc(t, e.do("PATCH", path, tok, map[string]any{"title": "made"}, "Idempotency-Key", "create-1"), "header", "Idempotency-Key")

	// A toggle retried, even 20 times at once, flips the task exactly once.
	var wg sync.WaitGroup
	var replays sync.Map
	for i := range 20 {
		wg.Go(func() {
			r := e.do("PATCH", path+"/complete", tok, nil, "Idempotency-Key", "tick-1")
			if r.status != 200 || !decode[Task](t, r).Completed {
				t.Errorf("toggle %d = %s, want the task completed", i, r)
			}
			replays.Store(i, r.header.Get("Idempotent-Replayed"))
		})
	}
	wg.Wait()
	firsts := 0
	replays.Range(func(_, v any) bool {
		if v == "" {
			firsts++
		}
		return true
	})
	if now := decode[Task](t, e.do("GET", path, tok, nil)); !now.Completed || firsts != 1 {
		t.Fatalf("20 toggles with one key: completed %v, %d not replayed; want true and 1", now.Completed, firsts)
	}

	// One key on a create and on another write at once: one of them wins, the other is refused; no deadlock.
	for i := range 10 {
		key := fmt.Sprint("race-", i)
		statuses := make(chan int, 2)
		wg.Go(func() {
			statuses <- e.do("POST", "/api/"+user+"/tasks", tok, map[string]any{"title": "raced"}, "Idempotency-Key", key).status
		})
		wg.Go(func() { statuses <- e.do("PATCH", path+"/complete", tok, nil, "Idempotency-Key", key).status })
		wg.Wait()
		if a, b := <-statuses, <-statuses; a+b != 201+422 && a+b != 200+422 {
			t.Fatalf("a create and a toggle with one key at once = %d and %d, want one 422", a, b)
		}
	}

	// A delete retried answers 204 again, though the task is gone; without the key, 404.
	e.want(e.do("DELETE", path, tok, nil, "Idempotency-Key", "rm-1"), 204, "DELETE with a key")
	r := e.do("DELETE", path, tok, nil, "Idempotency-Key", "rm-1")
	if r.status != 204 || r.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retried DELETE = %s %v, want 204 replayed", r, r.header)
	}
	e.want(e.do("DELETE", path, tok, nil), 404, "DELETE again without the key")

	// A write that fails keeps nothing: its key is free for the request that follows.
	stale := fmt.Sprint("/api/", user, "/tasks/", other.ID)
	e.want(e.do("PATCH", stale, tok, map[string]any{"title": "late"}, "Idempotency-Key", "late-1", "If-Match", `"1"`), 412, "PATCH with a stale If-Match")
	e.want(e.do("PATCH", stale, tok, map[string]any{"title": "late"}, "Idempotency-Key", "late-1", "If-Match", `"1"`), 412, "its retry")
	e.want(e.do("PATCH", stale, tok, map[string]any{"title": "late"}, "Idempotency-Key", "late-1"), 200, "the key, after two failures")
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

// TestWriteHashGolden pins the Idempotency-Key request hash: a key stored
// before a deploy must still match its retry after it. Changing one of these
// sums means every stored key answers 422 to its retry.
func TestWriteHashGolden(t *testing.T) {
	title, desc, prio := "Buy <milk> & eggs", "2 litres\n\"fresh\"", "high"
	due := time.Date(2026, 12, 1, 17, 0, 0, 500000000, time.UTC)
	for _, c := range []struct {
		route  string
		id     int64
		change taskChange
		want   string
	}{
		{"POST /api/{user_id}/tasks", 0, taskChange{Title: &title}, "e6c90b735547678ce771730dd50ad95f135afed7c9333be0b0bee496228ef0cf"},
		{"PUT /api/{user_id}/tasks/{id}", 7, taskChange{Title: &title, Description: &desc, Priority: &prio, DueDate: &Due{due, dueInstant}, Tags: []string{"home", "日本"}},
			"ec1f01ad96aa381f4210823d585ab8eb3568c7933d0b56300877111ab559eae9"},
		{"PATCH /api/{user_id}/tasks/{id}", 7, taskChange{Title: &title, ClearDesc: true, ClearDue: true, Tags: []string{}},
			"1c8f4a8fa55a5e5d0f7eafbbef2f24a3a264373344062fd80df55a7bccd2681a"},
		{"POST /api/{user_id}/tasks", 0, taskChange{Title: &title, DueDate: &Due{time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), dueDate}},
			"9cea0d1199e74a4a774eb73821a3b25200e4297f05d54b752d120d2096264060"},
		{"POST /api/{user_id}/tasks", 0, taskChange{Title: &title, Reminders: json.RawMessage(`[{"offset":"-PT15M"},{"at":"2026-12-01T08:45:00Z"}]`)},
			"f8f966a9f6927bfcb1c805d5e8cc605506e43e9ff32a49ddbf09090b3ccdecdf"},
		{"PATCH /api/{user_id}/tasks/{id}", 7, taskChange{Title: &title, Completed: new(true), DueDate: &Due{time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC), dueLocal},
			Recurrence: new("FREQ=WEEKLY;BYDAY=MO"), RecurFrom: new("completion"), Timezone: new("Europe/Berlin")},
			"38a9494451534412d5c2fe35c855e814e45e7616599bc8fb482b61866b3fcd15"},
		{"PATCH /api/{user_id}/tasks/{id}", 7, taskChange{ClearRecur: true, ClearZone: true, Reminders: json.RawMessage(`[]`)},
			"ce15ae71abfe2656a9ce114529f9dcaf883fba2f4535dfdfc6b5aeb3b49cd05f"},
		{"PATCH /api/{user_id}/tasks/{id}", 7, taskChange{Title: &title, ParentID: new(int64(3)), After: new(int64(9))},
			"e1940e846201df88095306645a6f333192af8480e74030e73e715b386754b21f"},
	} {
		if got := hex.EncodeToString(writeHash(c.route, c.id, c.change)); got != c.want {
			t.Errorf("writeHash(%s, %d, %+v) = %s, want %s", c.route, c.id, c.change, got, c.want)
		}
	}
}

// TestSearchAnyLocale: q finds text case-insensitively in every script, and
// sort=title orders the same way, on the test database and on one created with
// the C locale (Docker images and some managed databases make those), where
// PostgreSQL's own lower() folds ASCII only.
func TestSearchAnyLocale(t *testing.T) {
	cLocale := testStore(t, newDatabase(t, "TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"), 5*time.Second)
	if err := cLocale.migrate(context.Background(), slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	for name, db := range map[string]*store{"default locale": testDB, "C locale": cLocale} {
		t.Run(name, func(t *testing.T) {
			e := newEnvDB(t, db, testConfig(hsAuth()))
			user, other := newUser(t), newUser(t)
			for _, title := range []string{"Élan vital", "ПРИВЕТ мир", "Ωμέγα", "zebra", "apple"} {
				e.create(user, map[string]any{"title": title, "description": "note " + title})
			}
			for _, title := range []string{"ΟΔΟΣ", "İSTANBUL", "Straße", "Cafe\u0301 noir", "ﬁle taxes", "full width", "stop sign"} { // not sorted below
				e.create(other, map[string]any{"title": title})
			}
			for q, want := range map[string]string{
				"élan": "Élan vital", "ÉLAN": "Élan vital", "привет": "ПРИВЕТ мир", "МИР": "ПРИВЕТ мир",
				"ωμέγα": "Ωμέγα", "ZEBRA": "zebra", "note élan": "Élan vital",
			} {
				tasks, total := e.list(user, "?q="+url.QueryEscape(q))
				if total != 1 || tasks[0].Title != want {
					t.Errorf("q=%s found %d: %v, want %q", q, total, tasks, want)
				}
			}
			// Folded, not lowercased: final sigma, dotted capital I, sharp s, composed accents.
			for q, want := range map[string]string{
				"οδος": "ΟΔΟΣ", "σ": "ΟΔΟΣ", "ΟΔΌΣ": "", "istanbul": "İSTANBUL", "ISTANBUL": "İSTANBUL",
				"strasse": "Straße", "STRASSE": "Straße", "straße": "Straße", "café": "Cafe\u0301 noir", "CAFÉ NOIR": "Cafe\u0301 noir",
				"file taxes": "ﬁle taxes", "ＦＵＬＬ": "full width", "ſtop": "stop sign",
			} {
				tasks, _ := e.list(other, "?q="+url.QueryEscape(q))
				if want == "" && len(tasks) != 0 || want != "" && (len(tasks) != 1 || tasks[0].Title != want) {
					t.Errorf("q=%s found %v, want %q", q, tasks, want)
				}
			}
			tasks, _ := e.list(user, "?sort=title")
			var titles []string
			for _, task := range tasks {
				titles = append(titles, task.Title)
			}
			if want := []string{"apple", "Élan vital", "zebra", "Ωμέγα", "ПРИВЕТ мир"}; !slices.Equal(titles, want) {
				t.Errorf("sort=title = %q, want %q", titles, want)
			}
		})
	}
}

// TestQueryStringDecoded: a query string with a pair that cannot be decoded (a
// bad escape, a semicolon) is refused; dropping the pair would drop its filter.
func TestQueryStringDecoded(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	e.create(user, map[string]any{"title": "milk"})
	for _, q := range []string{"q=%zz", "q=milk;x=1", "status=completed;", "limit=1;", "q=%zz&q=milk", "q=%"} {
		wantLoc(t, e.do("GET", "/api/"+user+"/tasks?"+q, tokenFor(t, user), nil), "query")
	}
}

// TestCompletedAt: set when a task becomes completed, by the toggle or an
// update, kept while it stays completed, cleared when it is reopened.
func TestCompletedAt(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	tok := tokenFor(t, user)
	task := e.create(user, map[string]any{"title": "to do", "completed_at": "2020-01-01T00:00:00Z"})
	item := fmt.Sprintf("/api/%s/tasks/%d", user, task.ID)
	if task.CompletedAt != nil {
		t.Fatalf("a new task has completed_at %v", task.CompletedAt)
	}
	step := func(method, path string, body any, wantCompleted bool, wantAt func(*time.Time, Task) bool, what string) Task {
		t.Helper()
		r := e.do(method, path, tok, body)
		e.want(r, 200, what)
		got := decode[Task](t, r)
		if got.Completed != wantCompleted || !wantAt(got.CompletedAt, got) {
			t.Fatalf("%s: completed %v, completed_at %v (updated_at %v)", what, got.Completed, got.CompletedAt, got.UpdatedAt)
		}
		return got
	}
	isNil := func(at *time.Time, _ Task) bool { return at == nil }
	now := func(at *time.Time, got Task) bool {
		return at != nil && !at.After(got.UpdatedAt) && got.UpdatedAt.Sub(*at) < time.Second
	}
	done := step("PATCH", item+"/complete", nil, true, now, "toggle to completed")
	same := func(at *time.Time, _ Task) bool { return at != nil && at.Equal(*done.CompletedAt) }
	step("PATCH", item, map[string]any{"title": "renamed"}, true, same, "an edit keeps completed_at")
	step("PATCH", item, map[string]any{"completed": true, "completed_at": "2020-01-01T00:00:00Z"}, true, same, "completed again keeps it")
	step("PATCH", item+"/complete", nil, false, isNil, "toggle to open")
	step("PUT", item, map[string]any{"completed": true}, true, now, "an update to completed")
	step("PATCH", item, map[string]any{"completed": false}, false, isNil, "an update to open")
}
