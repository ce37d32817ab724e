// recurrence.go holds RRULEs (an RFC 5545 subset): their parsing, one spelling and next occurrence.
package main

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // the scratch image has no zoneinfo
)

// frequencies are FREQ's supported values, shortest period first.
var frequencies = []string{"DAILY", "WEEKLY", "MONTHLY", "YEARLY"}

// daily to yearly are rrule.freq's values: indexes into frequencies.
const daily, weekly, monthly, yearly = 0, 1, 2, 3

// recurFroms are recur_from's values: from the due date (the default), or from each completion.
var recurFroms = []string{"due", "completion"}

// weekdays are BYDAY's and WKST's day names, in time.Weekday's order.
var weekdays = []string{"SU", "MO", "TU", "WE", "TH", "FR", "SA"}

// byDay is a BYDAY entry: a weekday, and its ordinal in the month or year (1MO, -1FR), 0 for none.
type byDay struct {
	n   int
	day time.Weekday
}

// rrule is a parsed RRULE (RFC 5545 §3.3.10) of the parts parseRRule supports.
type rrule struct {
	freq, interval      int
	byMonth, byMonthDay []int
	byDay               []byDay
	wkst                time.Weekday
	count               int               // occurrences left, this one included; 0: no COUNT
	untilEnd            time.Time         // UNTIL's last moment: an instant if in UTC, else a wall clock
	spelling            map[string]string // each part given, by name: its value in the one spelling
}

// parseRRule reads an RRULE value, "RRULE:" and letter case aside; its errors name the part at fault.
func parseRRule(s string) (rrule, error) {
	r := rrule{freq: -1, interval: 1, wkst: time.Monday, spelling: map[string]string{}}
	for part := range strings.SplitSeq(strings.TrimPrefix(strings.ToUpper(s), "RRULE:"), ";") {
		name, v, _ := strings.Cut(part, "=")
		if _, seen := r.spelling[name]; seen {
			return r, fmt.Errorf("%s appears twice", name)
		}
		var err error
		switch name {
		case "FREQ":
			if r.freq = slices.Index(frequencies, v); r.freq < 0 {
				err = errors.New("must be DAILY, WEEKLY, MONTHLY or YEARLY")
			}
		case "INTERVAL", "COUNT":
			n := map[string]*int{"INTERVAL": &r.interval, "COUNT": &r.count}[name]
			*n, err = ruleNumber(1000, false)(v)
			v = strconv.Itoa(*n)
		case "UNTIL": // a date (through the end of that day), a wall clock, or an instant in UTC
			form := map[int]string{8: "20060102", 15: "20060102T150405", 16: "20060102T150405Z"}[len(v)]
			if r.untilEnd, err = time.Parse(form, v); form == "" || err != nil {
				err = errors.New("must be a date (20261231), a date-time (20261231T090000) or one in " +
					"UTC (20261231T090000Z)")
			} else if len(v) == 8 {
				r.untilEnd = r.untilEnd.Add(24*time.Hour - time.Microsecond)
			}
		case "WKST":
			if r.wkst = time.Weekday(slices.Index(weekdays, v)); r.wkst < 0 {
				err = errors.New("must be a day: MO, TU, WE, TH, FR, SA or SU")
			}
		case "BYMONTH":
			r.byMonth, v, err = ruleList(v, ruleNumber(12, false), cmp.Compare)
		case "BYMONTHDAY":
			r.byMonthDay, v, err = ruleList(v, ruleNumber(31, true), cmp.Compare)
		case "BYDAY":
			r.byDay, v, err = ruleList(v, parseByDay, func(a, b byDay) int { // MO first
				return cmp.Or(cmp.Compare((a.day+6)%7, (b.day+6)%7), cmp.Compare(a.n, b.n))
			})
		default:
			return r, fmt.Errorf("%s is not supported: the parts are FREQ, INTERVAL, BYDAY, "+
				"BYMONTHDAY, BYMONTH, WKST, COUNT and UNTIL", cmp.Or(name, "an empty part"))
		}
		if err != nil {
			return r, fmt.Errorf("%s %w", name, err)
		}
		r.spelling[name] = v
	}
	longest := 0 // days in the longest of BYMONTH's months in a leap year; without BYMONTH, any day fits
	for _, m := range r.byMonth {
		longest = max(longest, time.Date(2028, time.Month(m+1), 0, 0, 0, 0, 0, time.UTC).Day())
	}
	fits := r.byMonth == nil || slices.ContainsFunc(r.byMonthDay, func(d int) bool { return abs(d) <= longest })
	switch {
	case r.freq < 0:
		return r, errors.New("FREQ is required")
	case r.count > 0 && r.spelling["UNTIL"] != "":
		return r, errors.New("COUNT and UNTIL: at most one of them may be given")
	case r.freq == weekly && r.byMonthDay != nil:
		return r, errors.New("BYMONTHDAY does not apply to FREQ=WEEKLY")
	case r.freq < monthly && slices.ContainsFunc(r.byDay, func(d byDay) bool { return d.n != 0 }):
		return r, errors.New("BYDAY with an ordinal (1MO, -1FR) needs FREQ=MONTHLY or YEARLY")
	case (r.freq == monthly || r.byMonth != nil) && // an ordinal counts weeks of a month, not a year
		slices.ContainsFunc(r.byDay, func(d byDay) bool { return abs(d.n) > 5 }):
		return r, errors.New("BYDAY ordinals must be 1 to 5 or -1 to -5 here")
	case r.byMonthDay != nil && !fits:
		return r, errors.New("BYMONTHDAY names no day that its months have")
	}
	return r, nil
}

