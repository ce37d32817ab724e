// validate.go holds the contract's limits and turns request bodies and paths into checked values.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Limits of the contract, enforced here and again by the domains in schema.sql.
const (
	maxBodyBytes      = 64 << 10
	maxTitle          = 200
	maxDescription    = 1000
	maxTags           = 10
	maxTag            = 32
	maxLimit          = 1000
	maxQuery          = 1000
	maxIdempotencyKey = 255 // characters of an Idempotency-Key (the idempotency_keys.key CHECK)
	maxRecurrence     = 500 // characters of an RRULE
	maxTimezone       = 64  // bytes of a time zone's name
)

// priorities are a task's priorities, lowest first (the list sorts by this order).
var priorities = []string{"low", "medium", "high"}

// bodyFields are the fields a body may hold: those it sets, then those of a task a client read and sends back, ignored.
var bodyFields = []string{"title", "description", "completed", "priority", "due_date", "tags", "recurrence", "recur_from", "timezone", "reminders",
	"parent_id", "after", "id", "user_id", "created_at", "updated_at", "completed_at", "next_reminder_at", "position"}

// decodeTask reads a JSON task body into a change. For a create, title is
// required and completed is ignored (a new task starts open); for an update,
// absent fields stay as they are, null clears description and due_date, and
// parent_id is ignored (a move changes it) and after refused.
func decodeTask(w http.ResponseWriter, r *http.Request, create bool) (taskChange, error) {
	var c taskChange
	raw, err := readObject(w, r)
	if err != nil {
		return c, err
	}

	var errs validationError
	fail := func(msg, typ string, loc ...any) {
		errs = append(errs, fieldError{append([]any{"body"}, loc...), msg, typ})
	}
	names := make([]string, 0, len(raw))
	for name := range raw {
		names = append(names, name)
	}
	slices.Sort(names) // not slices.Sorted(maps.Keys(raw)), which allocates more per body
	for _, name := range names {
		if !slices.Contains(bodyFields, name) {
			fail("Extra inputs are not permitted", "extra_forbidden", name)
		}
	}
	// text decodes a string field; it reports and returns false when the value is not text.
	text := func(name string, v json.RawMessage) (string, bool) {
		var s string
		if json.Unmarshal(v, &s) != nil || string(v) == "null" {
			fail("Input should be a valid string", "string_type", name)
			return "", false
		}
		if loneSurrogate(v) {
			fail(msgLoneSurrogate, "string_invalid", name)
			return "", false
		}
		if msg := badText(s); msg != "" {
			fail(msg, "string_invalid", name)
			return "", false
		}
		return s, true
	}

	if v, ok := raw["title"]; ok {
		if s, ok := text("title", v); ok {
			if s = strings.TrimSpace(s); checkLength(s, 1, maxTitle, fail, "title") {
				c.Title = &s
			}
		}
	} else if create {
		fail("Field required", "missing", "title")
	}
	if v, ok := raw["description"]; ok {
		if string(v) == "null" {
			c.ClearDesc = true
		} else if s, ok := text("description", v); ok && checkLength(s, 0, maxDescription, fail, "description") {
			c.Description = &s
		}
	}
	if v, ok := raw["completed"]; ok && !create {
		var b bool
		if string(v) == "null" || json.Unmarshal(v, &b) != nil {
			fail("Input should be a valid boolean", "bool_type", "completed")
		} else {
			c.Completed = &b
		}
	}
	if v, ok := raw["priority"]; ok {
		if s, ok := text("priority", v); ok && slices.Contains(priorities, s) {
			c.Priority = &s
		} else if ok {
			fail("Input should be 'low', 'medium' or 'high'", "enum", "priority")
		}
	}
	if v, ok := raw["due_date"]; ok {
		s, isText := "", true
		if v[0] == '-' || v[0] >= '0' && v[0] <= '9' { // a JSON number: Unix time, as pydantic takes it
			s = string(v)
		} else if string(v) != "null" {
			s, isText = text("due_date", v)
		}
		switch d, ok := parseDue(s); {
		case string(v) == "null":
			c.ClearDue = true
		case ok:
			c.DueDate = &d
		case isText:
			fail("Input should be a date (2026-12-01), a date-time without an offset (2026-12-01T10:00) or with one (2026-12-01T10:00:00+01:00), or Unix time in seconds, years 1 to 9999", "datetime_parsing", "due_date")
		}
	}
	if v, ok := raw["recurrence"]; ok {
		if string(v) == "null" {
			c.ClearRecur = true
		} else if s, ok := text("recurrence", v); ok && checkLength(s, 1, maxRecurrence, fail, "recurrence") {
			if r, err := parseRRule(s); err != nil {
				fail(err.Error(), "value_error", "recurrence")
			} else if s = r.String(); create && c.DueDate == nil {
				fail("A recurring task needs a due date", "value_error", "recurrence")
			} else {
				c.Recurrence = &s
			}
		}
	}
	if v, ok := raw["recur_from"]; ok {
		if s, ok := text("recur_from", v); ok && slices.Contains(recurFroms, s) {
			c.RecurFrom = &s
		} else if ok {
			fail("Input should be 'due' or 'completion'", "enum", "recur_from")
		}
	}
	if v, ok := raw["timezone"]; ok {
		if string(v) == "null" {
			c.ClearZone = true
		} else if s, ok := text("timezone", v); ok {
			if _, known := loadZone(s); known {
				c.Timezone = &s
			} else {
				fail("Input should be an IANA time zone, such as Europe/Berlin", "value_error", "timezone")
			}
		}
	}
	if v, ok := raw["parent_id"]; ok && create {
		c.ParentID = taskRef("parent_id", v, fail)
	}
	if v, ok := raw["after"]; ok && create {
		c.After = taskRef("after", v, fail)
	} else if ok {
		fail("Extra inputs are not permitted: after places a new task, a move places one", "extra_forbidden", "after")
	}
	if v, ok := raw["reminders"]; ok { // schema.sql's CHECK refuses an offset without a due moment
		c.Reminders = parseReminders(v, fail)
	}
	if v, ok := raw["tags"]; ok {
		var tags []string
		if string(v) != "null" && json.Unmarshal(v, &tags) != nil {
			fail("Input should be a list of strings", "list_type", "tags")
		} else if loneSurrogate(v) {
			fail(msgLoneSurrogate, "string_invalid", "tags")
		} else {
			c.Tags = []string{}
			for i, tag := range tags {
				tag = strings.TrimSpace(tag)
				if msg := badTag(tag); msg != "" {
					fail(msg, "string_invalid", "tags", i)
				} else if !slices.Contains(c.Tags, tag) {
					c.Tags = append(c.Tags, tag)
				}
			}
			if len(c.Tags) > maxTags {
				fail("List should have at most "+strconv.Itoa(maxTags)+" different tags", "too_long", "tags")
			}
		}
	}
	if errs != nil {
		return c, errs
	}
	return c, nil
}

