// tasks.go holds the task handlers, body and query validation, and the one error→status switch.
package main

import (
	"crypto/sha256"
	_ "embed"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits of the contract, enforced here and again by the domains in schema.sql.
const (
	maxBodyBytes   = 64 << 10
	maxTitle       = 200
	maxDescription = 1000
	maxTags        = 10
	maxTag         = 32
	maxLimit       = 1000
	maxQuery       = 1000
)

// fieldError is one entry of a 422 body, in the shape FastAPI frontends read.
type fieldError struct {
	Loc  []any  `json:"loc"`
	Msg  string `json:"msg"`
	Type string `json:"type"`
}

// validationError is a 422 listing every problem found.
type validationError []fieldError

func (e validationError) Error() string { return "validation failed: " + e[0].Msg }

// statusError is a client error that is not about one field (401, 403, 413, 415, 429).
type statusError struct {
	status int
	detail string
}

func (e *statusError) Error() string { return e.detail }

// writeError is the one place an error becomes a status and a JSON body.
// Internals never reach the client: a 5xx answers a generic message and the
// error goes to the request's log line instead.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var (
		status      = http.StatusInternalServerError
		detail  any = "Internal Server Error"
		invalid validationError
		client  *statusError
		stale   *staleError
	)
	switch {
	case errors.As(err, &invalid):
		status, detail = http.StatusUnprocessableEntity, invalid
	case errors.As(err, &client):
		status, detail = client.status, client.detail
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		}
	case errors.Is(err, errNotFound):
		status, detail = http.StatusNotFound, "Task not found"
	case errors.As(err, &stale):
		tag := etag(stale.Current)
		w.Header().Set("ETag", tag)
		status, detail = http.StatusPreconditionFailed, "The task has changed since the version in If-Match; its current ETag is "+tag+". Reload it and apply your change again"
	case errors.Is(err, errKeyReused):
		status, detail = http.StatusUnprocessableEntity, validationError{{[]any{"header", "Idempotency-Key"}, "This Idempotency-Key was used with a different request body", "idempotency_key_reused"}}
	case errors.Is(err, errTaskLimit):
		status, detail = http.StatusConflict, "Task limit reached: delete some tasks before adding more"
	case errors.Is(err, errRejected):
		status, detail = http.StatusUnprocessableEntity, validationError{{[]any{"body"}, "Value rejected by a constraint", "value_error"}}
	case errors.Is(err, errUnavailable):
		w.Header().Set("Retry-After", "1")
		status, detail = http.StatusServiceUnavailable, "Service temporarily unavailable, try again shortly"
	}
	if status >= 500 {
		noteError(w, err)
	}
	writeJSON(w, status, map[string]any{"detail": detail})
}

// writeJSON sends v as the JSON body of a response with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		noteError(w, err)
		status, body = http.StatusInternalServerError, []byte(`{"detail":"Internal Server Error"}`)
	}
	writeBody(w, status, append(body, '\n'))
}

// writeBody sends a JSON body; its length is set, so it goes out in one piece, not chunked.
func writeBody(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// Tasks are the bulk of what this service sends, so they are written by hand:
// encoding/json's reflection and its re-validation of each time.Time's
// MarshalJSON were a quarter of a list's CPU. appendTask writes what
// json.Marshal would (the same fields, order and RFC 3339 times), which
// TestAppendTask and FuzzAppendTask hold it to.

// appendTask appends t as a JSON object.
func appendTask(b []byte, t *Task) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, t.ID, 10)
	b = append(b, `,"user_id":`...)
	b = appendString(b, t.UserID)
	b = append(b, `,"title":`...)
	b = appendString(b, t.Title)
	b = append(b, `,"description":`...)
	if t.Description == nil {
		b = append(b, "null"...)
	} else {
		b = appendString(b, *t.Description)
	}
	b = append(b, `,"completed":`...)
	b = strconv.AppendBool(b, t.Completed)
	b = append(b, `,"priority":`...)
	b = appendString(b, t.Priority)
	b = append(b, `,"due_date":`...)
	if t.DueDate == nil {
		b = append(b, "null"...)
	} else {
		b = appendTime(b, *t.DueDate)
	}
	b = append(b, `,"tags":[`...)
	for i, tag := range t.Tags {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, tag)
	}
	b = append(b, `],"created_at":`...)
	b = appendTime(b, t.CreatedAt)
	b = append(b, `,"updated_at":`...)
	b = appendTime(b, t.UpdatedAt)
	return append(b, '}')
}

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendString appends s as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced, and U+2028/U+2029 escaped for
// JavaScript, as encoding/json does.
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
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
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

