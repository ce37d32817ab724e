// due.go holds a task's due date in its three forms (a date, a floating time, an instant) and their spellings.
package main

import (
	"cmp"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// dueKind says what a due date means, as its client spelled it.
type dueKind uint8

const (
	dueInstant dueKind = iota // a date-time with an offset: a moment, returned in UTC (2026-12-01T09:00:00Z)
	dueDate                   // a date: all day, wherever the user is (2026-12-01)
	dueLocal                  // a date-time without an offset, as <input type="datetime-local"> sends: a wall-clock time in the user's own zone (2026-12-01T10:00:00)
)

// dueKinds are the kinds' names in the due_kind column.
var dueKinds = [...]string{dueInstant: "instant", dueDate: "date", dueLocal: "local"}

// Due is a task's due date. At is the instant; for a date, its midnight, and for a
// floating time, its wall clock, both read as UTC, so that all three sort together.
type Due struct {
	At   time.Time
	Kind dueKind
}

// MarshalJSON writes d as the API spells it (appendDue).
func (d Due) MarshalJSON() ([]byte, error) { return appendDue(nil, d), nil }

// dueKindOf reads the due_kind column, which a due date always has; anything else reads as an instant.
func dueKindOf(name string) dueKind {
	return dueKind(max(slices.Index(dueKinds[:], name), int(dueInstant)))
}

// dueColumns are a due date's due_date and due_kind, or NULLs.
func dueColumns(d *Due) (*time.Time, *string) {
	if d == nil {
		return nil, nil
	}
	return &d.At, &dueKinds[d.Kind]
}

// dueLayouts are the kinds' one spelling each; At is UTC (or read as UTC) in all three.
var dueLayouts = [...]string{dueInstant: time.RFC3339Nano, dueDate: time.DateOnly, dueLocal: "2006-01-02T15:04:05.999999999"}

// appendDue appends d as a JSON string in its kind's one spelling.
func appendDue(b []byte, d Due) []byte {
	return append(d.At.UTC().AppendFormat(append(b, '"'), dueLayouts[d.Kind]), '"')
}

// parseDue reads a due date in the spellings pydantic v2 accepts for a date or a
// date-time: 2026-12-01 (a date); 2026-12-01T10:00, with T, t or a space, seconds and
// up to six digits of fraction optional (a floating time); the same followed by Z, z,
// +01:00 or +0100 (an instant); Unix time (an instant). Years run from 1 to 9999.
func parseDue(s string) (Due, bool) {
	if unix.MatchString(s) {
		return parseUnix(s)
	}
	m := dueShape.FindStringSubmatch(s)
	if m == nil {
		return Due{}, false
	}
	kind, text, zone := dueDate, m[1], m[4] // an offset comes only after a clock
	if m[2] != "" {
		kind, text = dueLocal, m[1]+"T"+m[2]+cmp.Or(m[3], ":00")
	}
	switch {
	case zone == "":
		d, err := time.Parse(dueLayouts[kind], text)
		return Due{d, kind}, err == nil && d.Year() >= 1
	case zone == "Z" || zone == "z":
		zone = "Z"
	case zone[3] != ':':
		zone = zone[:3] + ":" + zone[3:]
	}
	if zone != "Z" && (zone[1:3] > "23" || zone[4:6] > "59") { // time.Parse does not check an offset's range
		return Due{}, false
	}
	d, err := time.Parse(time.RFC3339Nano, text+zone)
	d = d.UTC()
	return Due{d, dueInstant}, err == nil && d.Year() >= 1 && d.Year() <= 9999
}

// dueShape is a date, then optionally a clock (its seconds with a fraction to
// the microsecond, what PostgreSQL keeps, optional) and then an offset.
var dueShape = regexp.MustCompile(`^([0-9]{4}-[0-9]{2}-[0-9]{2})(?:[Tt ]([0-9]{2}:[0-9]{2})(:[0-9]{2}(?:\.[0-9]{1,6})?)?([Zz]|[+-][0-9]{2}:?[0-9]{2})?)?$`)

// unix is Unix time as pydantic v2 takes it for a date-time: seconds, or
// milliseconds beyond 2e10, with a fraction down to the microsecond.
var unix = regexp.MustCompile(`^-?[0-9]{1,15}(\.[0-9]{1,6})?$`)

// parseUnix reads a string unix matched as an instant.
func parseUnix(s string) (Due, bool) {
	whole, frac, _ := strings.Cut(s, ".")
	n, _ := strconv.ParseInt(whole, 10, 64) // at most 15 digits
	scale, digits := int64(1e6), 6          // seconds, to microseconds
	if n > 2e10 || n < -2e10 {
		scale, digits = 1e3, 3 // milliseconds
	}
	if len(frac) > digits {
		return Due{}, false
	}
	f, _ := strconv.ParseInt((frac + "000000")[:digits], 10, 64)
	if strings.HasPrefix(whole, "-") {
		f = -f
	}
	d := time.UnixMicro(n*scale + f).UTC()
	return Due{d, dueInstant}, d.Year() >= 1 && d.Year() <= 9999
}