// readObject reads a request's body, JSON of one Content-Type in UTF-8 (415
// otherwise), up to maxBodyBytes (413), as an object's members by name (decodeObject).
func readObject(w http.ResponseWriter, r *http.Request) (map[string]json.RawMessage, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" || len(r.Header.Values("Content-Type")) > 1 {
		// One Content-Type, JSON, and UTF-8 as JSON is (RFC 8259 §8.1): a
		// charset that is not, or two headers, would be read two ways.
		mt, params, err := mime.ParseMediaType(ct)
		charset, hasCharset := params["charset"]
		if err != nil || mt != "application/json" && !strings.HasSuffix(mt, "+json") ||
			hasCharset && !strings.EqualFold(charset, "utf-8") && !strings.EqualFold(charset, "utf8") || len(r.Header.Values("Content-Type")) > 1 {
			return nil, &statusError{http.StatusUnsupportedMediaType, "Content-Type must be one application/json header, in UTF-8"}
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		if _, tooBig := errors.AsType[*http.MaxBytesError](err); tooBig {
			return nil, &statusError{http.StatusRequestEntityTooLarge, "Request body is larger than " + strconv.Itoa(maxBodyBytes>>10) + " KiB"}
		}
		return nil, &statusError{http.StatusBadRequest, "Could not read the request body"}
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil, validationError{{[]any{"body"}, "Field required", "missing"}}
	}
	if !utf8.Valid(body) {
		return nil, validationError{{[]any{"body"}, "JSON decode error: invalid UTF-8", "json_invalid"}}
	}
	return decodeObject(body)
}

