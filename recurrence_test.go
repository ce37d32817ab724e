// recurrence_test.go tests the RRULE subset: its parsing, its one spelling, its next occurrence, and agreement with python-dateutil.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseRRuleSpelling(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"FREQ=WEEKLY;BYDAY=MO,WE", "FREQ=WEEKLY;BYDAY=MO,WE"},
		{"rrule:freq=weekly;byday=we,mo,we", "FREQ=WEEKLY;BYDAY=MO,WE"},
		{"FREQ=DAILY;INTERVAL=1;WKST=MO", "FREQ=DAILY"},
		{"BYMONTHDAY=31,-1,1;FREQ=MONTHLY;INTERVAL=02", "FREQ=MONTHLY;INTERVAL=2;BYMONTHDAY=-1,1,31"},
		{"FREQ=YEARLY;BYMONTH=11,2,10;BYDAY=-1FR,1MO,SU", "FREQ=YEARLY;BYMONTH=2,10,11;BYDAY=1MO,-1FR,SU"},
		{"FREQ=WEEKLY;INTERVAL=2;WKST=SU;COUNT=10", "FREQ=WEEKLY;INTERVAL=2;WKST=SU;COUNT=10"},
		{"FREQ=DAILY;UNTIL=20261231", "FREQ=DAILY;UNTIL=20261231"},
		{"FREQ=DAILY;UNTIL=20261231T090000", "FREQ=DAILY;UNTIL=20261231T090000"},
		{"FREQ=DAILY;UNTIL=20261231T090000Z", "FREQ=DAILY;UNTIL=20261231T090000Z"},
		{"FREQ=MONTHLY;BYDAY=+2TU", "FREQ=MONTHLY;BYDAY=2TU"},
		{"FREQ=YEARLY;BYDAY=20MO", "FREQ=YEARLY;BYDAY=20MO"},
	} {
		r, err := parseRRule(tc.in)
		if err != nil {
			t.Errorf("parseRRule(%q): %v", tc.in, err)
			continue
		}
		if got := r.String(); got != tc.want {
			t.Errorf("parseRRule(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if again, err := parseRRule(r.String()); err != nil || again.String() != r.String() {
			t.Errorf("parseRRule(%q) = %q, %v: not its own spelling", r.String(), again.String(), err)
		}
	}
}

func TestParseRRuleRefuses(t *testing.T) {
	for _, tc := range []struct{ in, part string }{
		{"", "FREQ"},
		{"INTERVAL=2", "FREQ is required"},
		{"FREQ=HOURLY", "FREQ"},
		{"FREQ=DAILY;FREQ=WEEKLY", "FREQ appears twice"},
		{"FREQ=DAILY;BYSETPOS=1", "BYSETPOS"},
		{"FREQ=DAILY;BYHOUR=9", "BYHOUR"},
		{"FREQ=DAILY;BYYEARDAY=1", "BYYEARDAY"},
		{"FREQ=DAILY;BYWEEKNO=1", "BYWEEKNO"},
		{"FREQ=DAILY;;", "an empty part"},
		{"FREQ=DAILY;INTERVAL", "INTERVAL"},
		{"FREQ=DAILY;INTERVAL=0", "INTERVAL"},
		{"FREQ=DAILY;INTERVAL=1001", "INTERVAL"},
		{"FREQ=DAILY;INTERVAL=-2", "INTERVAL"},
		{"FREQ=DAILY;INTERVAL=+2", "INTERVAL"},
		{"FREQ=DAILY;INTERVAL=1.5", "INTERVAL"},
		{"FREQ=DAILY;COUNT=0", "COUNT"},
		{"FREQ=DAILY;COUNT=1001", "COUNT"},
		{"FREQ=DAILY;COUNT=2;UNTIL=20261231", "COUNT and UNTIL"},
		{"FREQ=DAILY;UNTIL=2026-12-31", "UNTIL"},
		{"FREQ=DAILY;UNTIL=20261331", "UNTIL"},
		{"FREQ=DAILY;UNTIL=20261231T250000Z", "UNTIL"},
		{"FREQ=DAILY;WKST=XX", "WKST"},
		{"FREQ=MONTHLY;BYMONTH=13", "BYMONTH"},
		{"FREQ=MONTHLY;BYMONTH=0", "BYMONTH"},
		{"FREQ=MONTHLY;BYMONTH=-1", "BYMONTH"},
		{"FREQ=MONTHLY;BYMONTH=", "BYMONTH"},
		{"FREQ=MONTHLY;BYMONTHDAY=0", "BYMONTHDAY"},
		{"FREQ=MONTHLY;BYMONTHDAY=32", "BYMONTHDAY"},
		{"FREQ=MONTHLY;BYMONTHDAY=1,,2", "BYMONTHDAY"},
		{"FREQ=WEEKLY;BYMONTHDAY=1", "BYMONTHDAY does not apply"},
		{"FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30,31", "BYMONTHDAY names no day"},
		{"FREQ=MONTHLY;BYMONTH=4,6;BYMONTHDAY=-31", "BYMONTHDAY names no day"},
		{"FREQ=WEEKLY;BYDAY=MON", "BYDAY"},
		{"FREQ=WEEKLY;BYDAY=1MO", "BYDAY with an ordinal"},
		{"FREQ=DAILY;BYDAY=-1FR", "BYDAY with an ordinal"},
		{"FREQ=MONTHLY;BYDAY=6MO", "BYDAY ordinals must be 1 to 5"},
		{"FREQ=YEARLY;BYMONTH=1;BYDAY=-6MO", "BYDAY ordinals must be 1 to 5"},
		{"FREQ=YEARLY;BYDAY=54MO", "BYDAY"},
		{"FREQ=MONTHLY;BYDAY=0MO", "BYDAY"},
		{"FREQ=MONTHLY;BYDAY=MO,", "BYDAY"},
		{"RRULE:RRULE:FREQ=DAILY", "RRULE:FREQ"},
		{"FREQ=DAILY\n", "FREQ"},
	} {
		_, err := parseRRule(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.part) {
			t.Errorf("parseRRule(%q) = %v, want an error naming %q", tc.in, err, tc.part)
		}
	}
}

