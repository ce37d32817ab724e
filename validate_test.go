// validate_test.go tests the limits, body validation (decodeTask) and list-query parsing.
package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

func TestValidation(t *testing.T) {
	e := newEnv(t, hsAuth())
	cases := []struct {
		name   string
		body   string
		ctype  string
		status int
		loc    []any // for 422
	}{
		{"200 multi-byte characters", `{"title":"` + strings.Repeat("日", 200) + `"}`, "", 201, nil},
		{"201 multi-byte characters", `{"title":"` + strings.Repeat("日", 201) + `"}`, "", 422, []any{"body", "title"}},
		{"whitespace title", `{"title":"  \t "}`, "", 422, []any{"body", "title"}},
		{"empty title", `{"title":""}`, "", 422, []any{"body", "title"}},
		{"missing title", `{"description":"x"}`, "", 422, []any{"body", "title"}},
		{"null title", `{"title":null}`, "", 422, []any{"body", "title"}},
		{"numeric title", `{"title":5}`, "", 422, []any{"body", "title"}},
		{"NUL in title", `{"title":"a\u0000b"}`, "", 422, []any{"body", "title"}},
		{"NUL in description", `{"title":"a","description":"\u0000"}`, "", 422, []any{"body", "description"}},
		{"1000 characters", `{"title":"a","description":"` + strings.Repeat("é", 1000) + `"}`, "", 201, nil},
		{"1001 characters", `{"title":"a","description":"` + strings.Repeat("é", 1001) + `"}`, "", 422, []any{"body", "description"}},
		{"unknown field", `{"title":"a","titel":"b"}`, "", 422, []any{"body", "titel"}},
		{"bad priority", `{"title":"a","priority":"urgent"}`, "", 422, []any{"body", "priority"}},
		{"bad due_date", `{"title":"a","due_date":"next week"}`, "", 422, []any{"body", "due_date"}},
		{"due_date year 0", `{"title":"a","due_date":"0000-01-01T00:00:00Z"}`, "", 422, []any{"body", "due_date"}},
		{"11 tags", `{"title":"a","tags":["1","2","3","4","5","6","7","8","9","10","11"]}`, "", 422, []any{"body", "tags"}},
		{"empty tag", `{"title":"a","tags":["ok"," "]}`, "", 422, []any{"body", "tags", 1}},
		{"33-character tag", `{"title":"a","tags":["` + strings.Repeat("t", 33) + `"]}`, "", 422, []any{"body", "tags", 0}},
		{"tags not a list", `{"title":"a","tags":"x"}`, "", 422, []any{"body", "tags"}},
		{"control character in a tag", `{"title":"a","tags":["ok","a\u0007b"]}`, "", 422, []any{"body", "tags", 1}},
		{"malformed JSON", `{"title": `, "", 422, []any{"body"}},
		{"two JSON values", `{"title":"a"} {"title":"b"}`, "", 422, []any{"body"}},
		{"array body", `[{"title":"a"}]`, "", 422, []any{"body"}},
		{"empty body", ``, "", 422, []any{"body"}},
		{"invalid UTF-8", "{\"title\":\"a\xff\"}", "", 422, []any{"body"}},
		{"text/plain", `{"title":"a"}`, "text/plain", 415, nil},
		{"form", `title=a`, "application/x-www-form-urlencoded", 415, nil},
		{"too large", `{"title":"a","description":"` + strings.Repeat("x", 70<<10) + `"}`, "", 413, nil},
		{"json with charset", `{"title":"a"}`, "application/json; charset=utf-8", 201, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			user := newUser(t)
			r := e.do("POST", "/api/"+user+"/tasks", tokenFor(t, user), c.body, "Content-Type", cmp.Or(c.ctype, "application/json"))
			if c.loc != nil {
				wantLoc(t, r, c.loc...)
			} else if r.status != c.status {
				t.Fatalf("POST %s = %s, want %d", c.name, r, c.status)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			// Nothing half-written: a rejected create leaves no task.
			if _, total := e.list(user, ""); (c.status == 201) != (total == 1) {
				t.Fatalf("after %d, user has %d tasks", r.status, total)
			}
		})
	}

	t.Run("ignored fields", func(t *testing.T) {
		user := newUser(t)
		task := e.create(user, map[string]any{"title": "a", "id": 999999, "user_id": "someone-else",
			"created_at": "2000-01-01T00:00:00Z", "updated_at": "2000-01-01T00:00:00Z", "completed": true})
		if task.ID == 999999 || task.UserID != user || task.CreatedAt.Year() == 2000 || task.Completed {
			t.Fatalf("read-only or create-ignored fields were used: %+v", task)
		}
		r := e.do("PUT", fmt.Sprintf("/api/%s/tasks/%d", user, task.ID), tokenFor(t, user),
			map[string]any{"user_id": "someone-else", "id": 1, "created_at": "2000-01-01T00:00:00Z"})
		e.want(r, 200, "PUT read-only fields")
		if got := decode[Task](t, r); got.UserID != user || got.ID != task.ID || !got.CreatedAt.Equal(task.CreatedAt) {
			t.Fatalf("PUT changed read-only fields: %+v", got)
		}
	})

	t.Run("update", func(t *testing.T) {
		user := newUser(t)
		task := e.create(user, map[string]any{"title": "keep me", "tags": []string{"a"}})
		item := fmt.Sprintf("/api/%s/tasks/%d", user, task.ID)
		tok := tokenFor(t, user)
		for _, c := range []struct {
			body string
			loc  []any
		}{
			{`{"title":""}`, []any{"body", "title"}},
			{`{"title":null}`, []any{"body", "title"}},
			{`{"completed":"yes"}`, []any{"body", "completed"}},
			{`{"completed":null}`, []any{"body", "completed"}},
			{`{"priority":null}`, []any{"body", "priority"}},
			{`{"title":"ok","titel":"typo"}`, []any{"body", "titel"}},
		} {
			wantLoc(t, e.do("PATCH", item, tok, c.body, "Content-Type", "application/json"), c.loc...)
		}
		wantLoc(t, e.do("GET", fmt.Sprintf("/api/%s/tasks/abc", user), tok, nil), "path", "id")
		wantLoc(t, e.do("GET", fmt.Sprintf("/api/%s/tasks/0", user), tok, nil), "path", "id")
		got := decode[Task](t, e.do("GET", item, tok, nil))
		if got.Title != "keep me" || !got.UpdatedAt.Equal(task.UpdatedAt) {
			t.Fatalf("rejected updates changed the task: %+v", got)
		}
		r := e.do("PATCH", item, tok, map[string]any{"tags": nil, "due_date": "2027-01-02"})
		e.want(r, 200, "PATCH tags null")
		if got := decode[Task](t, r); len(got.Tags) != 0 || !got.DueDate.At.Equal(time.Date(2027, 1, 2, 0, 0, 0, 0, time.UTC)) || got.DueDate.Kind != dueDate {
			t.Fatalf("PATCH tags null, date = %+v", got)
		}
	})
}

