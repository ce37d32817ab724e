// taskjson.go writes tasks as JSON by hand, the bulk of what this service sends.
package main

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// appendTask appends t as a JSON object, as json.Marshal would write it (the same
// fields, order and RFC 3339 times; TestAppendTask and FuzzAppendTask hold it to
// that). By hand, because encoding/json's reflection, and its re-validation of each
// time.Time's MarshalJSON, are a large share of a list's CPU (BenchmarkFastPaths/json_page20).
func appendTask(b []byte, t *Task) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, t.ID, 10)
	b = append(b, `,"user_id":`...)
	b = appendString(b, t.UserID)
	b = append(b, `,"title":`...)
	b = appendString(b, t.Title)
	b = append(b, `,"description":`...)
	b = appendOrNull(b, t.Description, appendString)
	b = append(b, `,"completed":`...)
	b = strconv.AppendBool(b, t.Completed)
	b = append(b, `,"completed_at":`...)
	b = appendOrNull(b, t.CompletedAt, appendTime)
	b = append(b, `,"priority":`...)
	b = appendString(b, t.Priority)
	b = append(b, `,"due_date":`...)
	b = appendOrNull(b, t.DueDate, appendDue)
	b = append(b, `,"recurrence":`...)
	b = appendOrNull(b, t.Recurrence, appendString)
	b = append(b, `,"recur_from":`...)
	b = appendString(b, t.RecurFrom)
	b = append(b, `,"timezone":`...)
	b = appendOrNull(b, t.Timezone, appendString)
	if b = append(b, `,"reminders":`...); t.Reminders == nil { // as json.Marshal writes a nil RawMessage
		b = append(b, "null"...)
	}
	b = append(b, t.Reminders...)
	b = append(b, `,"next_reminder_at":`...)
	b = appendOrNull(b, t.NextReminder, appendTime)
	b = append(b, `,"tags":[`...)
	for i, tag := range t.Tags {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, tag)
	}
	b = append(b, `],"parent_id":`...)
	b = appendOrNull(b, t.ParentID, func(b []byte, id int64) []byte { return strconv.AppendInt(b, id, 10) })
	b = append(b, `,"position":`...)
	b = appendString(b, t.Position)
	b = append(b, `,"created_at":`...)
	b = appendTime(b, t.CreatedAt)
	b = append(b, `,"updated_at":`...)
	b = appendTime(b, t.UpdatedAt)
	return append(b, '}')
}

// appendOrNull appends *v with appendValue, or null for nil.
func appendOrNull[T any](b []byte, v *T, appendValue func([]byte, T) []byte) []byte {
	if v == nil {
		return append(b, "null"...)
	}
	return appendValue(b, *v)
}

// appendTime appends t as a JSON string in RFC 3339.
func appendTime(b []byte, t time.Time) []byte {
	return append(t.AppendFormat(append(b, '"'), time.RFC3339Nano), '"')
}

// appendString appends s as a JSON string as encoding/json does: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced, U+2028/U+2029 escaped for JavaScript.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		r, size := rune(c), 1
		if c >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(s[i:])
			invalid := r == utf8.RuneError && size == 1
			if !invalid && r != '\u2028' && r != '\u2029' {
				i += size
				continue
			}
		}
		b = append(b, s[start:i]...)
		switch j := strings.IndexByte("\"\\\n\r\t", c); {
		case j >= 0: // the short escapes
			b = append(b, '\\', `"\nrt`[j])
		case r == utf8.RuneError: // invalid UTF-8
			b = append(b, `\ufffd`...)
		default: // other control characters, U+2028, U+2029
			b = append(b, '\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
