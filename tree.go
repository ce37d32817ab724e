// tree.go holds the move route, POST /api/{user_id}/tasks/{id}/move, and how a body names a task.
package main

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
)

// handleMoveTask serves POST /api/{user_id}/tasks/{id}/move with {"parent_id":
// null|ID, "after": null|ID} (absent: null): the task, with its subtasks, goes
// under parent_id (null: the top level), right after its child after (null:
// first). It answers the moved task; a tree it would break is a 422 (store.moveTask).
func handleMoveTask(db *store) userHandler {
	return handleWrite(db, moveBody, func(ctx context.Context, q querier, w writeRequest) (answer, error) {
		t, err := db.moveTask(ctx, q, w.userID, w.id, w.change, w.ifMatch)
		return taskAnswer(http.StatusOK, t), err
	})
}

// decodeMove reads a move's body: an object of parent_id and after, each optional.
func decodeMove(w http.ResponseWriter, r *http.Request) (taskChange, error) {
	var c taskChange
	raw, err := readObject(w, r)
	if err != nil {
		return c, err
	}
	var errs validationError
	fail := func(msg, typ string, loc ...any) {
		errs = append(errs, fieldError{append([]any{"body"}, loc...), msg, typ})
	}
	for _, name := range slices.Sorted(maps.Keys(raw)) {
		switch name {
		case "parent_id":
			c.ParentID = taskRef(name, raw[name], fail)
		case "after":
			c.After = taskRef(name, raw[name], fail)
		default:
			fail("Extra inputs are not permitted", "extra_forbidden", name)
		}
	}
	if errs != nil {
		return c, errs
	}
	return c, nil
}

// taskRef reads a body's field name that names a task: null (nil) or its id, a positive integer.
func taskRef(name string, v json.RawMessage, fail func(msg, typ string, loc ...any)) *int64 {
	var id int64
	if string(v) == "null" {
		return nil
	}
	if json.Unmarshal(v, &id) != nil || id < 1 {
		fail("Input should be the id of a task (a positive integer), or null", "int_type", name)
		return nil
	}
	return &id
}