// handleListTasks serves GET /api/{user_id}/tasks.
func handleListTasks(db *store) userHandler {
	return func(w http.ResponseWriter, r *http.Request, userID string) {
		q, err := parseListQuery(r.URL.Query())
		if err != nil {
			writeError(w, r, err)
			return
		}
		tasks, total, err := db.listTasks(r.Context(), userID, q)
		if err != nil {
			writeError(w, r, err)
			return
		}
		w.Header().Set("X-Total-Count", strconv.Itoa(total))
		b := make([]byte, 0, 64+400*len(tasks))
		b = append(b, '[')
		for i := range tasks {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendTask(b, &tasks[i])
		}
		writeBody(w, http.StatusOK, append(b, ']', '\n'))
	}
}

// handleCreateTask serves POST /api/{user_id}/tasks; a user may hold at most
// maxTasks. A retry with the same Idempotency-Key answers the same task, 201
// again, with Idempotent-Replayed: true, and creates nothing.
func handleCreateTask(db *store, maxTasks int) userHandler {
	return func(w http.ResponseWriter, r *http.Request, userID string) {
		n := newTask{MaxTasks: maxTasks, Key: r.Header.Get("Idempotency-Key")}
		var err error
		if n.Key != "" && !validKey(n.Key) {
			err = validationError{{[]any{"header", "Idempotency-Key"}, "Should be 1 to 255 visible ASCII characters", "string_invalid"}}
		}
		if err == nil {
			n.taskChange, err = decodeTask(w, r, true)
		}
		var task Task
		var replayed bool
		if err == nil {
			if n.Key != "" {
				canonical, _ := json.Marshal(n.taskChange) // the same change hashes the same, however it was spelled
				sum := sha256.Sum256(canonical)
				n.RequestHash = sum[:]
			}
			task, replayed, err = db.createTask(r.Context(), userID, n)
		}
		if err != nil {
			writeError(w, r, err)
			return
		}
		if replayed {
			w.Header().Set("Idempotent-Replayed", "true")
		}
		w.Header().Set("Location", "/api/"+url.PathEscape(userID)+"/tasks/"+strconv.FormatInt(task.ID, 10))
		writeTask(w, http.StatusCreated, task)
	}
}

// validKey accepts an Idempotency-Key of 1 to 255 visible ASCII characters.
func validKey(key string) bool {
	return len(key) <= 255 && !strings.ContainsFunc(key, func(c rune) bool { return c < '!' || c > '~' })
}

// etag is a task's strong entity tag: its version, which every write moves forward.
func etag(t Task) string {
	return `"` + strconv.FormatInt(t.UpdatedAt.UnixMicro(), 10) + `"`
}

// writeTask sends one task with its ETag.
func writeTask(w http.ResponseWriter, status int, t Task) {
	w.Header().Set("ETag", etag(t))
	writeBody(w, status, append(appendTask(make([]byte, 0, 512), &t), '\n'))
}

// ifMatch reads the versions an If-Match header allows: nil when any will do
// (no header, or *); otherwise the strong ETags listed, none if none parse.
func ifMatch(r *http.Request) []time.Time {
	h := r.Header.Get("If-Match")
	if h == "" {
		return nil
	}
	versions := []time.Time{}
	for tag := range strings.SplitSeq(h, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" {
			return nil
		}
		quoted := len(tag) > 2 && tag[0] == '"' && tag[len(tag)-1] == '"'
		if v, err := strconv.ParseInt(strings.Trim(tag, `"`), 10, 64); err == nil && quoted {
			versions = append(versions, time.UnixMicro(v))
		}
	}
	return versions
}

// noneMatch reports whether an If-None-Match header names the task's current version.
func noneMatch(r *http.Request, t Task) bool {
	h := r.Header.Get("If-None-Match")
	for tag := range strings.SplitSeq(h, ",") {
		tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/") // If-None-Match compares weakly
		if tag == "*" || tag == etag(t) {
			return true
		}
	}
	return false
}

// handleGetTask serves GET /api/{user_id}/tasks/{id}; If-None-Match with the current ETag answers 304.
func handleGetTask(db *store) userHandler {
	return func(w http.ResponseWriter, r *http.Request, userID string) {
		id, err := taskID(r)
		var task Task
		if err == nil {
			task, err = db.getTask(r.Context(), userID, id)
		}
		switch {
		case err != nil:
			writeError(w, r, err)
		case noneMatch(r, task):
			w.Header().Set("ETag", etag(task))
			w.WriteHeader(http.StatusNotModified)
		default:
			writeTask(w, http.StatusOK, task)
		}
	}
}