// decodeObject reads a JSON body's members by name. It answers 422 for a body that is
// not JSON, or not an object, or that names a member twice: parsers disagree about which
// of two wins, so a proxy in front may have checked the other (RFC 8259 §4, RFC 7493 §2.3).
func decodeObject(body []byte) (map[string]json.RawMessage, error) {
	var whole json.RawMessage
	if err := json.Unmarshal(body, &whole); err != nil {
		return nil, validationError{{[]any{"body"}, "JSON decode error: " + strings.TrimPrefix(err.Error(), "json: "), "json_invalid"}}
	}
	if whole[0] != '{' { // Unmarshal trimmed the white space around it
		return nil, validationError{{[]any{"body"}, "Input should be a JSON object", "model_attributes_type"}}
	}
	raw := map[string]json.RawMessage{}
	dec := json.NewDecoder(bytes.NewReader(whole))
	dec.Token() // the {, and then members: each a name and a value (valid JSON, checked above)
	for dec.More() {
		t, _ := dec.Token()
		name, _ := t.(string)
		var v json.RawMessage
		dec.Decode(&v)
		if _, twice := raw[name]; twice {
			return nil, validationError{{[]any{"body", name}, "Duplicate key: each field may appear once", "json_invalid"}}
		}
		raw[name] = v
	}
	return raw, nil
}

// msgLoneSurrogate is the message for text holding half of a UTF-16 surrogate pair.
const msgLoneSurrogate = "Text must not contain a lone UTF-16 surrogate (\\ud800 to \\udfff)"

// loneSurrogate reports whether a valid JSON value escapes half of a UTF-16
// surrogate pair (\ud800 without a \udc00 after it, or the reverse), which is
// not a character: encoding/json would store U+FFFD in its place.
func loneSurrogate(v []byte) bool {
	hex4 := func(b []byte) rune { n, _ := strconv.ParseUint(string(b), 16, 32); return rune(n) }
	for i := 0; i < len(v); i++ {
		if v[i] != '\\' {
			continue
		}
		i++ // the escaped character
		if v[i] != 'u' {
			continue
		}
		r := hex4(v[i+1 : i+5])
		i += 4
		switch {
		case utf16.IsSurrogate(r) && r < 0xdc00: // high: a low one must follow
			if i+6 < len(v) && v[i+1] == '\\' && v[i+2] == 'u' {
				if low := hex4(v[i+3 : i+7]); low >= 0xdc00 && low <= 0xdfff {
					i += 6
					continue
				}
			}
			return true
		case utf16.IsSurrogate(r):
			return true
		}
	}
	return false
}

// badText says what is wrong with text PostgreSQL cannot store, or "" when nothing is.
func badText(s string) string {
	if !utf8.ValidString(s) {
		return "Text must be valid UTF-8"
	}
	if strings.IndexByte(s, 0) >= 0 {
		return "Text must not contain NUL characters"
	}
	return ""
}

// badTag says what is wrong with a trimmed tag, in a body or a list filter, or "" when nothing is.
func badTag(tag string) string {
	if msg := badText(tag); msg != "" {
		return msg
	}
	if strings.ContainsFunc(tag, unicode.IsControl) {
		return "Tags must not contain control characters"
	}
	if n := utf8.RuneCountInString(tag); n < 1 || n > maxTag {
		return "Each tag should have 1 to " + strconv.Itoa(maxTag) + " characters"
	}
	return ""
}

// checkLength reports when s has fewer than lo or more than hi characters (not bytes).
func checkLength(s string, lo, hi int, fail func(msg, typ string, loc ...any), loc ...any) bool {
	switch n := utf8.RuneCountInString(s); {
	case n < lo:
		fail("String should have at least "+strconv.Itoa(lo)+" character", "string_too_short", loc...)
	case n > hi:
		fail("String should have at most "+strconv.Itoa(hi)+" characters", "string_too_long", loc...)
	default:
		return true
	}
	return false
}

// taskID reads the {id} path value: a positive integer.
func taskID(r *http.Request) (int64, error) {
	s := r.PathValue("id")
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 1 || strconv.FormatInt(id, 10) != s { // one spelling per task: not +1, not 01
		return 0, validationError{{[]any{"path", "id"}, "Input should be a positive integer", "int_parsing"}}
	}
	return id, nil
}