func TestSizeLimits(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	path := "/api/" + user + "/tasks"
	// Better Auth puts the user's profile in its tokens, a data: URL picture
	// included: a token of 10 KiB and more is accepted (issue 12), up to the
	// header limit, and repeated requests with it work (it is not cached).
	image := "data:image/png;base64," + strings.Repeat("iVBORw0KGgo", 720)
	big := hsToken(t, jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix(), "image": image})
	if len(big) < 10<<10 {
		t.Fatalf("the big token has %d bytes, want over 10 KiB", len(big))
	}
	e.want(e.do("GET", path, big, nil), 200, "a validly signed 10 KiB token")
	e.want(e.do("GET", path, big, nil), 200, "the same token again")
	huge := hsToken(t, jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix(), "image": strings.Repeat(image, 4)})
	if r := e.do("GET", path, huge, nil); r.status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a token over the header limit = %s, want 431", r)
	}
	r := e.do("GET", path, tokenFor(t, user), nil, "X-Padding", strings.Repeat("h", 40<<10))
	if r.status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("40 KiB of headers = %s, want 431", r)
	}
	r = e.do("POST", path, tokenFor(t, user), `{"title":"`+strings.Repeat("x", 64<<10)+`"}`, "Content-Type", "application/json")
	if r.status != 413 || !json.Valid(r.body) {
		t.Fatalf("a 64 KiB body = %s, want a JSON 413", r)
	}
}