// handleUpdateTask serves PUT and PATCH /api/{user_id}/tasks/{id}: a partial update.
func handleUpdateTask(db *store) userHandler {
	return withTaskID(func(w http.ResponseWriter, r *http.Request, userID string, id int64) (Task, error) {
		change, err := decodeTask(w, r, false)
		if err != nil {
			return Task{}, err
		}
		return db.updateTask(r.Context(), userID, id, change, ifMatch(r))
	})
}

// handleToggleTask serves PATCH /api/{user_id}/tasks/{id}/complete; a body is ignored.
func handleToggleTask(db *store) userHandler {
	return withTaskID(func(w http.ResponseWriter, r *http.Request, userID string, id int64) (Task, error) {
		return db.toggleTask(r.Context(), userID, id, ifMatch(r))
	})
}

// handleDeleteTask serves DELETE /api/{user_id}/tasks/{id}.
func handleDeleteTask(db *store) userHandler {
	return func(w http.ResponseWriter, r *http.Request, userID string) {
		id, err := taskID(r)
		if err == nil {
			err = db.deleteTask(r.Context(), userID, id, ifMatch(r))
		}
		if err != nil {
			writeError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// withTaskID serves a write on one task: it parses {id}, runs fn and answers the task it returns.
func withTaskID(fn func(w http.ResponseWriter, r *http.Request, userID string, id int64) (Task, error)) userHandler {
	return func(w http.ResponseWriter, r *http.Request, userID string) {
		id, err := taskID(r)
		var task Task
		if err == nil {
			task, err = fn(w, r, userID, id)
		}
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeTask(w, http.StatusOK, task)
	}
}

// taskID reads the {id} path value: a positive integer.
func taskID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return 0, validationError{{[]any{"path", "id"}, "Input should be a positive integer", "int_parsing"}}
	}
	return id, nil
}

// handleHealth serves GET /healthz: the process is alive; no database call.
func handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReady serves GET /readyz: 200 when the database answers, else 503.
func handleReady(db *store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := db.ping(r.Context()); err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}
}

// openAPI is the API's OpenAPI 3.1 document; main_test.go holds it to the route table.
//
//go:embed openapi.json
var openAPI []byte

// handleOpenAPI serves GET /openapi.json.
func handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPI)
}

