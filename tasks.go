// tasks.go holds the task handlers, their ETags and If-Match, and the Idempotency-Key of every write.
package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// handleListTasks serves GET /api/{user_id}/tasks: a page of tasks, with X-Total-Count
// when it is known or asked for (store.listTasks), and a Link to the next page if any.
func handleListTasks(db *store) userHandler {
	return func(w http.ResponseWriter, r *http.Request, userID string) {
		q, err := parseListQuery(r)
		if err != nil {
			writeError(w, r, err)
			return
		}
		tasks, total, more, err := db.listTasks(r.Context(), userID, q)
		if err != nil {
			writeError(w, r, err)
			return
		}
		if total >= 0 {
			w.Header().Set("X-Total-Count", strconv.Itoa(total))
		}
		if more {
			w.Header().Set("Link", nextLink("/api/"+url.PathEscape(userID)+"/tasks", r, listCursor(q.Sort, q.Desc, q.Zone, tasks[len(tasks)-1])))
		}
		b := append(make([]byte, 0, 64+400*len(tasks)), '[')
		for i := range tasks { // each followed by a comma, the last one trimmed, as the feed's lists are
			b = append(appendTask(b, &tasks[i]), ',')
		}
		writeBody(w, http.StatusOK, append(bytes.TrimSuffix(b, []byte{','}), ']', '\n'))
	}
}

// idempotencyKey reads a request's Idempotency-Key: "" for none, else one
// header of 1 to maxIdempotencyKey visible ASCII characters (a 422 otherwise).
func idempotencyKey(r *http.Request) (string, error) {
	key, n := r.Header.Get("Idempotency-Key"), len(r.Header.Values("Idempotency-Key"))
	if n > 1 || n == 1 && key == "" || len(key) > maxIdempotencyKey ||
		strings.ContainsFunc(key, func(c rune) bool { return c < '!' || c > '~' }) {
		return "", validationError{{[]any{"header", "Idempotency-Key"}, "Should be one header of 1 to " + strconv.Itoa(maxIdempotencyKey) + " visible ASCII characters", "string_invalid"}}
	}
	return key, nil
}

// writeHash is the SHA-256 of a write's route, task id (0 for a create) and change,
// stored with its Idempotency-Key: the same key with another of the three is another
// request. The change is taskChange's JSON, the same however the body was spelled and
// named by its tags, so that a key stored before a deploy still matches its retry
// (TestWriteHashGolden pins it).
func writeHash(route string, id int64, c taskChange) []byte {
	canonical, _ := json.Marshal(c) // cannot fail: strings, bools, pointers to them, and JSON
	sum := sha256.Sum256(append([]byte(route+"\n"+strconv.FormatInt(id, 10)+"\n"), canonical...))
	return sum[:]
}

// etag is the strong entity tag of a task, or of the whole change feed, at
// version: the user's write counter (store.go), which every write moves forward.
func etag(version int64) string {
	return `"` + strconv.FormatInt(version, 10) + `"`
}

// taskAnswer is the answer that sends one task with its ETag.
func taskAnswer(status int, t Task) answer {
	return answer{Status: status, ETag: etag(t.Version), Body: append(appendTask(make([]byte, 0, 512), &t), '\n')}
}

// writeAnswer sends a, saying whether it replays an earlier request's answer.
func writeAnswer(w http.ResponseWriter, a answer, replayed bool) {
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	if a.ETag != "" {
		w.Header().Set("ETag", a.ETag)
	}
	if a.Location != "" {
		w.Header().Set("Location", a.Location)
	}
	if a.Body == nil {
		w.WriteHeader(a.Status)
		return
	}
	writeBody(w, a.Status, a.Body)
}

// ifMatch reads the versions an If-Match header allows (RFC 9110 §13.1.1): nil
// when any will do (no header, or *); otherwise the strong ETags listed, none if none parse.
func ifMatch(r *http.Request) []int64 {
	h := strings.Join(r.Header.Values("If-Match"), ",") // several header lines are one list
	if h == "" {
		return nil
	}
	versions := []int64{}
	for tag := range strings.SplitSeq(h, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" {
			return nil
		}
		quoted := len(tag) > 2 && tag[0] == '"' && tag[len(tag)-1] == '"'
		if v, err := strconv.ParseInt(strings.Trim(tag, `"`), 10, 64); err == nil && quoted {
			versions = append(versions, v)
		}
	}
	return versions
}

// noneMatch reports whether an If-None-Match header names tag, the current version.
func noneMatch(r *http.Request, current string) bool {
	h := strings.Join(r.Header.Values("If-None-Match"), ",")
	for t := range strings.SplitSeq(h, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/") // If-None-Match compares weakly
		if t == "*" || t == current {
			return true
		}
	}
	return false
}

// handleGetTask serves GET /api/{user_id}/tasks/{id}; If-None-Match with the current ETag answers 304.
func handleGetTask(db *store) userHandler {
	return func(w http.ResponseWriter, r *http.Request, userID string) {
		id, err := taskID(r)
		if err != nil {
			writeError(w, r, err)
			return
		}
		task, err := db.getTask(r.Context(), userID, id)
		if err != nil {
			writeError(w, r, err)
			return
		}
		if tag := etag(task.Version); noneMatch(r, tag) {
			writeAnswer(w, answer{Status: http.StatusNotModified, ETag: tag}, false)
			return
		}
		writeAnswer(w, taskAnswer(http.StatusOK, task), false)
	}
}

// writeRequest is a write's request, checked: the user, the path's task id (0
// for a create), the body's change (none for a toggle or a delete) and If-Match.
type writeRequest struct {
	userID  string
	id      int64
	change  taskChange
	ifMatch []int64
}

