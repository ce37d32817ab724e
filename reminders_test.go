// reminders_test.go tests reminders: their spelling, the rules between them and the due date, next_reminder_at, and their firing into the feed.
package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestParseReminders(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`null`, `[]`},
		{`[]`, `[]`},
		{`[{"offset":"-PT15M"}]`, `[{"offset":"-PT15M"}]`},
		{`[{"offset":"-P4W"},{"offset":"PT90M"},{"offset":"P1D"},{"offset":"-P28D"},{"offset":"+PT1H"}]`, `[{"offset":"-P4W"},{"offset":"PT90M"},{"offset":"P1D"},{"offset":"-P28D"},{"offset":"PT1H"}]`},
		{`[{"offset":"-pt15m"},{"offset":"-PT15M"},{"offset":"-PT0S"}]`, `[{"offset":"-PT15M"},{"offset":"-PT0S"}]`},
		{`[{"offset":"-P1DT2H3M4S"}]`, `[{"offset":"-P1DT2H3M4S"}]`},
		{`[{"at":"2026-12-01T09:45:00+01:00"},{"at":"2026-12-01T08:45:00Z"}]`, `[{"at":"2026-12-01T08:45:00Z"}]`},
	} {
		var errs []string
		got := parseReminders(json.RawMessage(tc.in), func(msg, _ string, loc ...any) { errs = append(errs, msg) })
		if string(got) != tc.want || errs != nil {
			t.Errorf("parseReminders(%s) = %s %v, want %s", tc.in, got, errs, tc.want)
		}
	}
	for _, in := range []string{`{}`, `"x"`, `[1]`, `[{}]`, `[{"offset":"-PT15M","at":"2026-12-01T08:45:00Z"}]`, `[{"when":"-PT15M"}]`,
		`[{"offset":"P"}]`, `[{"offset":"PT"}]`, `[{"offset":"-P29D"}]`, `[{"offset":"P1DT1S"}]`, `[{"offset":"PT25H"}]`, `[{"offset":"-P1Y"}]`,
		`[{"offset":"-P1M"}]`, `[{"offset":"-PT1.5H"}]`, `[{"offset":15}]`, `[{"at":"2026-12-01"}]`, `[{"at":"2026-12-01T08:45"}]`, `[{"at":null}]`,
		`[{"offset":"-P5W"}]`, `[{"offset":"+-PT1H"}]`, `[{"offset":"P1DT"}]`,
		`[{"offset":"-PT1M"},{"offset":"-PT2M"},{"offset":"-PT3M"},{"offset":"-PT4M"},{"offset":"-PT5M"},{"offset":"-PT6M"}]`} {
		var errs []string
		if got := parseReminders(json.RawMessage(in), func(msg, _ string, loc ...any) { errs = append(errs, msg) }); errs == nil {
			t.Errorf("parseReminders(%s) = %s, want a refusal", in, got)
		}
	}
}

