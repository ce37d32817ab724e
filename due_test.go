// due_test.go tests the due date's three forms: their spellings, how they come back, and how they sort.
package main

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseDue(t *testing.T) {
	for _, c := range []struct {
		in, out string
		kind    dueKind
	}{
		{"2026-12-01", "2026-12-01", dueDate},
		{"2026-12-01T10:00", "2026-12-01T10:00:00", dueLocal},
		{"2026-12-01 10:00", "2026-12-01T10:00:00", dueLocal},
		{"2026-12-01t10:00:05.5", "2026-12-01T10:00:05.5", dueLocal},
		{"2026-12-01T10:00:00", "2026-12-01T10:00:00", dueLocal},
		{"2026-12-01T00:00:00.000", "2026-12-01T00:00:00", dueLocal},
		{"2026-12-01T10:00:00Z", "2026-12-01T10:00:00Z", dueInstant},
		{"2026-12-01T10:00z", "2026-12-01T10:00:00Z", dueInstant},
		{"2026-12-01T10:00:00+01:00", "2026-12-01T09:00:00Z", dueInstant},
		{"2026-12-01 10:00+0100", "2026-12-01T09:00:00Z", dueInstant},
		{"2026-12-01T10:00:00.123456-05:30", "2026-12-01T15:30:00.123456Z", dueInstant},
		{"2026-12-01T10:00:00+23:59", "2026-11-30T10:01:00Z", dueInstant},
		{"0001-01-01", "0001-01-01", dueDate},
		{"9999-12-31T23:59:59", "9999-12-31T23:59:59", dueLocal},
		{"1796083200", "2026-12-01T00:00:00Z", dueInstant},
		{"1796083200.5", "2026-12-01T00:00:00.5Z", dueInstant},
		{"1796083200500", "2026-12-01T00:00:00.5Z", dueInstant},
		{"-1", "1969-12-31T23:59:59Z", dueInstant},
	} {
		d, ok := parseDue(c.in)
		if got := string(appendDue(nil, d)); !ok || d.Kind != c.kind || got != `"`+c.out+`"` {
			t.Errorf("parseDue(%q) = %s kind %d, %v; want %q kind %d", c.in, got, d.Kind, ok, c.out, c.kind)
		}
	}
	for _, in := range []string{"", "next week", "2026-12-1", "2026-13-01", "2026-02-30", "2026-12-01T25:00", "2026-12-01T10",
		"2026-12-01X10:00", "0000-01-01", "0000-12-31T23:00:00", "9999-12-31T23:00:00-02:00", "0001-01-01T00:30:00+01:00",
		"2026-12-01T10:00:00+01", "2026-12-01T10:00:00 +01:00", "2026-12-01T10:00:00Z+01:00", "2026-12-01T10:60", "+2026-12-01",
		"2026-12-01T10:00:00+1:00", "2026-12-01T1:00", " 2026-12-01", "2026-12-01 ",
		"2026-12-01T10:00:00.1234567", "2026-12-01T10:00:00.123456789Z", "2026-12-01T10:00:00+24:00", "2026-12-01T10:00:00-00:60",
		"1e9", "1796083200.1234567", "1796083200500.5555", "999999999999999", "-999999999999999", "+1796083200", "0x10"} {
		if d, ok := parseDue(in); ok {
			t.Errorf("parseDue(%q) = %+v, want a refusal", in, d)
		}
	}
}

