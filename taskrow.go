// taskrow.go decodes task rows, straight from PostgreSQL's binary format where it can.
package main

import (
	"encoding/binary"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// scanTask reads one row of taskColumns: with taskFromBinary in PostgreSQL's binary
// format (what pgx asks for, except on the simple protocol), since pgx's Scan plans every
// column again for each statement and allocates for each value (BenchmarkFastPaths/row).
func scanTask(rows pgx.CollectableRow) (Task, error) {
	if t, ok := taskFromBinary(rows.FieldDescriptions(), rows.RawValues()); ok {
		return t, nil
	}
	var t Task
	err := scanTaskInto(rows, &t)
	return t, err
}

// scanTaskInto reads a row of taskColumns, then the extra columns into extra, with pgx's Scan.
func scanTaskInto(rows pgx.CollectableRow, t *Task, extra ...any) error {
	var due *time.Time
	var kind pgtype.Text // NULL without a due date
	err := rows.Scan(append([]any{&t.ID, &t.UserID, &t.Title, &t.Description, &t.Completed, &t.Priority,
		&due, &t.Tags, &t.CreatedAt, &t.UpdatedAt, &kind, &t.CompletedAt, &t.Version,
		&t.Recurrence, &t.RecurFrom, &t.Timezone, &t.Reminders, &t.NextReminder, &t.ParentID, &t.Position}, extra...)...)
	if err != nil {
		return err
	}
	t.CreatedAt, t.UpdatedAt = t.CreatedAt.UTC(), t.UpdatedAt.UTC()
	if t.CompletedAt != nil {
		*t.CompletedAt = t.CompletedAt.UTC()
	}
	if due != nil {
		t.DueDate = &Due{due.UTC(), dueKindOf(kind.String)}
	}
	if t.Tags == nil {
		t.Tags = []string{}
	}
	if t.NextReminder != nil {
		*t.NextReminder = t.NextReminder.UTC()
	}
	if t.Reminders == nil {
		t.Reminders = noReminders
	}
	return nil
}

// scanFeedEntry reads one row of the change feed: taskColumns, then deleted.
func scanFeedEntry(rows pgx.CollectableRow) (feedEntry, error) {
	fields, raw := rows.FieldDescriptions(), rows.RawValues()
	n := len(taskColumnTypes)
	if len(fields) == n+1 && fields[n].Format == pgx.BinaryFormatCode && len(raw[n]) == 1 {
		if t, ok := taskFromBinary(fields[:n], raw[:n]); ok {
			return feedEntry{t, raw[n][0]}, nil
		}
	}
	var e feedEntry
	err := scanTaskInto(rows, &e.Task, &e.Kind)
	return e, err
}

// taskColumnTypes are the type OIDs of taskColumns (domains are sent as their base types).
var taskColumnTypes = [...]uint32{pgtype.Int8OID, pgtype.TextOID, pgtype.TextOID, pgtype.TextOID,
	pgtype.BoolOID, pgtype.TextOID, pgtype.TimestamptzOID, pgtype.TextArrayOID, pgtype.TimestamptzOID, pgtype.TimestamptzOID, pgtype.TextOID, pgtype.TimestamptzOID,
	pgtype.Int8OID, pgtype.TextOID, pgtype.TextOID, pgtype.TextOID, pgtype.JSONOID, pgtype.TimestamptzOID, pgtype.Int8OID, pgtype.TextOID}

// taskFromBinary decodes a row of taskColumns in the binary format; ok is false for
// anything else (text format, other types, a value it does not expect), left to pgx.
func taskFromBinary(fields []pgconn.FieldDescription, raw [][]byte) (t Task, ok bool) {
	if len(fields) != len(taskColumnTypes) || len(raw) != len(fields) {
		return t, false
	}
	for i, f := range fields {
		binaryOrText := f.Format == pgx.BinaryFormatCode || f.DataTypeOID == pgtype.TextOID || f.DataTypeOID == pgtype.JSONOID // these read the same in both
		nullable := i == 3 || i == 6 || i == 10 || i == 11 || i == 13 || i >= 15 && i <= 18                                    // description, due_date, due_kind, completed_at, recurrence, timezone, reminders, next_reminder_at, parent_id
		if !binaryOrText || f.DataTypeOID != taskColumnTypes[i] || raw[i] == nil && !nullable {
			return t, false
		}
	}
	if len(raw[0]) != 8 || len(raw[4]) != 1 || len(raw[12]) != 8 || raw[18] != nil && len(raw[18]) != 8 {
		return t, false
	}
	if raw[18] != nil {
		parent := int64(binary.BigEndian.Uint64(raw[18]))
		t.ParentID = &parent
	}
	t.ID, t.Version = int64(binary.BigEndian.Uint64(raw[0])), int64(binary.BigEndian.Uint64(raw[12]))
	// user_id, title and position in one allocation, not three: a list decodes many rows.
	var b strings.Builder
	b.Grow(len(raw[1]) + len(raw[2]) + len(raw[19]))
	b.Write(raw[1])
	b.Write(raw[2])
	b.Write(raw[19])
	texts, user, title := b.String(), len(raw[1]), len(raw[1])+len(raw[2]) // where each ends
	t.UserID, t.Title, t.Position = texts[:user], texts[user:title], texts[title:]
	t.Description = textOrNil(raw[3])
	t.Completed = raw[4][0] == 1
	t.Recurrence, t.Timezone, t.Reminders = textOrNil(raw[13]), textOrNil(raw[15]), noReminders
	if raw[16] != nil {
		t.Reminders = json.RawMessage(string(raw[16])) // a copy: raw is pgx's buffer
	}
	if raw[17] != nil {
		d, ok := timeFromBinary(raw[17])
		if !ok {
			return t, false
		}
		t.NextReminder = &d
	}
	if t.RecurFrom = recurFroms[0]; string(raw[14]) != t.RecurFrom { // without an allocation for the default
		t.RecurFrom = string(raw[14])
	}
	if i := slices.Index(priorities, string(raw[5])); i >= 0 { // the three priorities without an allocation each
		t.Priority = priorities[i]
	} else {
		t.Priority = string(raw[5])
	}
	if raw[6] != nil {
		d, ok := timeFromBinary(raw[6])
		if !ok {
			return t, false
		}
		t.DueDate = &Due{d, dueKindOf(string(raw[10]))}
	}
	if raw[11] != nil {
		d, ok := timeFromBinary(raw[11])
		if !ok {
			return t, false
		}
		t.CompletedAt = &d
	}
	var created, updated bool
	t.Tags, ok = textArrayFromBinary(raw[7])
	t.CreatedAt, created = timeFromBinary(raw[8])
	t.UpdatedAt, updated = timeFromBinary(raw[9])
	return t, ok && created && updated
}

// timeFromBinary decodes a binary timestamptz: microseconds since 2000-01-01 UTC;
// ok is false outside PostgreSQL's range (4713 BC to 294276 AD), which leaves out infinity.
func timeFromBinary(b []byte) (time.Time, bool) {
	if len(b) != 8 {
		return time.Time{}, false
	}
	us := int64(binary.BigEndian.Uint64(b))
	if us < -211813488000000000 || us >= 9223371331200000000 {
		return time.Time{}, false
	}
	return time.Unix(946684800+us/1e6, us%1e6*1e3).UTC(), true
}

// textArrayFromBinary decodes a one-dimensional binary text[] without NULLs:
// dimensions, a has-NULL flag and the element type, then each dimension's
// length and lower bound, then each element as its length and bytes.
func textArrayFromBinary(b []byte) ([]string, bool) {
	if len(b) < 12 {
		return nil, false
	}
	ndim := binary.BigEndian.Uint32(b)
	if ndim == 0 {
		return []string{}, len(b) == 12
	}
	if ndim != 1 || len(b) < 20 {
		return nil, false
	}
	n := int(binary.BigEndian.Uint32(b[12:]))
	if b = b[20:]; n > len(b)/4 {
		return nil, false
	}
	tags := make([]string, 0, n)
	for range n {
		if len(b) < 4 {
			return nil, false
		}
		size := int(int32(binary.BigEndian.Uint32(b)))
		if size < 0 || len(b) < 4+size {
			return nil, false
		}
		tags = append(tags, string(b[4:4+size]))
		b = b[4+size:]
	}
	return tags, len(b) == 0
}

// textOrNil is a text column's value, or nil for NULL.
func textOrNil(b []byte) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}