// docsPage renders /openapi.json with Swagger UI from a CDN, as FastAPI's /docs does.
const docsPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>Tasks API</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"})</script>
</body></html>
`

// handleDocs serves GET /docs.
func handleDocs(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	io.WriteString(w, docsPage)
}

// readOnlyFields may come back in a body when a client sends a task it read; they are ignored.
var readOnlyFields = []string{"id", "user_id", "created_at", "updated_at"}

// taskFields are the fields a body may set.
var taskFields = []string{"title", "description", "completed", "priority", "due_date", "tags"}

// decodeTask reads a JSON task body into a change. For a create, title is
// required and completed is ignored (a new task starts open); for an update,
// absent fields stay as they are and null clears description and due_date.
func decodeTask(w http.ResponseWriter, r *http.Request, create bool) (taskChange, error) {
	var c taskChange
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" && !strings.HasSuffix(mt, "+json") {
			return c, &statusError{http.StatusUnsupportedMediaType, "Content-Type must be application/json"}
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		if _, tooBig := errors.AsType[*http.MaxBytesError](err); tooBig {
			return c, &statusError{http.StatusRequestEntityTooLarge, "Request body is larger than 64 KiB"}
		}
		return c, &statusError{http.StatusBadRequest, "Could not read the request body"}
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return c, validationError{{[]any{"body"}, "Field required", "missing"}}
	}
	if !utf8.Valid(body) {
		return c, validationError{{[]any{"body"}, "JSON decode error: invalid UTF-8", "json_invalid"}}
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		if _, notObject := errors.AsType[*json.UnmarshalTypeError](err); notObject {
			return c, validationError{{[]any{"body"}, "Input should be a JSON object", "model_attributes_type"}}
		}
		return c, validationError{{[]any{"body"}, "JSON decode error: " + strings.TrimPrefix(err.Error(), "json: "), "json_invalid"}}
	}

	var errs validationError
	fail := func(msg, typ string, loc ...any) {
		errs = append(errs, fieldError{append([]any{"body"}, loc...), msg, typ})
	}
	names := make([]string, 0, len(raw))
	for name := range raw {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !slices.Contains(taskFields, name) && !slices.Contains(readOnlyFields, name) {
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
		if msg := badText(s); msg != "" {
			fail(msg, "string_invalid", name)
			return "", false
		}
		return s, true
	}

	if v, ok := raw["title"]; ok {
		if s, ok := text("title", v); ok {
			s = strings.TrimSpace(s)
			if checkLength(s, 1, maxTitle, fail, "title") {
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
		if s, ok := text("priority", v); ok {
			if s != "low" && s != "medium" && s != "high" {
				fail("Input should be 'low', 'medium' or 'high'", "enum", "priority")
			} else {
				c.Priority = &s
			}
		}
	}
	if v, ok := raw["due_date"]; ok {
		if string(v) == "null" {
			c.ClearDue = true
		} else if s, ok := text("due_date", v); ok {
			if d, ok := parseDate(s); ok {
				c.DueDate = &d
			} else {
				fail("Input should be a valid datetime (RFC 3339, e.g. 2026-12-01T17:00:00Z, or a date 2026-12-01)", "datetime_parsing", "due_date")
			}
		}
	}
	if v, ok := raw["tags"]; ok {
		var tags []string
		if string(v) != "null" && json.Unmarshal(v, &tags) != nil {
			fail("Input should be a list of strings", "list_type", "tags")
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
				fail("List should have at most 10 different tags", "too_long", "tags")
			}
		}
	}
	if errs != nil {
		return c, errs
	}
	return c, nil
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
		return "Each tag should have 1 to 32 characters"
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

// parseDate reads an RFC 3339 date-time, one without an offset (taken as UTC),
// or a bare date (midnight UTC), within years 1 to 9999.
func parseDate(s string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02"} {
		if d, err := time.Parse(layout, s); err == nil {
			d = d.UTC()
			return d, d.Year() >= 1 && d.Year() <= 9999
		}
	}
	return time.Time{}, false
}

// listDefaults gives each sort key its natural direction: newest, soonest, high first; titles A to Z.
var listDefaults = map[string]bool{"created": true, "updated": true, "title": false, "due_date": false, "priority": true}

// parseListQuery validates the list parameters; unknown parameters are ignored.
func parseListQuery(v url.Values) (listQuery, error) {
	q := listQuery{Sort: "created", Desc: true, Limit: maxLimit}
	var errs validationError
	fail := func(name, msg, typ string) {
		errs = append(errs, fieldError{[]any{"query", name}, msg, typ})
	}
	switch v.Get("status") {
	case "", "all":
	case "pending":
		q.Completed = new(false)
	case "completed":
		q.Completed = new(true)
	default:
		fail("status", "Input should be 'all', 'pending' or 'completed'", "enum")
	}
	if s := v.Get("sort"); s != "" {
		if _, ok := listDefaults[s]; ok {
			q.Sort, q.Desc = s, listDefaults[s]
		} else {
			fail("sort", "Input should be 'created', 'updated', 'title', 'due_date' or 'priority'", "enum")
		}
	}
	switch v.Get("order") {
	case "":
	case "asc":
		q.Desc = false
	case "desc":
		q.Desc = true
	default:
		fail("order", "Input should be 'asc' or 'desc'", "enum")
	}
	q.Q = v.Get("q")
	if msg := badText(q.Q); msg != "" {
		fail("q", msg, "string_invalid")
	} else if utf8.RuneCountInString(q.Q) > maxQuery {
		fail("q", "String should have at most 1000 characters", "string_too_long")
	}
	for _, tag := range v["tag"] {
		tag = strings.TrimSpace(tag)
		if msg := badTag(tag); msg != "" {
			fail("tag", msg, "string_invalid")
		} else {
			q.Tags = append(q.Tags, tag)
		}
	}
	if len(q.Tags) > maxTags {
		fail("tag", "At most 10 tags", "too_long")
	}
	integer := func(name string, lo, hi int, dst *int) {
		s := v.Get(name)
		if s == "" {
			return
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < lo || n > hi {
			fail(name, "Input should be an integer from "+strconv.Itoa(lo)+" to "+strconv.Itoa(hi), "int_parsing")
			return
		}
		*dst = n
	}
	integer("limit", 1, maxLimit, &q.Limit)
	integer("offset", 0, 1<<31-1, &q.Offset)
	if errs != nil {
		return q, errs
	}
	return q, nil
}