// wall is a wall clock held as UTC, from "2006-01-02T15:04".
func wall(s string) time.Time {
	t, err := time.Parse("2006-01-02T15:04", s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestRRuleNext(t *testing.T) {
	berlin, _ := loadZone("Europe/Berlin")
	for _, tc := range []struct {
		rule, start string
		want        []string // the occurrences that follow, each after the one before it
	}{
		{"FREQ=DAILY", "2026-12-30T09:00", []string{"2026-12-31T09:00", "2027-01-01T09:00"}},
		{"FREQ=DAILY;INTERVAL=3", "2026-02-27T09:00", []string{"2026-03-02T09:00", "2026-03-05T09:00"}},
		{"FREQ=DAILY;BYDAY=SA,SU", "2026-12-04T10:00", []string{"2026-12-05T10:00", "2026-12-06T10:00", "2026-12-12T10:00"}},
		{"FREQ=DAILY;BYMONTH=2;BYMONTHDAY=29", "2024-02-29T00:00", []string{"2028-02-29T00:00", "2032-02-29T00:00"}},
		{"FREQ=WEEKLY", "2026-12-07T08:30", []string{"2026-12-14T08:30", "2026-12-21T08:30"}},
		{"FREQ=WEEKLY;BYDAY=MO,WE", "2026-12-07T08:30", []string{"2026-12-09T08:30", "2026-12-14T08:30"}},
		// The week of a day, for INTERVAL, begins on WKST (RFC 5545's own example).
		{"FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,SU;WKST=MO", "1997-08-05T09:00", []string{"1997-08-10T09:00", "1997-08-19T09:00", "1997-08-24T09:00"}},
		{"FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,SU;WKST=SU", "1997-08-05T09:00", []string{"1997-08-17T09:00", "1997-08-19T09:00", "1997-08-31T09:00"}},
		{"FREQ=WEEKLY;BYMONTH=1", "2026-12-28T00:00", []string{"2027-01-04T00:00"}},
		// A month without the 31st is skipped.
		{"FREQ=MONTHLY", "2026-01-31T12:00", []string{"2026-03-31T12:00", "2026-05-31T12:00", "2026-07-31T12:00"}},
		{"FREQ=MONTHLY;BYMONTHDAY=31", "2026-01-31T12:00", []string{"2026-03-31T12:00"}},
		{"FREQ=MONTHLY;BYMONTHDAY=-1", "2026-01-31T12:00", []string{"2026-02-28T12:00", "2026-03-31T12:00", "2026-04-30T12:00"}},
		{"FREQ=MONTHLY;BYMONTHDAY=-1", "2028-01-31T12:00", []string{"2028-02-29T12:00"}},
		{"FREQ=MONTHLY;BYMONTHDAY=1,15", "2026-12-07T00:00", []string{"2026-12-15T00:00", "2027-01-01T00:00"}},
		{"FREQ=MONTHLY;BYDAY=1MO", "2026-12-07T09:00", []string{"2027-01-04T09:00", "2027-02-01T09:00"}},
		{"FREQ=MONTHLY;BYDAY=-1FR", "2026-12-07T09:00", []string{"2026-12-25T09:00", "2027-01-29T09:00"}},
		{"FREQ=MONTHLY;BYDAY=5MO", "2026-01-01T09:00", []string{"2026-03-30T09:00", "2026-06-29T09:00"}},
		{"FREQ=MONTHLY;BYDAY=MO,-1WE", "2026-12-07T09:00", []string{"2026-12-14T09:00", "2026-12-21T09:00", "2026-12-28T09:00", "2026-12-30T09:00", "2027-01-04T09:00"}},
		{"FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13", "2026-01-01T00:00", []string{"2026-02-13T00:00", "2026-03-13T00:00", "2026-11-13T00:00"}},
		{"FREQ=MONTHLY;INTERVAL=18;BYMONTHDAY=10,11,12,13,14,15", "1997-09-10T09:00", []string{"1997-09-11T09:00", "1997-09-12T09:00", "1997-09-13T09:00", "1997-09-14T09:00", "1997-09-15T09:00", "1999-03-10T09:00"}},
		{"FREQ=YEARLY", "2024-02-29T07:00", []string{"2028-02-29T07:00", "2032-02-29T07:00"}},
		{"FREQ=YEARLY;INTERVAL=100", "2000-02-29T07:00", []string{"2400-02-29T07:00"}},
		{"FREQ=YEARLY;BYMONTH=1,7", "2026-01-15T00:00", []string{"2026-07-15T00:00", "2027-01-15T00:00"}},
		{"FREQ=YEARLY;BYMONTHDAY=15", "2026-11-15T00:00", []string{"2026-12-15T00:00", "2027-01-15T00:00"}},
		{"FREQ=YEARLY;BYDAY=20MO", "1997-05-19T09:00", []string{"1998-05-18T09:00", "1999-05-17T09:00"}},
		{"FREQ=YEARLY;BYDAY=-1SU", "2026-01-01T00:00", []string{"2026-12-27T00:00"}},
		{"FREQ=YEARLY;BYMONTH=11;BYDAY=4TH", "2026-11-26T00:00", []string{"2027-11-25T00:00", "2028-11-23T00:00"}},
		{"FREQ=YEARLY;BYMONTH=3;BYDAY=TH", "1997-03-13T09:00", []string{"1997-03-20T09:00", "1997-03-27T09:00", "1998-03-05T09:00"}},
		{"FREQ=DAILY;UNTIL=20261209", "2026-12-07T23:00", []string{"2026-12-08T23:00", "2026-12-09T23:00"}},
		{"FREQ=DAILY;UNTIL=20261209T090000", "2026-12-07T09:00", []string{"2026-12-08T09:00", "2026-12-09T09:00"}},
		{"FREQ=DAILY;UNTIL=20261209T085959", "2026-12-07T09:00", []string{"2026-12-08T09:00"}},
		// An UNTIL in UTC is an instant: 09:00 in Berlin is 08:00Z in winter.
		{"FREQ=DAILY;UNTIL=20261209T080000Z", "2026-12-07T09:00", []string{"2026-12-08T09:00", "2026-12-09T09:00"}},
		{"FREQ=DAILY;UNTIL=20261209T075959Z", "2026-12-07T09:00", []string{"2026-12-08T09:00"}},
		{"FREQ=YEARLY", "9998-06-01T00:00", []string{"9999-06-01T00:00"}},
		{"FREQ=MONTHLY;BYDAY=5MO;BYMONTHDAY=9", "2026-01-01T00:00", nil}, // a fifth Monday is the 29th at the earliest
		{"FREQ=YEARLY;BYMONTH=2", "2026-01-30T00:00", nil},               // February 30th
	} {
		r, err := parseRRule(tc.rule)
		if err != nil {
			t.Fatal(tc.rule, err)
		}
		at := wall(tc.start)
		for _, want := range tc.want {
			next, ok := r.next(at, berlin)
			if !ok || !next.Equal(wall(want)) {
				t.Errorf("%s after %s = %s %v, want %s", tc.rule, at.Format("2006-01-02T15:04"), next.Format("2006-01-02T15:04"), ok, want)
				break
			}
			at = next
		}
		if strings.Contains(tc.rule, "UNTIL") || strings.HasPrefix(tc.start, "9998") || tc.want == nil {
			if next, ok := r.next(at, berlin); ok {
				t.Errorf("%s after %s = %s, want none", tc.rule, at.Format("2006-01-02T15:04"), next)
			}
		}
	}
}

func TestWallToInstant(t *testing.T) {
	for _, tc := range []struct{ zone, wall, want string }{
		{"Europe/Berlin", "2026-03-29T01:30", "2026-03-29T00:30:00Z"},
		{"Europe/Berlin", "2026-03-29T02:30", "2026-03-29T01:30:00Z"}, // skipped: read with +01:00, the offset before the gap
		{"Europe/Berlin", "2026-03-29T03:30", "2026-03-29T01:30:00Z"},
		{"Europe/Berlin", "2026-10-25T02:30", "2026-10-25T00:30:00Z"}, // repeated: the first, at +02:00
		{"Europe/Berlin", "2026-10-25T03:30", "2026-10-25T02:30:00Z"},
		{"America/Los_Angeles", "2026-03-08T02:30", "2026-03-08T10:30:00Z"}, // skipped: -08:00
		{"America/Los_Angeles", "2026-11-01T01:30", "2026-11-01T08:30:00Z"}, // repeated: the first, at -07:00
		{"America/Los_Angeles", "2026-11-01T02:30", "2026-11-01T10:30:00Z"},
		{"Australia/Lord_Howe", "2026-10-04T02:15", "2026-10-03T15:45:00Z"}, // a half-hour gap, read at +10:30
		{"UTC", "2026-03-29T02:30", "2026-03-29T02:30:00Z"},
	} {
		loc, ok := loadZone(tc.zone)
		if !ok {
			t.Fatal(tc.zone)
		}
		if got := wallToInstant(wall(tc.wall), loc).Format(time.RFC3339); got != tc.want {
			t.Errorf("%s in %s = %s, want %s", tc.wall, tc.zone, got, tc.want)
		}
	}
}

func TestLoadZone(t *testing.T) {
	for name, want := range map[string]bool{
		"Europe/Berlin": true, "America/Los_Angeles": true, "UTC": true, "Etc/GMT+5": true,
		"": false, "Local": false, "Mars/Olympus": false, "../../etc/passwd": false, "/etc/localtime": false, "Europe/Berlin\x00": false,
		"localtime": false, "posixrules": false, "Factory": false, "CET": false, "EST5EDT": false, "GMT": false, "right/UTC": false, "posix/Europe/Berlin": false,
		"./Europe/Berlin": false, "Europe//Berlin": false, "Europe/./Berlin": false, "America/Argentina/Buenos_Aires": true,
	} {
		if _, ok := loadZone(name); ok != want {
			t.Errorf("loadZone(%q) = %v, want %v", name, ok, want)
		}
	}
}

// TestRRuleNextAgreesWithDateutil asks python-dateutil (Debian's
// python3-dateutil) for the next occurrence of 1,200 random rules from random
// starts, floating and in two zones with DST, and compares.
func TestRRuleNextAgreesWithDateutil(t *testing.T) {
	t.Parallel() // dateutil takes seconds
	python := ""
	for _, p := range []string{"python3", "/usr/bin/python3"} { // the first with dateutil: a pyenv on PATH may lack Debian's
		if exec.Command(p, "-c", "import dateutil").Run() == nil {
			python = p
			break
		}
	}
	if python == "" {
		t.Fatal("this test needs python3 with dateutil: apt-get install python3-dateutil")
	}
	rnd := rand.New(rand.NewPCG(20, 12))
	type question struct {
		Rule  string `json:"rule"`
		Start string `json:"start"`
		TZ    string `json:"tz"`
		rule  rrule
		start time.Time
	}
	var questions []question
	for len(questions) < 1200 {
		q := question{Rule: randomRule(rnd), TZ: []string{"", "Europe/Berlin", "America/Los_Angeles"}[rnd.IntN(3)]}
		q.start = time.Date(1990+rnd.IntN(50), time.Month(1+rnd.IntN(12)), 1+rnd.IntN(31), 0, 0, 0, 0, time.UTC)
		if rnd.IntN(3) > 0 {
			q.start = q.start.Add(time.Duration(rnd.IntN(24*4)) * 15 * time.Minute)
		}
		if rnd.IntN(4) == 0 { // an UNTIL of the start's form (RFC 5545 asks for it; dateutil too)
			until := q.start.AddDate(0, 0, rnd.IntN(400))
			switch {
			case q.start.Hour() == 0 && q.start.Minute() == 0 && q.TZ == "":
				q.Rule += ";UNTIL=" + until.Format("20060102")
			case q.TZ == "":
				q.Rule += ";UNTIL=" + until.Format("20060102T150405")
			default:
				q.Rule += ";UNTIL=" + until.Format("20060102T150405Z")
			}
		}
		var err error
		if q.rule, err = parseRRule(q.Rule); err != nil {
			continue
		}
		q.Start = q.start.Format("2006-01-02T15:04:05")
		questions = append(questions, q)
	}
	var in strings.Builder
	for _, q := range questions {
		b, _ := json.Marshal(q)
		in.Write(append(b, '\n'))
	}
	cmd := exec.Command(python, "testdata/rrule_next.py")
	cmd.Stdin = strings.NewReader(in.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("testdata/rrule_next.py: %v", err)
	}
	answers := bufio.NewScanner(strings.NewReader(string(out)))
	agreed := 0
	for _, q := range questions {
		if !answers.Scan() {
			t.Fatal("dateutil answered fewer questions than asked")
		}
		var dateutil *string
		json.Unmarshal(answers.Bytes(), &dateutil)
		loc := time.UTC
		if q.TZ != "" {
			loc, _ = loadZone(q.TZ)
		}
		got, want := "none", "none"
		if next, ok := q.rule.next(q.start, loc); ok {
			got = next.Format("2006-01-02T15:04:05")
		}
		if dateutil != nil {
			want = *dateutil
		}
		if got != want {
			t.Errorf("%s from %s in %q: next = %s, dateutil says %s", q.Rule, q.Start, q.TZ, got, want)
		} else {
			agreed++
		}
	}
	t.Logf("%d of %d rules agree with dateutil", agreed, len(questions))
}

// randomRule is an RRULE of the supported parts, without COUNT and UNTIL, that
// parseRRule may still refuse (BYMONTHDAY under WEEKLY, say).
func randomRule(rnd *rand.Rand) string {
	freq := frequencies[rnd.IntN(4)]
	parts := []string{"FREQ=" + freq}
	some := func(n int, item func() string) string {
		items := make([]string, 1+rnd.IntN(n))
		for i := range items {
			items[i] = item()
		}
		return strings.Join(items, ",")
	}
	if rnd.IntN(2) == 0 {
		parts = append(parts, fmt.Sprintf("INTERVAL=%d", 1+rnd.IntN([]int{3, 12, 60}[rnd.IntN(3)])))
	}
	if rnd.IntN(3) == 0 {
		parts = append(parts, "BYMONTH="+some(4, func() string { return fmt.Sprint(1 + rnd.IntN(12)) }))
	}
	if rnd.IntN(3) == 0 && freq != "WEEKLY" {
		parts = append(parts, "BYMONTHDAY="+some(3, func() string { return fmt.Sprint((1 + rnd.IntN(31)) * (1 - 2*rnd.IntN(2))) }))
	}
	if rnd.IntN(2) == 0 {
		// All with an ordinal or none: dateutil (and rrule.js, its port) keep
		// only the days that match both kinds, where RFC 5545 keeps either
		// (jkbrzt/rrule#71); TestRRuleNext checks that case.
		ordinals := (freq == "MONTHLY" || freq == "YEARLY") && rnd.IntN(2) == 0
		parts = append(parts, "BYDAY="+some(3, func() string {
			day := weekdays[rnd.IntN(7)]
			if ordinals {
				return fmt.Sprint((1+rnd.IntN(5))*(1-2*rnd.IntN(2))) + day
			}
			return day
		}))
	}
	if rnd.IntN(3) == 0 {
		parts = append(parts, "WKST="+weekdays[rnd.IntN(7)])
	}
	rnd.Shuffle(len(parts), func(i, j int) { parts[i], parts[j] = parts[j], parts[i] })
	return strings.Join(parts, ";")
}

// TestRecurringTasks completes recurring tasks through the API: the task moves to
// its next occurrence and stays open, a completed copy records the one done, COUNT
// and UNTIL end the series, and If-Match and Idempotency-Key hold as on any write.
func TestRecurringTasks(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	tok := tokenFor(t, user)
	path := "/api/" + user + "/tasks"

	// Refusals name the field, and a refused write leaves nothing behind.
	wantLoc(t, e.do("POST", path, tok, map[string]any{"title": "x", "recurrence": "FREQ=DAILY"}), "body", "recurrence")
	wantLoc(t, e.do("POST", path, tok, map[string]any{"title": "x", "due_date": "2026-12-07", "recurrence": "FREQ=DAILY;BYSETPOS=1"}), "body", "recurrence")
	wantLoc(t, e.do("POST", path, tok, map[string]any{"title": "x", "due_date": "2026-12-07", "recurrence": 7}), "body", "recurrence")
	wantLoc(t, e.do("POST", path, tok, map[string]any{"title": "x", "due_date": "2026-12-07", "recurrence": strings.Repeat("FREQ=DAILY;", 50)}), "body", "recurrence")
	wantLoc(t, e.do("POST", path, tok, map[string]any{"title": "x", "timezone": "Mars/Olympus"}), "body", "timezone")
	wantLoc(t, e.do("POST", path, tok, map[string]any{"title": "x", "timezone": "Local"}), "body", "timezone")
	wantLoc(t, e.do("POST", path, tok, map[string]any{"title": "x", "recur_from": "now"}), "body", "recur_from")
	if tasks, _ := e.list(user, ""); len(tasks) != 0 {
		t.Fatalf("refused creates left %d tasks", len(tasks))
	}

	// A weekly meeting at 09:00 in Berlin, two days before the clocks change: it stays at 09:00.
	meeting := e.create(user, map[string]any{"title": "Standup", "due_date": "2026-03-27T09:00:00+01:00", "tags": []string{"work"},
		"recurrence": "byday=mo,fr;freq=weekly;COUNT=3", "timezone": "Europe/Berlin", "priority": "high"})
	if *meeting.Recurrence != "FREQ=WEEKLY;BYDAY=MO,FR;COUNT=3" || meeting.RecurFrom != "due" || *meeting.Timezone != "Europe/Berlin" {
		t.Fatalf("created %+v: recurrence not in its one spelling", meeting)
	}
	task := func(r result) Task { e.want(r, 200, "complete"); return decode[Task](t, r) }
	one := path + "/" + strconv.FormatInt(meeting.ID, 10)
	toggled := e.do("PATCH", one+"/complete", tok, nil)
	moved := task(toggled)
	if moved.Completed || moved.ID != meeting.ID || moved.DueDate.At.Format(time.RFC3339) != "2026-03-30T07:00:00Z" || *moved.Recurrence != "FREQ=WEEKLY;BYDAY=MO,FR;COUNT=2" {
		t.Fatalf("toggle of a recurring task = %+v, want it open, due 2026-03-30T07:00:00Z (09:00 CEST), COUNT=2", moved)
	}
	done, _ := e.list(user, "?status=completed")
	if len(done) != 1 || done[0].ID == meeting.ID || done[0].Title != "Standup" || done[0].Recurrence != nil || done[0].Priority != "high" ||
		!done[0].DueDate.At.Equal(meeting.DueDate.At) || done[0].CompletedAt == nil || len(done[0].Tags) != 1 {
		t.Fatalf("completed copies = %+v, want one copy of the occurrence done", done)
	}

	// If-Match: a stale version is a 412 and moves nothing; PATCH completed: true moves it once, also on a keyed retry.
	e.want(e.do("PATCH", one, tok, map[string]any{"completed": true}, "If-Match", `"1"`), 412, "stale If-Match")
	body := map[string]any{"completed": true, "title": "Standup (team)"}
	first := e.do("PATCH", one, tok, body, "If-Match", toggled.header.Get("ETag"), "Idempotency-Key", "k1")
	again := e.do("PATCH", one, tok, body, "If-Match", toggled.header.Get("ETag"), "Idempotency-Key", "k1")
	if task(first).DueDate.At.Format(time.RFC3339) != "2026-04-03T07:00:00Z" || string(again.body) != string(first.body) || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("keyed completion = %s, retry = %s: want due 2026-04-03T07:00:00Z once", first, again)
	}
	if last := task(first); last.Title != "Standup (team)" || *last.Recurrence != "FREQ=WEEKLY;BYDAY=MO,FR;COUNT=1" {
		t.Fatalf("after the second completion: %+v", last)
	}
	// COUNT=1: the last occurrence; the task itself completes, with no copy.
	final := task(e.do("PATCH", one+"/complete", tok, nil))
	if !final.Completed || final.DueDate.At.Format(time.RFC3339) != "2026-04-03T07:00:00Z" {
		t.Fatalf("last occurrence completed = %+v, want the task completed where it was", final)
	}
	if done, total := e.list(user, "?status=completed"); len(done) != 3 || total != 3 {
		t.Fatalf("after the series: %d completed (total %d), want the two copies and the task", len(done), total)
	}
	// Reopening it is a plain toggle; a recurring task needs its due date.
	reopened := task(e.do("PATCH", one+"/complete", tok, nil))
	if reopened.Completed || reopened.DueDate == nil {
		t.Fatalf("reopened = %+v", reopened)
	}
	wantLoc(t, e.do("PATCH", one, tok, map[string]any{"due_date": nil}), "body", "due_date")

	// 02:30 in Berlin across the spring gap: 03:30 CEST that day, then 02:30 again (due_wall).
	night := e.create(user, map[string]any{"title": "Backup", "due_date": "2026-03-28T02:30:00+01:00", "recurrence": "FREQ=DAILY", "timezone": "Europe/Berlin"})
	nightPath := path + "/" + strconv.FormatInt(night.ID, 10)
	if got := task(e.do("PATCH", nightPath+"/complete", tok, nil)).DueDate.At.Format(time.RFC3339); got != "2026-03-29T01:30:00Z" {
		t.Fatalf("02:30 daily in Berlin moved to %s, want 2026-03-29T01:30:00Z (03:30 CEST)", got)
	}
	if got := task(e.do("PATCH", nightPath, tok, map[string]any{"completed": true, "title": "Backup!"})).DueDate.At.Format(time.RFC3339); got != "2026-03-30T00:30:00Z" {
		t.Fatalf("02:30 daily in Berlin, completed with a new title, moved to %s, want 2026-03-30T00:30:00Z (02:30 CEST)", got)
	}

	// A date recurs as a date; UNTIL ends it; the month's last day.
	rent := e.create(user, map[string]any{"title": "Rent", "due_date": "2026-01-31", "recurrence": "FREQ=MONTHLY;BYMONTHDAY=-1;UNTIL=20260301"})
	rentPath := path + "/" + strconv.FormatInt(rent.ID, 10)
	if r := task(e.do("PATCH", rentPath+"/complete", tok, nil)); r.Completed || r.DueDate.Kind != dueDate || r.DueDate.At.Format(time.DateOnly) != "2026-02-28" {
		t.Fatalf("rent after January = %+v, want open, due the date 2026-02-28", r)
	}
	if r := task(e.do("PATCH", rentPath+"/complete", tok, nil)); !r.Completed {
		t.Fatalf("rent after February, UNTIL=20260301 = %+v, want completed", r)
	}

	// From completion: a floating 18:00, every 3 days after the day it is done.
	water := e.create(user, map[string]any{"title": "Water plants", "due_date": "2020-01-01T18:00", "recurrence": "FREQ=DAILY;INTERVAL=3", "recur_from": "completion"})
	w := task(e.do("PATCH", path+"/"+strconv.FormatInt(water.ID, 10)+"/complete", tok, nil))
	want := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, 3).Add(18 * time.Hour)
	if w.DueDate.Kind != dueLocal || !w.DueDate.At.Equal(want) && !w.DueDate.At.Equal(want.AddDate(0, 0, 1)) { // the day may turn during the test
		t.Fatalf("from completion = %+v, want the floating %s", w.DueDate, want)
	}

	// The feed has both writes of a completion: the moved task and the copy.
	series := e.create(user, map[string]any{"title": "Daily", "due_date": "2026-12-07", "recurrence": "FREQ=DAILY"})
	before := decode[changesPage](t, e.do("GET", "/api/"+user+"/changes", tok, nil))
	task(e.do("PATCH", path+"/"+strconv.FormatInt(series.ID, 10)+"/complete", tok, nil))
	after := decode[changesPage](t, e.do("GET", "/api/"+user+"/changes?since="+url.QueryEscape(before.Cursor), tok, nil))
	if len(after.Tasks) != 2 || after.Tasks[0].ID != series.ID || !after.Tasks[1].Completed {
		t.Fatalf("feed after a completion = %+v (from %+v), want the moved task, then its completed copy", after, before)
	}
}

