// cursor_test.go tests keyset paging of the list: Link headers, cursors, and pages that hold still while others write.
package main

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

var linkNext = regexp.MustCompile(`^<(/api/[^>]+)>; rel="next"$`)

// pages reads a list from query on by its Link headers, calling between after each page but the last.
func (e *env) pages(user, query string, between func(page int)) (ids []int64, pages int) {
	e.t.Helper()
	path := "/api/" + user + "/tasks" + query
	for {
		r := e.do("GET", path, tokenFor(e.t, user), nil)
		e.want(r, 200, "GET "+path)
		for _, t := range decode[[]Task](e.t, r) {
			ids = append(ids, t.ID)
		}
		pages++
		link := r.header.Get("Link")
		if link == "" {
			return ids, pages
		}
		m := linkNext.FindStringSubmatch(link)
		if m == nil {
			e.t.Fatalf("Link = %q", link)
		}
		if between != nil {
			between(pages)
		}
		path = m[1]
	}
}

// TestKeysetPagingEveryOrder: following Link headers, every sort and order
// reads the same tasks in the same order as one page does, ties and missing
// due dates included.
func TestKeysetPagingEveryOrder(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	titles := []string{"b", "A", "b", "Élan", "a", "c", "B"}
	dues := []any{nil, "2026-12-01", "2026-12-01", nil, "2026-12-01T10:00", "2026-11-30T10:00:00Z", nil}
	prios := []string{"low", "high", "high", "medium", "low", "medium", "high"}
	for i := range titles {
		body := map[string]any{"title": titles[i], "priority": prios[i], "tags": []string{"t"}}
		if dues[i] != nil {
			body["due_date"] = dues[i]
		}
		e.create(user, body)
	}
	for _, s := range listSorts {
		for _, order := range []string{"asc", "desc"} {
			for _, filter := range []string{"", "&tag=t&q=%C3%A9"} {
				query := "?sort=" + s.name + "&order=" + order + filter
				all, _ := e.list(user, query+"&limit=100")
				var want []int64
				for _, t := range all {
					want = append(want, t.ID)
				}
				for _, limit := range []int{1, 2, 3} {
					got, pages := e.pages(user, fmt.Sprint(query, "&limit=", limit), nil)
					if !slices.Equal(got, want) || pages != max(1, (len(want)+limit-1)/limit) {
						t.Fatalf("%s&limit=%d: %d pages of %v, want %v", query, limit, pages, got, want)
					}
				}
			}
		}
	}
	// X-Total-Count stays the count of all that match, on a page after a cursor too.
	r := e.do("GET", "/api/"+user+"/tasks?limit=2", tokenFor(t, user), nil)
	next := linkNext.FindStringSubmatch(r.header.Get("Link"))[1]
	r = e.do("GET", next, tokenFor(t, user), nil)
	if r.header.Get("X-Total-Count") != "7" || !strings.Contains(next, "limit=2") {
		t.Fatalf("page 2 = %s with X-Total-Count %q, from %s", r, r.header.Get("X-Total-Count"), next)
	}
}

// TestKeysetPagingHoldsStill: pages loaded while others write neither repeat
// nor skip a task that was there all along; offset paging, which does, stays for clients that use it.
func TestKeysetPagingHoldsStill(t *testing.T) {
	e := newEnv(t, hsAuth())
	for _, c := range []struct {
		name, query string
		write       func(user string, page int)
	}{
		{"a create on the default sort", "?limit=3", func(user string, _ int) { e.create(user, map[string]any{"title": "new"}) }},
		{"a create on sort=title", "?sort=title&limit=3", func(user string, _ int) { e.create(user, map[string]any{"title": "a new"}) }},
		{"a completion with status=pending", "?status=pending&limit=3", func(user string, page int) {
			list, _ := e.list(user, "?status=pending&limit=1")
			e.want(e.do("PATCH", fmt.Sprint("/api/", user, "/tasks/", list[0].ID, "/complete"), tokenFor(t, user), nil), 200, "toggle")
		}},
	} {
		user := newUser(t)
		var before []int64
		for i := range 9 {
			before = append(before, e.create(user, map[string]any{"title": fmt.Sprint("task ", i)}).ID)
		}
		got, _ := e.pages(user, c.query, func(page int) { c.write(user, page) })
		seen := map[int64]int{}
		for _, id := range got {
			if seen[id]++; seen[id] > 1 {
				t.Fatalf("%s: task %d on two pages: %v", c.name, id, got)
			}
		}
		for _, id := range before {
			if seen[id] == 0 && !strings.Contains(c.query, "pending") {
				t.Fatalf("%s: task %d skipped: %v", c.name, id, got)
			}
		}
		if strings.Contains(c.query, "pending") && len(got) != 9 {
			t.Fatalf("%s: %d tasks read of 9 pending when the first page was read: %v", c.name, len(got), got)
		}
	}
}