// checkChange fails unless a decoded change satisfies every limit of the contract.
func checkChange(t *testing.T, c taskChange, create bool) {
	t.Helper()
	text := func(name, s string, lo, hi int) {
		if n := utf8.RuneCountInString(s); n < lo || n > hi || badText(s) != "" {
			t.Fatalf("%s %q: %d characters or bad text passed", name, s, n)
		}
	}
	if create && c.Title == nil {
		t.Fatal("a create without a title passed")
	}
	if c.Title != nil {
		text("title", *c.Title, 1, maxTitle)
		if strings.TrimSpace(*c.Title) != *c.Title {
			t.Fatalf("title %q is not trimmed", *c.Title)
		}
	}
	if c.Description != nil {
		text("description", *c.Description, 0, maxDescription)
	}
	if c.Priority != nil && !slices.Contains([]string{"low", "medium", "high"}, *c.Priority) {
		t.Fatalf("priority %q passed", *c.Priority)
	}
	if c.DueDate != nil && (c.DueDate.At.Year() < 1 || c.DueDate.At.Year() > 9999 || c.DueDate.At.Location() != time.UTC) {
		t.Fatalf("due_date %v passed", c.DueDate)
	}
	if len(c.Tags) > maxTags {
		t.Fatalf("%d tags passed", len(c.Tags))
	}
	for i, tag := range c.Tags {
		text("tag", tag, 1, maxTag)
		if slices.Contains(c.Tags[:i], tag) || strings.TrimSpace(tag) != tag {
			t.Fatalf("tags %q: duplicate or untrimmed", c.Tags)
		}
	}
	if c.ClearDesc && c.Description != nil || c.ClearDue && c.DueDate != nil {
		t.Fatal("a field is both set and cleared")
	}
}

// wantClientError fails unless err answers a 4xx with a JSON body.
func wantClientError(t *testing.T, err error) {
	t.Helper()
	w := httptest.NewRecorder()
	writeError(w, httptest.NewRequest("GET", "/", nil), err)
	if w.Code < 400 || w.Code > 499 || !json.Valid(w.Body.Bytes()) {
		t.Fatalf("error %v answers %d %s, want a JSON 4xx", err, w.Code, w.Body)
	}
}

func FuzzDecodeTask(f *testing.F) {
	f.Add([]byte(`{"title":"a","description":null,"priority":"high","due_date":"2026-12-01","tags":["x","x"]}`), true)
	f.Fuzz(func(t *testing.T, body []byte, create bool) {
		r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		c, err := decodeTask(httptest.NewRecorder(), r, create)
		if err != nil {
			wantClientError(t, err)
			return
		}
		checkChange(t, c, create)
		checkFaithful(t, body, c)
	})
}

func FuzzListQuery(f *testing.F) {
	f.Add("status=pending&sort=due_date&order=desc&q=50%25&tag=a&tag=b&limit=10&offset=5")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := parseListQuery(&http.Request{URL: &url.URL{RawQuery: raw}}) // a malformed pair is refused
		if err != nil {
			wantClientError(t, err)
			return
		}
		if _, ok := findSort(q.Sort.name); !ok || q.Limit < 1 || q.Limit > maxLimit || q.Offset < 0 ||
			len(q.Tags) > maxTags || badText(q.Q) != "" || utf8.RuneCountInString(q.Q) > maxQuery {
			t.Fatalf("query %q passed as %+v", raw, q)
		}
		for _, tag := range q.Tags {
			if n := utf8.RuneCountInString(tag); n < 1 || n > maxTag || badText(tag) != "" {
				t.Fatalf("tag %q passed", tag)
			}
		}
	})
}

