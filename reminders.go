// reminders.go holds a task's reminders, their parsing, and the scheduler that fires them and sends their pushes.
package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxReminders is how many reminders a task may have.
const maxReminders = 5

// isoDuration is an ISO 8601 duration as RFC 5545's TRIGGER takes it, and PostgreSQL's interval
// reads it: weeks, or days and a time; the groups are the sign and the numbers of each unit.
var isoDuration = regexp.MustCompile(`^([+-]?)P(?:([0-9]{1,3})W|(?:([0-9]{1,3})D)?` +
	`(?:T(?:([0-9]{1,4})H)?(?:([0-9]{1,6})M)?(?:([0-9]{1,8})S)?)?)$`)

// parseReminders reads a body's reminders: null or an array of up to maxReminders objects, each
// {"offset": "-PT15M"}, an ISO 8601 duration from the due moment from -P28D to P1D, or
// {"at": "2026-12-01T08:45:00Z"}, an instant. It returns them as a JSON array (offsets as
// spellOffset keeps them, instants in UTC), repeats dropped, and a message for each entry that is wrong.
func parseReminders(v json.RawMessage, fail func(msg, typ string, loc ...any)) json.RawMessage {
	var entries []map[string]json.RawMessage
	if string(v) == "null" {
		return noReminders
	}
	if json.Unmarshal(v, &entries) != nil || len(entries) > maxReminders {
		fail("Input should be a list of up to "+strconv.Itoa(maxReminders)+" reminders, each {\"offset\": \"-PT15M\"} or {\"at\": \"2026-12-01T08:45:00Z\"}", "list_type", "reminders")
		return nil
	}
	var out []string
	for i, e := range entries {
		var s string
		offset, isOffset := e["offset"]
		if len(e) != 1 || json.Unmarshal(append(offset, e["at"]...), &s) != nil { // else its one key is offset or at
			fail(`Input should be {"offset": "-PT15M"} or {"at": "2026-12-01T08:45:00Z"}`, "value_error", "reminders", i)
			continue
		}
		if isOffset {
			if d, ok := spellOffset(s); ok {
				s = `{"offset":"` + d + `"}`
			} else {
				fail("An offset should be an ISO 8601 duration from -P28D to P1D, such as -PT15M", "value_error", "reminders", i, "offset")
				continue
			}
		} else if d, ok := parseDue(s); ok && d.Kind == dueInstant {
			s = `{"at":` + string(appendDue(nil, d)) + `}`
		} else {
			fail("at should be a date-time with an offset, such as 2026-12-01T08:45:00Z", "value_error", "reminders", i, "at")
			continue
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return json.RawMessage("[" + strings.Join(out, ",") + "]")
}

// spellOffset is s, an ISO 8601 duration, upper-cased and without a + sign (which PostgreSQL's
// interval does not read), or false unless it lies from -P28D to P1D, a day counted as 24 hours.
func spellOffset(s string) (string, bool) {
	s = strings.ToUpper(s)
	m := isoDuration.FindStringSubmatch(s)
	if m == nil || strings.HasSuffix(s, "P") || strings.HasSuffix(s, "T") {
		return "", false
	}
	n := make([]int, len(m))
	for i := 2; i < len(m); i++ {
		n[i], _ = strconv.Atoi(m[i]) // 0 for a unit left out
	}
	seconds := (7*n[2]+n[3])*86400 + 3600*n[4] + 60*n[5] + n[6]
	if m[1] == "-" && seconds > 28*86400 || m[1] != "-" && seconds > 86400 {
		return "", false
	}
	return strings.TrimPrefix(s, "+"), true
}

// fireBatch bounds the due reminders whose users one round of the scheduler locks and fires.
const fireBatch = 500

// remind fires reminders (store.fireReminders) and, with p, has their pushes sent until ctx ends,
// then waits for the pushes in flight. Each round reads when the next of each is due, one indexed
// statement, and waits until then, a second at most: another replica may have written one sooner.
// While a push is due, senders (pusher.drain) run beside the rounds, pushesAtOnce at most, so that
// firing never waits on a push service and a slow one holds up one sender.
func remind(ctx context.Context, db *store, p *pusher, log *slog.Logger) {
	var senders sync.WaitGroup
	defer senders.Wait()
	sending := make(chan struct{}, pushesAtOnce) // one token a sender
	for {
		wait := time.Second
		reminder, push, err := db.dueWork(ctx)
		now := time.Now()
		switch {
		case err != nil:
			log.Warn("reading when reminders are due", "err", err.Error())
		case reminder != nil && !reminder.After(now):
			switch fired, err := db.fireReminders(ctx, fireBatch, p != nil); {
			case err != nil:
				log.Warn("firing reminders", "err", err.Error())
			case fired > 0:
				wait = 0 // more may be due
			default: // another replica holds the users whose reminders are due
				wait = 100 * time.Millisecond
			}
		case reminder != nil:
			wait = min(wait, reminder.Sub(now))
		}
		for p != nil && push != nil && !push.After(now) && len(sending) < cap(sending) {
			sending <- struct{}{}
			senders.Go(func() { p.drain(ctx); <-sending })
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