// ruleNumber is a parser of decimals from 1 to hi, or if signed ±1 to ±hi; errors say the range.
func ruleNumber(hi int, signed bool) func(string) (int, error) {
	return func(v string) (int, error) {
		n, err := strconv.Atoi(v)
		if err == nil && 1 <= abs(n) && abs(n) <= hi && (signed || v[0] != '+' && v[0] != '-') {
			return n, nil
		}
		if signed {
			return 0, fmt.Errorf("must be 1 to %d or -1 to -%d", hi, hi)
		}
		return 0, fmt.Errorf("must be 1 to %d", hi)
	}
}

// abs is n without its sign.
func abs(n int) int { return max(n, -n) }

// ruleList reads a comma-separated list with read, and spells it sorted by order without repeats.
func ruleList[T any](s string, read func(string) (T, error), order func(T, T) int) ([]T, string, error) {
	var list []T
	for v := range strings.SplitSeq(s, ",") {
		x, err := read(v)
		if err != nil {
			return nil, "", err
		}
		list = append(list, x)
	}
	slices.SortFunc(list, order)
	list = slices.CompactFunc(list, func(a, b T) bool { return order(a, b) == 0 })
	return list, strings.ReplaceAll(strings.Trim(fmt.Sprint(list), "[]"), " ", ","), nil // fmt: [1 2]
}

// parseByDay reads a BYDAY entry: a day (WE), optionally after a signed ordinal (1MO, -1FR).
func parseByDay(v string) (byDay, error) {
	i := max(len(v)-2, 0)                 // where the day begins
	n, err := ruleNumber(53, true)(v[:i]) // 0 without one
	if day := slices.Index(weekdays, v[i:]); day >= 0 && (i == 0 || err == nil) {
		return byDay{n, time.Weekday(day)}, nil
	}
	return byDay{}, errors.New("entries must be a day (MO), optionally after an ordinal (1MO, -1FR)")
}

// String is the entry's one spelling: 1MO, -1FR, or WE without an ordinal.
func (d byDay) String() string {
	return strings.TrimPrefix(strconv.Itoa(d.n), "0") + weekdays[d.day]
}

// String is the rule's one spelling: its parts in a fixed order, INTERVAL=1 and WKST=MO left out.
func (r rrule) String() string {
	var parts []string
	for _, name := range strings.Fields("FREQ INTERVAL BYMONTH BYMONTHDAY BYDAY WKST COUNT UNTIL") {
		part := name + "=" + r.spelling[name]
		if part != name+"=" && part != "INTERVAL=1" && part != "WKST=MO" {
			parts = append(parts, part)
		}
	}
	return strings.Join(parts, ";")
}