// TestRecurringTaskLimit: the copy counts, so at MAX_TASKS_PER_USER a completion is a 409 that changes nothing.
func TestRecurringTaskLimit(t *testing.T) {
	e := newEnv(t, hsAuth(), func(c *config) { c.MaxTasks = 1 })
	user := newUser(t)
	daily := e.create(user, map[string]any{"title": "Daily", "due_date": "2026-12-07", "recurrence": "FREQ=DAILY"})
	one := "/api/" + user + "/tasks/" + strconv.FormatInt(daily.ID, 10)
	e.want(e.do("PATCH", one+"/complete", tokenFor(t, user), nil), 409, "completion at the task limit "+e.logs.String())
	if got := decode[Task](t, e.do("GET", one, tokenFor(t, user), nil)); got.Completed || !got.DueDate.At.Equal(daily.DueDate.At) {
		t.Fatalf("after a refused completion: %+v", got)
	}
}

// TestTaskInstantIsWallToInstant holds schema.sql's task_instant, which orders a
// list with tz=, to wallToInstant, which makes its cursors: every quarter hour
// across a day around each clock change of 2026 in four zones, in a session
// whose own TimeZone is a fifth.
func TestTaskInstantIsWallToInstant(t *testing.T) {
	ctx := t.Context()
	conn := must(testDB.pool.Acquire(ctx))
	defer conn.Release()
	tx := must(conn.Begin(ctx))
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SET LOCAL TimeZone = 'Asia/Kathmandu'`); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, zone := range []string{"Europe/Berlin", "America/Los_Angeles", "Australia/Lord_Howe", "America/Santiago"} {
		loc, _ := loadZone(zone)
		for day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC); day.Year() == 2026; day = day.AddDate(0, 0, 1) {
			if _, a := day.Add(-24 * time.Hour).In(loc).Zone(); func() bool { _, b := day.Add(48 * time.Hour).In(loc).Zone(); return a == b }() {
				continue // no clock change near this day
			}
			for wall := day; wall.Before(day.Add(48 * time.Hour)); wall = wall.Add(15 * time.Minute) {
				var got time.Time
				if err := tx.QueryRow(ctx, `SELECT task_instant($1::timestamptz AT TIME ZONE 'UTC', $2)`, wall, zone).Scan(&got); err != nil {
					t.Fatal(err)
				}
				if want := wallToInstant(wall, loc); !got.Equal(want) {
					t.Errorf("%s in %s: task_instant %s, wallToInstant %s", wall.Format("2006-01-02T15:04"), zone, got.UTC(), want)
				}
				checked++
			}
		}
	}
	if checked < 500 {
		t.Fatalf("checked %d wall clocks: the clock changes were not found", checked)
	}
}

// TestListSortsInZone: with tz=, sort=due_date reads dates and floating times in
// that zone, so a user in Los Angeles sees 6 pm before 8 pm; its cursors keep the zone.
func TestListSortsInZone(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	evening := e.create(user, map[string]any{"title": "8 pm, floating", "due_date": "2026-11-30T20:00"})
	six := e.create(user, map[string]any{"title": "6 pm in Los Angeles", "due_date": "2026-11-30T18:00:00-08:00"})
	day := e.create(user, map[string]any{"title": "Nov 30, all day", "due_date": "2026-11-30"})
	ids := func(tasks []Task) (ids []int64) {
		for _, t := range tasks {
			ids = append(ids, t.ID)
		}
		return ids
	}
	if tasks, _ := e.list(user, "?sort=due_date"); fmt.Sprint(ids(tasks)) != fmt.Sprint([]int64{day.ID, evening.ID, six.ID}) {
		t.Fatalf("sort=due_date (as in UTC) = %v", ids(tasks))
	}
	if tasks, _ := e.list(user, "?sort=due_date&tz=America/Los_Angeles"); fmt.Sprint(ids(tasks)) != fmt.Sprint([]int64{day.ID, six.ID, evening.ID}) {
		t.Fatalf("sort=due_date&tz=America/Los_Angeles = %v, want the day, 6 pm, 8 pm", ids(tasks))
	}
	got, pages := e.pages(user, "?sort=due_date&tz=America/Los_Angeles&order=desc&limit=1", nil)
	if fmt.Sprint(got) != fmt.Sprint([]int64{evening.ID, six.ID, day.ID}) || pages != 3 {
		t.Fatalf("paged one by one = %v in %d pages", got, pages)
	}
	tok := tokenFor(t, user)
	first := e.do("GET", "/api/"+user+"/tasks?sort=due_date&tz=America/Los_Angeles&limit=1", tok, nil)
	next := first.header.Get("Link")
	cursor := next[strings.Index(next, "cursor=")+7 : strings.Index(next, ">")]
	wantLoc(t, e.do("GET", "/api/"+user+"/tasks?sort=due_date&tz=Europe/Berlin&cursor="+cursor, tok, nil), "query", "cursor")
	wantLoc(t, e.do("GET", "/api/"+user+"/tasks?sort=due_date&tz=Mars/Olympus", tok, nil), "query", "tz")
	wantLoc(t, e.do("GET", "/api/"+user+"/tasks?tz=Europe/Berlin", tok, nil), "query", "tz")
}

// TestRecurringCompletionsRace: completions of one recurring task at once each
// move it once, under the user's lock: n toggles, n occurrences done, n copies;
// and of n completions with the same If-Match, one lands and the rest are 412s.
func TestRecurringCompletionsRace(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	tok := tokenFor(t, user)
	daily := e.create(user, map[string]any{"title": "Daily", "due_date": "2026-12-07", "recurrence": "FREQ=DAILY"})
	one := "/api/" + user + "/tasks/" + strconv.FormatInt(daily.ID, 10)
	const n = 8
	statuses := make(chan int, n)
	for range n {
		go func() { statuses <- e.do("PATCH", one+"/complete", tok, nil).status }()
	}
	for range n {
		if s := <-statuses; s != 200 {
			t.Fatalf("a concurrent toggle = %d, want 200", s)
		}
	}
	got := decode[Task](t, e.do("GET", one, tok, nil))
	copies, _ := e.list(user, "?status=completed")
	if got.Completed || got.DueDate.At.Format(time.DateOnly) != "2026-12-15" || len(copies) != n {
		t.Fatalf("after %d concurrent toggles: %+v, %d copies; want open, due 2026-12-15, %d copies", n, got, len(copies), n)
	}
	tag := e.do("GET", one, tok, nil).header.Get("ETag")
	for range n {
		go func() { statuses <- e.do("PATCH", one, tok, map[string]any{"completed": true}, "If-Match", tag).status }()
	}
	landed := 0
	for range n {
		switch s := <-statuses; s {
		case 200:
			landed++
		case 412:
		default:
			t.Fatalf("a completion under If-Match = %d", s)
		}
	}
	if got := decode[Task](t, e.do("GET", one, tok, nil)); landed != 1 || got.DueDate.At.Format(time.DateOnly) != "2026-12-16" {
		t.Fatalf("%d completions under one If-Match landed, due %s; want 1, 2026-12-16", landed, got.DueDate.At.Format(time.DateOnly))
	}
}

// TestNextDueAcrossClockChanges: an instant recurs on its zone's wall clock, a
// skipped time read with the offset before the gap, a repeated one as the first;
// after a gap the series goes on from its own wall clock (due_wall) where that
// still reads the due date; dates and floating times recur on their own
// calendar; COUNT counts down.
func TestNextDueAcrossClockChanges(t *testing.T) {
	for _, tc := range []struct {
		rule, zone, due, wall string
		kind                  dueKind
		want, wantRule        string
	}{
		{"FREQ=DAILY", "Europe/Berlin", "2026-03-28T01:30:00Z", "", dueInstant, "2026-03-29T01:30:00Z", "FREQ=DAILY"},                     // 02:30 CET, then the gap: 03:30 CEST
		{"FREQ=DAILY", "Europe/Berlin", "2026-03-29T01:30:00Z", "2026-03-29T02:30:00Z", dueInstant, "2026-03-30T00:30:00Z", "FREQ=DAILY"}, // the series' 02:30 again, as RFC 5545 and dateutil have it
		{"FREQ=DAILY", "Europe/Berlin", "2026-03-29T01:30:00Z", "", dueInstant, "2026-03-30T01:30:00Z", "FREQ=DAILY"},                     // a due date set at 03:30 CEST stays 03:30
		{"FREQ=DAILY", "Europe/Berlin", "2026-03-29T05:00:00Z", "2026-03-29T02:30:00Z", dueInstant, "2026-03-30T05:00:00Z", "FREQ=DAILY"}, // a due_wall that no longer reads the due date is left
		{"FREQ=DAILY", "Europe/Berlin", "2026-03-28T08:00:00Z", "", dueInstant, "2026-03-29T07:00:00Z", "FREQ=DAILY"},                     // 09:00 stays 09:00
		{"FREQ=DAILY", "America/Los_Angeles", "2026-10-31T08:30:00Z", "", dueInstant, "2026-11-01T08:30:00Z", "FREQ=DAILY"},               // 01:30 PDT, then the first 01:30
		{"FREQ=DAILY", "America/Los_Angeles", "2026-10-31T16:00:00Z", "", dueInstant, "2026-11-01T17:00:00Z", "FREQ=DAILY"},               // 09:00 PDT, then 09:00 PST
		{"FREQ=WEEKLY;COUNT=3", "UTC", "2026-03-28T08:00:00Z", "", dueInstant, "2026-04-04T08:00:00Z", "FREQ=WEEKLY;COUNT=2"},             // no zone: UTC
		{"FREQ=DAILY", "Europe/Berlin", "2026-03-28T02:30:00Z", "", dueLocal, "2026-03-29T02:30:00Z", "FREQ=DAILY"},                       // a floating time keeps its clock
		{"FREQ=MONTHLY", "Europe/Berlin", "2026-01-31T00:00:00Z", "", dueDate, "2026-03-31T00:00:00Z", "FREQ=MONTHLY"},                    // a date skips February
		{"FREQ=DAILY;COUNT=1", "UTC", "2026-03-28T08:00:00Z", "", dueInstant, "none", "FREQ=DAILY;COUNT=1"},
		{"FREQ=DAILY;UNTIL=20260328T080000Z", "UTC", "2026-03-28T08:00:00Z", "", dueInstant, "none", "FREQ=DAILY;UNTIL=20260328T080000Z"},
	} {
		at, _ := time.Parse(time.RFC3339, tc.due)
		task := Task{Recurrence: &tc.rule, RecurFrom: "due", Timezone: &tc.zone, DueDate: &Due{at, tc.kind}}
		if wall, err := time.Parse(time.RFC3339, tc.wall); err == nil {
			task.dueWall = &wall
		}
		next, _, rule := nextDue(task, time.Now())
		got := "none"
		if next != nil {
			got = next.At.Format(time.RFC3339)
			if next.Kind != tc.kind {
				t.Errorf("%s from %s: kind %d, want %d", tc.rule, tc.due, next.Kind, tc.kind)
			}
		}
		if got != tc.want || rule != tc.wantRule {
			t.Errorf("%s in %s from %s = %s %s, want %s %s", tc.rule, tc.zone, tc.due, got, rule, tc.want, tc.wantRule)
		}
	}
}