// checkFaithful fails unless an accepted body was one JSON object naming each
// member once, and each of its fields comes back as it was sent: no character
// replaced by U+FFFD (as encoding/json does with a lone surrogate escape), each
// due date in the form it was sent in.
func checkFaithful(t *testing.T, body []byte, c taskChange) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("accepted a body that is not an object: %q", body)
	}
	members := map[string]json.RawMessage{}
	for dec.More() {
		tok, _ := dec.Token()
		var v json.RawMessage
		dec.Decode(&v)
		if _, twice := members[tok.(string)]; twice {
			t.Fatalf("accepted %q, which names %q twice", body, tok)
		}
		members[tok.(string)] = v
	}
	// sent counts the U+FFFD a client really sent in a value: literally or as \ufffd.
	sent := func(v json.RawMessage) int {
		return bytes.Count(bytes.ToLower(v), []byte(`\ufffd`)) + bytes.Count(v, []byte(string(utf8.RuneError)))
	}
	for name, got := range map[string]*string{"title": c.Title, "description": c.Description} {
		if got != nil && strings.Count(*got, string(utf8.RuneError)) > sent(members[name]) {
			t.Fatalf("%s %q holds a U+FFFD the body %q did not send", name, *got, body)
		}
	}
	if n := strings.Count(strings.Join(c.Tags, ""), string(utf8.RuneError)); n > sent(members["tags"]) {
		t.Fatalf("tags %q hold a U+FFFD the body %q did not send", c.Tags, body)
	}
	// What is stored, and returned (appendTask, which TestAppendTask holds to
	// json.Marshal), is what was sent: the title and each tag trimmed of white
	// space, and the tags without repeats, as the README says; nothing else changed.
	str := func(name string) string {
		var v string
		json.Unmarshal(members[name], &v)
		return v
	}
	task := Task{Description: c.Description, Tags: c.Tags, DueDate: c.DueDate}
	if c.Title != nil {
		task.Title = *c.Title
	}
	if c.Priority != nil {
		task.Priority = *c.Priority
	}
	var back struct {
		Title, Priority string
		Description     *string
		Tags            []string
		DueDate         *string `json:"due_date"`
	}
	if err := json.Unmarshal(appendTask(nil, &task), &back); err != nil {
		t.Fatal(err)
	}
	var sentTags, wantTags []string
	json.Unmarshal(members["tags"], &sentTags)
	for _, tag := range sentTags {
		if tag = strings.TrimSpace(tag); !slices.Contains(wantTags, tag) {
			wantTags = append(wantTags, tag)
		}
	}
	switch {
	case c.Title != nil && back.Title != strings.TrimSpace(str("title")):
		t.Fatalf("title %q came back as %q", str("title"), back.Title)
	case c.Description != nil && *back.Description != str("description"):
		t.Fatalf("description %q came back as %q", str("description"), *back.Description)
	case c.Priority != nil && back.Priority != str("priority"):
		t.Fatalf("priority %q came back as %q", str("priority"), back.Priority)
	case c.Tags != nil && !slices.Equal(back.Tags, wantTags) && len(back.Tags)+len(wantTags) > 0:
		t.Fatalf("tags %q came back as %q, want %q", sentTags, back.Tags, wantTags)
	}
	if c.DueDate != nil {
		sent := str("due_date")
		if v := members["due_date"]; v[0] != '"' {
			sent = string(v) // a JSON number
		}
		checkDueFaithful(t, sent, *c.DueDate)
	}
}