// next is the rule's first occurrence after start, a wall clock held as UTC, in the series that
// starts there at start's time of day, or false when UNTIL (read in loc if in UTC) comes first or
// none falls before the year 10000 or in 400 years times INTERVAL; COUNT is the caller's.
func (r rrule) next(start time.Time, loc *time.Location) (time.Time, bool) {
	day0 := start.Truncate(24 * time.Hour)
	period := func(i int) time.Time { // the first day of the i-th period, start's being the 0th
		switch y, m, _ := start.Date(); r.freq {
		case weekly: // weeks begin on WKST
			return day0.AddDate(0, 0, 7*i-(int(start.Weekday()-r.wkst)+7)%7)
		case monthly:
			return time.Date(y, m+time.Month(i), 1, 0, 0, 0, 0, time.UTC)
		case yearly:
			return time.Date(y+i, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		return day0.AddDate(0, 0, i)
	}
	last := period(0).AddDate(400*r.interval, 0, 0) // the Gregorian calendar repeats in 400 years
	for i := 0; !period(i).After(last) && period(i).Year() <= 9999; i += r.interval {
		for day, to := period(i), period(i+1); day.Before(to); day = day.Add(24 * time.Hour) {
			if t := day.Add(start.Sub(day0)); t.After(start) && r.matches(day, start) {
				end, until := t, r.spelling["UNTIL"] // UNTIL limits an instant if in UTC, else a wall clock
				if strings.HasSuffix(until, "Z") {
					end = wallToInstant(t, loc)
				}
				return t, t.Year() <= 9999 && (until == "" || !end.After(r.untilEnd))
			}
		}
	}
	return time.Time{}, false
}

// matches reports whether day, in a period of the series that starts at start, is one of its
// days: the BY parts limit or expand as RFC 5545 §3.3.10's table says, and a part left out takes
// start's month, day or weekday as the frequency needs.
func (r rrule) matches(day, start time.Time) bool {
	_, m, d := day.Date()
	days := time.Date(day.Year(), m+1, 0, 0, 0, 0, 0, time.UTC).Day() // day 0 is the month's last (BYMONTHDAY's -1)
	switch {
	case r.byMonth != nil && !slices.Contains(r.byMonth, int(m)):
		return false
	case r.byMonthDay == nil && r.byDay == nil: // start's weekday, day, or day and month
		return r.freq == daily || r.freq == weekly && day.Weekday() == start.Weekday() ||
			r.freq == monthly && d == start.Day() ||
			r.freq == yearly && d == start.Day() && (r.byMonth != nil || m == start.Month())
	case r.byMonthDay != nil && !slices.Contains(r.byMonthDay, d) && !slices.Contains(r.byMonthDay, d-days-1):
		return false
	case r.byDay == nil:
		return true
	case r.freq == yearly && r.byMonth == nil: // an ordinal counts the weekday in the year
		d, days = day.YearDay(), time.Date(day.Year(), 12, 31, 0, 0, 0, 0, time.UTC).YearDay()
	}
	return slices.ContainsFunc(r.byDay, func(b byDay) bool {
		return b.day == day.Weekday() && (b.n == 0 || b.n == (d-1)/7+1 || b.n == -(days-d)/7-1)
	})
}

// wallToInstant reads wall, a wall clock held as UTC, in loc, as RFC 5545 §3.3.5 says: a time
// that a clock change skips is read with the offset before the gap; one it repeats is the first.
func wallToInstant(wall time.Time, loc *time.Location) time.Time {
	_, before := wall.Add(-24 * time.Hour).In(loc).Zone()
	_, after := wall.Add(24 * time.Hour).In(loc).Zone()
	for _, offset := range []int{max(before, after), min(before, after)} { // the earlier first
		if t := wall.Add(-time.Duration(offset) * time.Second); instantToWall(t, loc).Equal(wall) {
			return t
		}
	}
	return wall.Add(-time.Duration(before) * time.Second) // in a gap
}

// instantToWall is t's wall clock in loc, held as UTC.
func instantToWall(t time.Time, loc *time.Location) time.Time {
	_, offset := t.In(loc).Zone()
	return t.Add(time.Duration(offset) * time.Second).UTC()
}

// nextDue is a recurring task's next due date when the one due is completed at now, its wall
// clock (held as UTC), and its rule from then on (COUNT one lower), or nil if none is left: an
// instant recurs on its zone's wall clock (UTC's without one) from due_wall where it reads the
// due date, a date or floating time on its own, and recur_from "completion" starts on now's day.
func nextDue(t Task, now time.Time) (*Due, time.Time, string) {
	r, err := parseRRule(*t.Recurrence) // stored in its one spelling
	loc, ok := time.UTC, true
	if t.Timezone != nil {
		loc, ok = loadZone(*t.Timezone)
	}
	if err != nil || !ok || r.count == 1 {
		return nil, time.Time{}, *t.Recurrence
	}
	at := time.UTC // the due date's zone: an instant's is loc; a date or floating time is held as UTC
	if t.DueDate.Kind == dueInstant {
		at = loc
	}
	start := instantToWall(t.DueDate.At, at) // or the series' own wall clock where a gap moved it
	if t.dueWall != nil && wallToInstant(*t.dueWall, at).Equal(t.DueDate.At) {
		start = *t.dueWall
	}
	if t.RecurFrom == "completion" { // at the due date's time of day
		start = instantToWall(now, loc).Truncate(24 * time.Hour).Add(start.Sub(start.Truncate(24 * time.Hour)))
	}
	wall, ok := r.next(start, loc)
	if !ok {
		return nil, time.Time{}, *t.Recurrence
	}
	if r.count > 0 {
		r.spelling["COUNT"] = strconv.Itoa(r.count - 1)
	}
	return &Due{wallToInstant(wall, at), t.DueDate.Kind}, wall, r.String()
}

// zones caches loadZone's time zones by name: time.LoadLocation reads and parses a zone's data each time.
var zones sync.Map

// zoneName is the shape of an IANA zone's name, Area/Location (Europe/Berlin, Etc/GMT+5) or UTC:
// not a path (./, //), none of what a host's zoneinfo holds beside the zones (localtime,
// posixrules, right/, posix/), which the binary's own copy (time/tzdata) lacks, and none of the
// names without an area (CET, EST5EDT), which PostgreSQL reads as fixed offsets first.
var zoneName = regexp.MustCompile(`^(UTC|[A-Z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)+)$`)

// loadZone is the IANA time zone name (Europe/Berlin), or false for none: "Local", "" and a name
// longer than maxTimezone (the column's limit) included.
func loadZone(name string) (*time.Location, bool) {
	if z, ok := zones.Load(name); ok {
		return z.(*time.Location), true
	}
	if !zoneName.MatchString(name) || len(name) > maxTimezone {
		return nil, false
	}
	loc, err := time.LoadLocation(name)
	if err == nil {
		zones.Store(name, loc)
	}
	return loc, err == nil
}