func TestListCursorRefused(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	for range 3 {
		e.create(user, map[string]any{"title": "x"})
	}
	tok := tokenFor(t, user)
	r := e.do("GET", "/api/"+user+"/tasks?sort=title&limit=1", tok, nil, "Origin", "http://localhost:3000")
	if !strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "Link") {
		t.Fatalf("CORS does not expose Link: %v", r.header)
	}
	cursor, _ := url.ParseQuery(strings.SplitN(linkNext.FindStringSubmatch(r.header.Get("Link"))[1], "?", 2)[1])
	c := cursor.Get("cursor")
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, query := range []string{
		"?sort=title&cursor=" + c + "&offset=1",                                                                      // both
		"?sort=title&order=desc&cursor=" + c,                                                                         // another order
		"?sort=created&cursor=" + c,                                                                                  // another sort
		"?sort=title&cursor=" + c + "&cursor=" + c,                                                                   // twice
		"?sort=title&cursor=%21%21",                                                                                  // not base64url
		"?sort=title&cursor=" + c + "%3D",                                                                            // padded
		"?sort=title&cursor=" + b64(`{"sort":"title","desc":false,"key":1,"id":1}`),                                  // a number for a title
		"?sort=title&cursor=" + b64(`{"sort":"title","desc":false,"key":null,"id":1}`),                               // null for a title
		"?sort=title&cursor=" + b64(`{"sort":"title","desc":false,"key":"a","id":0}`),                                // no id
		"?sort=title&cursor=" + b64(`{"sort":"title","desc":false,"key":"a","id":1,"x":1}`),                          // a member more
		"?sort=title&cursor=" + b64(`{"sort":"title","desc":false,"key":"a","id":1} {}`),                             // a value more
		"?sort=created&order=desc&cursor=" + b64(`{"sort":"created","desc":true,"key":"a","id":1}`),                  // a string for a time
		"?sort=created&order=desc&cursor=" + b64(`{"sort":"created","desc":true,"key":1.5,"id":1}`),                  // a fraction
		"?sort=created&order=desc&cursor=" + b64(`{"sort":"created","desc":true,"key":-9223372036854775808,"id":1}`), // out of range
		"?sort=title&cursor=" + b64(`{"sort":"title","desc":false,"key":"a\u0000b","id":1}`),                         // a NUL
		"?sort=title&cursor=" + b64(`{"sort":"<script>","desc":false,"key":"a","id":1}`),                             // no such sort
		"?sort=created&order=desc&cursor=" + b64(`{"sort":"created","desc":true,"key":null,"id":1}`),                 // null for a time
		"?sort=priority&order=desc&cursor=" + b64(`{"sort":"priority","desc":true,"key":"urgent","id":1}`),           // no such priority
		"?sort=title&cursor=" + b64(`{"Sort":"title","desc":false,"KEY":"a","id":1}`),                                // names in another case
		"?sort=title&cursor=" + b64(`{"sort":"title","desc":false,"key":"a","id":1,"id":2}`),                         // a name twice
		"?sort=title&cursor=" + b64(`{"sort":"title", "desc":false,"key":"a","id":1}`),                               // another spelling
	} {
		wantLoc(t, e.do("GET", "/api/"+user+"/tasks"+query, tok, nil), "query", "cursor")
	}
	e.want(e.do("GET", "/api/"+user+"/tasks?sort=title&offset=0&cursor="+c, tok, nil), 200, "a cursor with offset=0, as Swagger UI sends it")
	// A cursor's key is compared by PostgreSQL, not trusted: any title pages from where it sorts.
	r = e.do("GET", "/api/"+user+"/tasks?sort=title&cursor="+b64(`{"sort":"title","desc":false,"key":"'; DROP TABLE tasks; --","id":1}`), tok, nil)
	e.want(r, 200, "a cursor with any title")
}

// TestFeedCursorFromTheFuture: a cursor issued after now (another replica's
// clock ahead, or forged) counts as issued now, so that it still expires.
func TestFeedCursorFromTheFuture(t *testing.T) {
	now := time.UnixMilli(time.Now().UnixMilli())
	future := feedCursor{3, now.Add(time.Hour), -1, userTag("u1")}
	c, msg := parseFeedCursor(future.String(), "u1", now)
	if msg != "" || !c.Issued.Equal(now) || c.Version != future.Version {
		t.Fatalf("parseFeedCursor(issued in an hour) = %+v %q, want issued now", c, msg)
	}
}