// TestDueDateForms: through the API each form comes back as it means, and the
// three sort together: a date at the start of its day, a floating time as if
// it were UTC, an instant as itself.
func TestDueDateForms(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	tok := tokenFor(t, user)
	base := "/api/" + user + "/tasks"
	for _, c := range [][3]string{ // title, sent, returned
		{"all day", "2026-12-01", "2026-12-01"},
		{"floating", "2026-12-01T10:00", "2026-12-01T10:00:00"},
		{"instant", "2026-12-01 10:30+0200", "2026-12-01T08:30:00Z"},
		{"pydantic", "2026-12-01t09:15:00.250", "2026-12-01T09:15:00.25"},
	} {
		r := e.do("POST", base, tok, map[string]any{"title": c[0], "due_date": c[1]})
		e.want(r, 201, "POST due_date "+c[1])
		if got := decode[map[string]any](t, r)["due_date"]; got != c[2] {
			t.Errorf("due_date %q came back as %v, want %q", c[1], got, c[2])
		}
		id := decode[Task](t, r).ID
		if got := decode[map[string]any](t, e.do("GET", fmt.Sprintf("%s/%d", base, id), tok, nil))["due_date"]; got != c[2] {
			t.Errorf("GET: due_date %q reads back as %v, want %q", c[1], got, c[2])
		}
	}
	titles := func(query string) string {
		tasks, _ := e.list(user, query)
		var s []string
		for _, task := range tasks {
			s = append(s, task.Title)
		}
		return strings.Join(s, ", ")
	}
	if got, want := titles("?sort=due_date"), "all day, instant, pydantic, floating"; got != want {
		t.Errorf("sort=due_date: %s, want %s", got, want)
	}
	if got, want := titles("?sort=due_date&order=desc"), "floating, pydantic, instant, all day"; got != want {
		t.Errorf("sort=due_date&order=desc: %s, want %s", got, want)
	}
	// A PATCH changes the form with the value; null clears both.
	tasks, _ := e.list(user, "?sort=due_date")
	item := fmt.Sprintf("%s/%d", base, tasks[0].ID)
	r := e.do("PATCH", item, tok, map[string]any{"due_date": "2027-01-15T08:00"})
	if got := decode[map[string]any](t, r)["due_date"]; got != "2027-01-15T08:00:00" {
		t.Errorf("PATCH to a floating time: %v", got)
	}
	r = e.do("PATCH", item, tok, map[string]any{"due_date": nil})
	if got := decode[Task](t, r).DueDate; got != nil {
		t.Errorf("PATCH due_date null: %+v", got)
	}
	r = e.do("PATCH", item, tok, map[string]any{"title": "dated again", "due_date": "2027-02-01"})
	if got := decode[map[string]any](t, r)["due_date"]; got != "2027-02-01" {
		t.Errorf("PATCH to a date after null: %v", got)
	}
}

// dueSpelling is what a due_date spelling says, read by a regular expression
// rather than parseDue's scanning: the date, the clock, the fraction, the zone.
var dueSpelling = regexp.MustCompile(`^(\d{4}-\d{2}-\d{2})(?:[Tt ](\d{2}:\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?([Zz]|[+-]\d{2}:?\d{2})?)?$`)

// checkDueFaithful fails unless an accepted due_date comes back meaning what
// was sent: a date as that date, a floating time as that wall clock with
// seconds, a date-time with an offset as that instant in UTC.
func checkDueFaithful(t *testing.T, sent string, d Due) {
	t.Helper()
	got := strings.Trim(string(appendDue(nil, d)), `"`)
	if f, err := strconv.ParseFloat(sent, 64); err == nil { // Unix time: seconds, or milliseconds past 2e10
		if math.Abs(f) > 2e10 {
			f /= 1000
		}
		back, _ := time.Parse(time.RFC3339Nano, got)
		if diff := back.UnixMicro() - int64(math.Round(f*1e6)); diff < -1 || diff > 1 || !strings.HasSuffix(got, "Z") {
			t.Fatalf("Unix time %s came back as %q (%d µs off)", sent, got, diff)
		}
		return
	}
	m := dueSpelling.FindStringSubmatch(sent)
	if m == nil {
		t.Fatalf("accepted due_date %q, which is no spelling of a date or a date-time", sent)
	}
	date, clock, secs, frac, zone := m[1], m[2], m[3], strings.TrimRight(m[4], "0"), m[5]
	want := date
	if clock != "" {
		if secs == "" {
			secs = "00"
		}
		want = date + "T" + clock + ":" + secs
		if frac != "" {
			want += "." + frac
		}
	}
	if zone == "" {
		if got != want {
			t.Fatalf("due_date %q came back as %q, want %q", sent, got, want)
		}
		return
	}
	if len(zone) == 5 {
		zone = zone[:3] + ":" + zone[3:]
	}
	at, err := time.Parse(time.RFC3339Nano, want+strings.ToUpper(zone))
	if back, _ := time.Parse(time.RFC3339Nano, got); err != nil || !back.Equal(at) || !strings.HasSuffix(got, "Z") {
		t.Fatalf("due_date %q came back as %q, want the instant %v in UTC (%v)", sent, got, at, err)
	}
}

// UnmarshalJSON reads any spelling parseDue accepts: the API reads due dates by hand
// (parseDue), and tests decode whole tasks with encoding/json, through it.
func (d *Due) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	due, ok := parseDue(s)
	if !ok {
		return &time.ParseError{Value: s, Message: ": not a due date"}
	}
	*d = due
	return nil
}