// TestReminderRules: an offset needs a due date, and a date or a floating time
// needs a timezone too, on create and on every update after; next_reminder_at
// follows the due date, completion and reopening.
func TestReminderRules(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	tok := tokenFor(t, user)
	path := "/api/" + user + "/tasks"
	offset := []map[string]string{{"offset": "-PT15M"}}
	wantLoc(t, e.do("POST", path, tok, map[string]any{"title": "x", "reminders": offset}), "body", "reminders")
	wantLoc(t, e.do("POST", path, tok, map[string]any{"title": "x", "due_date": "2099-12-01", "reminders": offset}), "body", "reminders")
	wantLoc(t, e.do("POST", path, tok, map[string]any{"title": "x", "reminders": []map[string]string{{"offset": "-P30D"}}}), "body", "reminders", 0, "offset")

	day := e.create(user, map[string]any{"title": "All day", "due_date": "2099-03-29", "timezone": "Europe/Berlin",
		"reminders": []map[string]string{{"offset": "PT9H"}, {"offset": "-P1D"}, {"at": "2099-01-01T00:00:00Z"}}})
	if string(day.Reminders) != `[{"offset":"PT9H"},{"offset":"-P1D"},{"at":"2099-01-01T00:00:00Z"}]` || day.NextReminder == nil ||
		day.NextReminder.Format(time.RFC3339) != "2099-01-01T00:00:00Z" {
		t.Fatalf("created %s, next %v", day.Reminders, day.NextReminder)
	}
	one := path + "/" + strconv.FormatInt(day.ID, 10)
	next := func(body map[string]any) string {
		r := e.do("PATCH", one, tok, body)
		e.want(r, 200, "PATCH")
		if n := decode[Task](t, r).NextReminder; n != nil {
			return n.Format(time.RFC3339)
		}
		return "none"
	}
	// 2099-03-29 is when Berlin's clocks go forward: PT9H is 09:00 CEST, -P1D midnight CET the day before.
	if got := next(map[string]any{"reminders": []map[string]string{{"offset": "PT9H"}, {"offset": "-P1D"}}}); got != "2099-03-27T23:00:00Z" {
		t.Errorf("next after the at is gone = %s, want 2099-03-27T23:00:00Z (-P1D)", got)
	}
	if got := next(map[string]any{"reminders": []map[string]string{{"offset": "PT9H"}}}); got != "2099-03-29T07:00:00Z" {
		t.Errorf("next of PT9H = %s, want 2099-03-29T07:00:00Z (09:00 CEST)", got)
	}
	if got := next(map[string]any{"completed": true}); got != "none" {
		t.Errorf("next once completed = %s, want none", got)
	}
	if got := next(map[string]any{"completed": false, "timezone": "America/Los_Angeles"}); got != "2099-03-29T16:00:00Z" {
		t.Errorf("next reopened in Los Angeles = %s, want 2099-03-29T16:00:00Z", got)
	}
	wantLoc(t, e.do("PATCH", one, tok, map[string]any{"timezone": nil}), "body", "reminders")
	wantLoc(t, e.do("PATCH", one, tok, map[string]any{"due_date": nil}), "body", "reminders")
	if got := next(map[string]any{"reminders": nil, "timezone": nil}); got != "none" {
		t.Errorf("next without reminders = %s", got)
	}
	// A recurring task's offsets follow each occurrence; its instants were the occurrence's, and go with it.
	weekly := e.create(user, map[string]any{"title": "Weekly", "due_date": "2099-06-01T09:00:00Z", "recurrence": "FREQ=WEEKLY",
		"reminders": []map[string]string{{"offset": "-PT15M"}, {"at": "2099-05-30T08:00:00Z"}, {"offset": "-P1D"}}})
	r := e.do("PATCH", path+"/"+strconv.FormatInt(weekly.ID, 10)+"/complete", tok, nil)
	if moved := decode[Task](t, r); moved.NextReminder == nil || moved.NextReminder.Format(time.RFC3339) != "2099-06-07T09:00:00Z" ||
		string(moved.Reminders) != `[{"offset":"-PT15M"},{"offset":"-P1D"}]` {
		t.Fatalf("after a completion, reminders %s, next %v; want the offsets alone, next 2099-06-07T09:00:00Z (-P1D)", moved.Reminders, moved.NextReminder)
	}
	// A moment that fired does not come back, even to a write that began before it fired.
	twice := e.create(user, map[string]any{"title": "Twice", "reminders": []map[string]string{{"at": "2099-01-01T00:00:00Z"}, {"at": "2099-01-02T00:00:00Z"}}})
	if _, err := testDB.pool.Exec(t.Context(), `INSERT INTO fired_reminders (user_id, version, task_id, at) VALUES ($1, 1000000, $2, '2099-01-01T00:00:00Z')`,
		user, twice.ID); err != nil {
		t.Fatal(err)
	}
	r = e.do("PATCH", path+"/"+strconv.FormatInt(twice.ID, 10), tok, map[string]any{"reminders": []map[string]string{{"at": "2099-01-02T00:00:00Z"}, {"at": "2099-01-01T00:00:00Z"}}})
	if got := decode[Task](t, r).NextReminder; got == nil || got.Format(time.RFC3339) != "2099-01-02T00:00:00Z" {
		t.Fatalf("next after 2099-01-01 fired = %v, want 2099-01-02T00:00:00Z", got)
	}
	if copies, _ := e.list(user, "?status=completed"); len(copies) != 1 || string(copies[0].Reminders) != "[]" || copies[0].NextReminder != nil {
		t.Fatalf("the completed copy = %+v, want it without reminders", copies)
	}
}