// TestBodyIsOneObject: a body that is not an object, names a member twice, or
// escapes half a surrogate pair gets 422 on every route that takes a body, and
// changes nothing; a surrogate pair and an escaped backslash are text like any other.
func TestBodyIsOneObject(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	tok := tokenFor(t, user)
	task := e.create(user, map[string]any{"title": "unchanged", "tags": []string{"keep"}})
	base := "/api/" + user + "/tasks"
	item := fmt.Sprintf("%s/%d", base, task.ID)
	for _, route := range [][2]string{{"POST", base}, {"PUT", item}, {"PATCH", item}} {
		for _, c := range []struct {
			body string
			loc  []any
		}{
			{`null`, []any{"body"}},
			{` null `, []any{"body"}},
			{`[]`, []any{"body"}},
			{`[{"title":"x"}]`, []any{"body"}},
			{`"title"`, []any{"body"}},
			{`7`, []any{"body"}},
			{`true`, []any{"body"}},
			{`{"title":"first","title":"second"}`, []any{"body", "title"}},
			{`{"title":"first","ti\u0074le":"second"}`, []any{"body", "title"}},
			{`{"title":"x","tags":["a"],"tags":["b"]}`, []any{"body", "tags"}},
			{`{"title":"x","id":1,"id":2}`, []any{"body", "id"}},
			{`{"title":"a\ud800b"}`, []any{"body", "title"}},
			{`{"title":"a\udc00b"}`, []any{"body", "title"}},
			{`{"title":"a\uDBFF"}`, []any{"body", "title"}},
			{`{"title":"\ud800\ud800"}`, []any{"body", "title"}},
			{`{"title":"\udc00\ud800"}`, []any{"body", "title"}},
			{`{"title":"x","description":"\ud83c"}`, []any{"body", "description"}},
			{`{"title":"x","tags":["ok","\udfff"]}`, []any{"body", "tags"}},
			{`{"title":"x","priority":"hi\ud800gh"}`, []any{"body", "priority"}},
		} {
			wantLoc(t, e.do(route[0], route[1], tok, c.body, "Content-Type", "application/json"), c.loc...)
		}
	}
	if got := decode[Task](t, e.do("GET", item, tok, nil)); !reflect.DeepEqual(got, task) {
		t.Fatalf("after refused writes the task is %+v, want %+v", got, task)
	}
	if _, total := e.list(user, ""); total != 1 {
		t.Fatalf("refused creates left %d tasks, want 1", total)
	}
	// A pair is one character; an escaped backslash before u is two characters of text.
	for body, want := range map[string]string{
		`{"title":"party \ud83c\udf89"}`: "party 🎉",
		`{"title":"\uD83C\uDF89"}`:       "🎉",
		`{"title":"a\\ud800b"}`:          `a\ud800b`,
		`{"title":"\ufffd sent"}`:        "\ufffd sent",
	} {
		r := e.do("POST", base, tok, body, "Content-Type", "application/json")
		e.want(r, 201, "POST "+body)
		if got := decode[Task](t, r).Title; got != want {
			t.Errorf("POST %s stored title %q, want %q", body, got, want)
		}
	}
	// In a query, a surrogate can only come as UTF-8 bytes, which are not UTF-8.
	for _, q := range []string{"?q=a%ED%A0%80b", "?tag=%ED%B0%80"} {
		r := e.do("GET", base+q, tok, nil)
		if r.status != 422 {
			t.Errorf("GET %s = %s, want 422", q, r)
		}
	}
}

// TestOneOfEach: a query parameter or header that means one value, given
// twice, is refused: which one a proxy or a WAF checked is anyone's guess.
func TestOneOfEach(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	tok := tokenFor(t, user)
	base := "/api/" + user + "/tasks"
	for _, q := range []string{"status=pending&status=completed", "sort=title&sort=created", "order=asc&order=desc",
		"q=a&q=b", "limit=1&limit=1000", "offset=0&offset=5"} {
		wantLoc(t, e.do("GET", base+"?"+q, tok, nil), "query", q[:strings.IndexByte(q, '=')])
	}
	e.want(e.do("GET", base+"?tag=a&tag=b", tok, nil), 200, "tag, which may repeat")
	send := func(header http.Header) result {
		req := must(http.NewRequest("POST", e.srv.URL+base, strings.NewReader(`{"title":"twice"}`)))
		req.Header = header
		resp := must(e.srv.Client().Do(req))
		defer resp.Body.Close()
		return result{resp.StatusCode, resp.Header, must(io.ReadAll(resp.Body))}
	}
	wantLoc(t, send(http.Header{"Authorization": {"Bearer " + tok}, "Content-Type": {"application/json"},
		"Idempotency-Key": {"k1", "k2"}}), "header", "Idempotency-Key")
	r := send(http.Header{"Authorization": {"Bearer " + tok, "Bearer " + tok}, "Content-Type": {"application/json"}})
	if r.status != 401 || !strings.Contains(e.logs.String(), `"token_refused":"more than one Authorization header"`) {
		t.Fatalf("two Authorization headers = %s, want 401 and the reason logged", r)
	}
	if _, total := e.list(user, ""); total != 0 {
		t.Fatalf("refused creates left %d tasks", total)
	}
}
