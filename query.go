// query.go holds query-string parsing: the list's parameters and the change feed's.
package main

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// queryCheck reads query parameters, and collects what is wrong with them, each at its name.
type queryCheck struct {
	v    url.Values
	errs validationError
}

// readQuery decodes a request's query string whole: r.URL.Query() drops a pair
// it cannot decode (a bad escape, a ;), which would silently drop a parameter.
// Such a query string is refused instead, alone: its parameters read as none.
func readQuery(r *http.Request) *queryCheck {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return &queryCheck{errs: validationError{{[]any{"query"}, "The query string could not be decoded: use & between parameters and %XX escapes", "query_invalid"}}}
	}
	return &queryCheck{v: v}
}

func (c *queryCheck) fail(name, msg, typ string) {
	c.errs = append(c.errs, fieldError{[]any{"query", name}, msg, typ})
}

// single refuses each of names given twice: of two, a proxy may read the other one.
func (c *queryCheck) single(names ...string) {
	for _, name := range names {
		if len(c.v[name]) > 1 {
			c.fail(name, "Give this parameter once", "duplicate")
		}
	}
}

// integer reads the parameter name, if given, into dst: an integer from lo to hi.
func (c *queryCheck) integer(name string, lo, hi int, dst *int) {
	if s := c.v.Get(name); s != "" {
		if n, err := strconv.Atoi(s); err != nil || n < lo || n > hi {
			c.fail(name, "Input should be an integer from "+strconv.Itoa(lo)+" to "+strconv.Itoa(hi), "int_parsing")
		} else {
			*dst = n
		}
	}
}

// choice reads the parameter name: "" when absent, else one of choices; msg lists them for a refusal of type typ.
func (c *queryCheck) choice(name, msg, typ string, choices ...string) string {
	s := c.v.Get(name)
	if s != "" && !slices.Contains(choices, s) {
		c.fail(name, "Input should be "+msg, typ)
		return ""
	}
	return s
}

// parseListQuery validates the request's list parameters; unknown parameters are ignored.
func parseListQuery(r *http.Request) (listQuery, error) {
	q := listQuery{Sort: listSorts[0], Desc: true, Limit: maxLimit} // created, newest first
	c := readQuery(r)
	c.single("status", "sort", "order", "q", "limit", "offset", "cursor", "total", "tz", "parent_id") // tag may repeat
	switch c.choice("status", "'all', 'pending' or 'completed'", "enum", "all", "pending", "completed") {
	case "pending":
		q.Completed = new(false)
	case "completed":
		q.Completed = new(true)
	}
	if s := c.v.Get("sort"); s != "" {
		if sort, ok := findSort(s); ok {
			q.Sort, q.Desc = sort, sort.desc
		} else {
			c.fail("sort", "Input should be "+sortNames(), "enum")
		}
	}
	if q.Zone = c.v.Get("tz"); q.Zone != "" {
		if _, ok := loadZone(q.Zone); !ok {
			c.fail("tz", "Input should be an IANA time zone, such as Europe/Berlin", "value_error")
		} else if q.Sort.name != "due_date" {
			c.fail("tz", "tz orders sort=due_date only", "value_error")
		}
	}
	if order := c.choice("order", "'asc' or 'desc'", "enum", "asc", "desc"); order != "" {
		q.Desc = order == "desc"
	}
	q.Q = c.v.Get("q")
	if msg := badText(q.Q); msg != "" {
		c.fail("q", msg, "string_invalid")
	} else if utf8.RuneCountInString(q.Q) > maxQuery {
		c.fail("q", "String should have at most "+strconv.Itoa(maxQuery)+" characters", "string_too_long")
	}
	for _, tag := range c.v["tag"] {
		tag = strings.TrimSpace(tag)
		if msg := badTag(tag); msg != "" {
			c.fail("tag", msg, "string_invalid")
		} else {
			q.Tags = append(q.Tags, tag)
		}
	}
	if len(q.Tags) > maxTags {
		c.fail("tag", "At most "+strconv.Itoa(maxTags)+" tags", "too_long")
	}
	if s := c.v.Get("parent_id"); s == "none" {
		q.Parent = new(int64(0))
	} else if id, err := strconv.ParseInt(s, 10, 64); s != "" && (err != nil || id < 1 || strconv.FormatInt(id, 10) != s) {
		c.fail("parent_id", "Input should be the id of a task (a positive integer), or none", "int_parsing")
	} else if s != "" {
		q.Parent = &id
	}
	q.Total = c.choice("total", "'true' or 'false'", "bool_parsing", "true", "false") == "true"
	c.integer("limit", 1, maxLimit, &q.Limit)
	c.integer("offset", 0, 1<<31-1, &q.Offset)
	if s := c.v.Get("cursor"); s != "" {
		var msg string
		if q.After, msg = parseListCursor(s, q.Sort, q.Desc, q.Zone); msg != "" { // sort=created if sort was refused
			c.fail("cursor", msg, "cursor_invalid")
		} else if q.Offset > 0 { // offset=0, a default some clients send, is no offset
			c.fail("cursor", "Give cursor or a non-zero offset, not both", "cursor_invalid")
		}
	}
	if c.errs != nil {
		return q, c.errs
	}
	return q, nil
}

// feedQuery is a validated request of the change feed: after Cursor (a first
// sync when First), at most Limit changes.
type feedQuery struct {
	Cursor feedCursor
	First  bool
	Limit  int
}

// parseFeedQuery validates the request's feed parameters (since, limit) for the user's feed at now.
func parseFeedQuery(r *http.Request, userID string, now time.Time) (feedQuery, error) {
	c := readQuery(r)
	q := feedQuery{feedCursor{-1, now, -1, userTag(userID)}, !c.v.Has("since"), maxFeedLimit}
	c.single("since", "limit")
	if !q.First {
		var msg string
		if q.Cursor, msg = parseFeedCursor(c.v.Get("since"), userID, now); msg != "" {
			c.fail("since", msg, "cursor_invalid")
		}
	}
	c.integer("limit", 1, maxFeedLimit, &q.Limit)
	if c.errs != nil {
		return q, c.errs
	}
	return q, nil
}