// TestRemindersFire: a reminder fires once, as a feed entry and on the event
// stream, and a task's next reminder moves past it; a completed task's are cancelled.
func TestRemindersFire(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	tok := tokenFor(t, user)
	stream := e.openStream(user)
	stream.page(stream.next(false)) // the first sync
	at := time.Now().Add(1500 * time.Millisecond).UTC().Truncate(time.Second).Add(time.Second)
	later := at.Add(time.Hour)
	task := e.create(user, map[string]any{"title": "Call", "due_date": later.Format(time.RFC3339),
		"reminders": []map[string]string{{"at": at.Format(time.RFC3339)}, {"offset": "-PT0S"}}})
	cancelled := e.create(user, map[string]any{"title": "Done already", "reminders": []map[string]string{{"at": at.Format(time.RFC3339)}}})
	e.want(e.do("PATCH", "/api/"+user+"/tasks/"+strconv.FormatInt(cancelled.ID, 10)+"/complete", tok, nil), 200, "complete")
	before := decode[changesPage](t, e.do("GET", "/api/"+user+"/changes", tok, nil))

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { remind(ctx, testDB, nil, slog.New(slog.DiscardHandler)); close(done) }()
	defer func() { stop(); <-done }()

	var fired []struct {
		TaskID  int64     `json:"task_id"`
		At      time.Time `json:"at"`
		FiredAt time.Time `json:"fired_at"`
	}
	for len(fired) == 0 {
		var p struct {
			changesPage
			Reminders []struct {
				TaskID  int64     `json:"task_id"`
				At      time.Time `json:"at"`
				FiredAt time.Time `json:"fired_at"`
			} `json:"reminders"`
		}
		ev := stream.next(false)
		json.Unmarshal([]byte(ev.Data), &p)
		fired = append(fired, p.Reminders...)
	}
	if len(fired) != 1 || fired[0].TaskID != task.ID || !fired[0].At.Equal(at) || fired[0].FiredAt.Before(at) {
		t.Fatalf("the stream delivered %+v, want one reminder of task %d at %s", fired, task.ID, at)
	}
	time.Sleep(1500 * time.Millisecond) // a second round of the scheduler finds nothing more to fire
	after := e.do("GET", "/api/"+user+"/changes?since="+before.Cursor, tok, nil)
	if n := strings.Count(string(after.body), `"fired_at"`); n != 1 {
		t.Fatalf("the feed since before holds %d reminders, want 1: %s", n, after.body)
	}
	got := decode[Task](t, e.do("GET", "/api/"+user+"/tasks/"+strconv.FormatInt(task.ID, 10), tok, nil))
	if got.NextReminder == nil || !got.NextReminder.Equal(later) {
		t.Fatalf("next reminder after the first fired = %v, want %s", got.NextReminder, later)
	}
}

// TestReminderPushSpelling: a fired reminder's push, which SQL writes, spells its
// task's due date as the API does for each kind (a date, a floating time, an
// instant with a fraction, none), and its moment in UTC, under a topic of its own.
func TestReminderPushSpelling(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	tok := tokenFor(t, user)
	if _, err := testDB.pool.Exec(t.Context(), `INSERT INTO push_subscriptions (user_id, endpoint, p256dh, auth)
		VALUES ($1, 'https://push.example/1', '', '')`, user); err != nil {
		t.Fatal(err)
	}
	at := []map[string]string{{"at": "2099-01-01T00:00:00Z"}}
	tasks := map[int64]Task{}
	for _, due := range []any{"2026-12-07", "2026-12-07T18:30:00.25", "2026-12-07T08:45:00.123456+01:00", nil} {
		task := e.create(user, map[string]any{"title": "Due " + strconv.Itoa(len(tasks)), "due_date": due, "reminders": at})
		tasks[task.ID] = task
	}
	if _, err := testDB.pool.Exec(t.Context(), `UPDATE tasks SET next_reminder_at = '2026-01-02 04:04:05.5+01'
		WHERE user_id = $1`, user); err != nil {
		t.Fatal(err)
	}
	if _, err := testDB.fireReminders(t.Context(), fireBatch, true); err != nil {
		t.Fatal(err)
	}
	rows, _ := testDB.pool.Query(t.Context(), `SELECT topic, payload FROM push_outbox WHERE user_id = $1`, user)
	queued, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ Topic, Payload string }])
	if err != nil || len(queued) != len(tasks) {
		t.Fatalf("queued %+v (%v), want a push for each of the %d tasks", queued, err, len(tasks))
	}
	topics := map[string]bool{}
	for _, q := range queued {
		p, err := decodePayload([]byte(q.Payload))
		task := decode[Task](t, e.do("GET", "/api/"+user+"/tasks/"+strconv.FormatInt(p.Task.ID, 10), tok, nil))
		due := appendOrNull(nil, task.DueDate, appendDue)
		if err != nil || p.Task.Title != tasks[p.Task.ID].Title || string(p.Task.DueDate) != string(due) || p.At != "2026-01-02T03:04:05.5Z" {
			t.Errorf("payload %s (%v), want title %q, due_date %s and at in UTC", q.Payload, err, tasks[p.Task.ID].Title, due)
		}
		topics[q.Topic] = true
	}
	if len(topics) != len(tasks) {
		t.Errorf("%d topics for %d reminders, want one each", len(topics), len(tasks))
	}
}