// Bodies a write reads: none, a create's or an update's (decodeTask), a move's (decodeMove).
const noBody, createBody, updateBody, moveBody = 0, 1, 2, 3

// handleWrite serves a write on a task: it checks the path's task id, the body
// (noBody, createBody or updateBody) and the Idempotency-Key, answering the first
// that is wrong, then runs write at most once per key (keyedWrite).
func handleWrite(db *store, body int, write func(context.Context, querier, writeRequest) (answer, error)) userHandler {
	return func(w http.ResponseWriter, r *http.Request, userID string) {
		req := writeRequest{userID: userID, ifMatch: ifMatch(r)}
		var err error
		if r.PathValue("id") != "" {
			req.id, err = taskID(r)
		}
		switch {
		case err == nil && body == moveBody:
			req.change, err = decodeMove(w, r)
		case err == nil && body != noBody:
			req.change, err = decodeTask(w, r, body == createBody)
		}
		keyedWrite(w, r, db, userID, err, func() []byte { return writeHash(r.Pattern, req.id, req.change) },
			func(ctx context.Context, q querier) (answer, error) { return write(ctx, q, req) })
	}
}

// keyedWrite answers a write whose request checked with err: the first of err and the
// Idempotency-Key's that is wrong, or else write's answer, run at most once per key
// (store.writeOnce) and kept with hash, the request's; a retry of the same request gets
// it again, with Idempotent-Replayed: true.
func keyedWrite(w http.ResponseWriter, r *http.Request, db *store, userID string, err error,
	hash func() []byte, write func(context.Context, querier) (answer, error)) {
	key, keyErr := idempotencyKey(r)
	if err = cmp.Or(err, keyErr); err != nil {
		writeError(w, r, err)
		return
	}
	var sum []byte
	if key != "" {
		sum = hash()
	}
	a, replayed, err := db.writeOnce(r.Context(), userID, key, sum, write)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeAnswer(w, a, replayed)
}

// handleCreateTask serves POST /api/{user_id}/tasks; a user may hold at most maxTasks.
func handleCreateTask(db *store, maxTasks int) userHandler {
	return handleWrite(db, createBody, func(ctx context.Context, q querier, w writeRequest) (answer, error) {
		t, err := db.createTask(ctx, q, w.userID, w.change, maxTasks)
		a := taskAnswer(http.StatusCreated, t)
		a.Location = "/api/" + url.PathEscape(w.userID) + "/tasks/" + strconv.FormatInt(t.ID, 10)
		return a, err
	})
}

// handleUpdateTask serves PUT and PATCH /api/{user_id}/tasks/{id}: a partial update;
// completing a recurring task moves it (completeSeries), making a copy, so maxTasks holds.
func handleUpdateTask(db *store, maxTasks int) userHandler {
	return handleWrite(db, updateBody, func(ctx context.Context, q querier, w writeRequest) (answer, error) {
		t, err := db.updateTask(ctx, q, w.userID, w.id, w.change, w.ifMatch)
		if errors.Is(err, errSeries) {
			t, err = completeSeries(ctx, db, q, w, false, maxTasks)
		}
		return taskAnswer(http.StatusOK, t), err
	})
}

// handleToggleTask serves PATCH /api/{user_id}/tasks/{id}/complete; a body is ignored.
func handleToggleTask(db *store, maxTasks int) userHandler {
	return handleWrite(db, noBody, func(ctx context.Context, q querier, w writeRequest) (answer, error) {
		t, err := db.toggleTask(ctx, q, w.userID, w.id, w.ifMatch)
		if errors.Is(err, errSeries) {
			t, err = completeSeries(ctx, db, q, w, true, maxTasks)
		}
		return taskAnswer(http.StatusOK, t), err
	})
}

// completeSeries runs, under the user's row lock, an update or a toggle that store
// left to it (errSeries): If-Match checked on the task as it is, an update's other
// fields written first (errRecurringParent if they give recurrence to a task with
// subtasks), then the move to the next occurrence (store.moveSeries) if the write
// completes an open recurring task, or else the write as it was asked.
func completeSeries(ctx context.Context, db *store, q querier, w writeRequest, toggle bool, maxTasks int) (t Task, err error) {
	err = db.locked(ctx, q, w.userID, w.id, func(tx querier, current Task) error {
		if t = current; w.ifMatch != nil && !slices.Contains(w.ifMatch, t.Version) {
			return &staleError{Current: t}
		}
		rest := w.change
		rest.Completed = nil
		if !toggle && !reflect.ValueOf(rest).IsZero() {
			if t, err = db.updateTask(ctx, tx, w.userID, w.id, rest, nil); errors.Is(err, errSeries) { // under the lock: subtasks
				return errRecurringParent
			} else if err != nil {
				return err
			}
			t.dueWall = current.dueWall // nextDue takes it only where it still reads the due date
		}
		completes := toggle && !t.Completed || !toggle && w.change.Completed != nil && *w.change.Completed && !t.Completed
		switch {
		case completes && t.Recurrence != nil:
			next, wall, recurrence := nextDue(t, time.Now())
			t, err = db.moveSeries(ctx, tx, w.userID, w.id, next, wall, recurrence, maxTasks)
		case toggle:
			t, err = db.setCompleted(ctx, tx, w.userID, w.id, !t.Completed)
		case w.change.Completed != nil:
			t, err = db.setCompleted(ctx, tx, w.userID, w.id, *w.change.Completed)
		}
		return err
	})
	return t, err
}

// handleDeleteTask serves DELETE /api/{user_id}/tasks/{id}.
func handleDeleteTask(db *store) userHandler {
	return handleWrite(db, noBody, func(ctx context.Context, q querier, w writeRequest) (answer, error) {
		return answer{Status: http.StatusNoContent}, db.deleteTask(ctx, q, w.userID, w.id, w.ifMatch)
	})
}
