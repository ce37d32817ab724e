// store.go holds one method per SQL statement, and the store errors handlers map to statuses.
package main

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Store errors; handlers map them to statuses in writeError.
var (
	errNotFound    = errors.New("task not found")
	errUnavailable = errors.New("database unavailable")
	errRejected    = errors.New("rejected by a database constraint")
	errTaskLimit   = errors.New("task limit reached")
	errKeyReused   = errors.New("idempotency key reused with a different request")
	errKeyUnknown  = errors.New("idempotency key not stored") // replay's, mapped by createTask
)

// staleError says a precondition (If-Match) failed: the task has changed since.
type staleError struct{ Current Task }

func (e *staleError) Error() string { return "task changed since the version given" }

// idempotencyTTL is how long an Idempotency-Key is kept at least.
const idempotencyTTL = 24 * time.Hour

// taskColumns are a task's columns, in the order taskFromBinary reads them. A
// due_kind counts only for the due_date it was written with: a release before
// due_kind that changes due_date (in a rolling deploy, or after a rollback)
// leaves an instant, as it meant, not a stale kind.
const taskColumns = `id, user_id, title, description, completed, priority, due_date, tags, created_at, updated_at,
	CASE WHEN due_kind_at = due_date THEN due_kind END AS due_kind, CASE WHEN completed THEN completed_at END AS completed_at`

// one runs a statement that returns at most one task.
func (s *store) one(ctx context.Context, sql string, args ...any) (Task, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	rows, _ := s.pool.Query(ctx, sql, args...) // a failed query's error comes back from CollectOneRow
	t, err := pgx.CollectOneRow(rows, scanTask)
	return t, storeError(err)
}

// getTask returns the user's task id.
func (s *store) getTask(ctx context.Context, userID string, id int64) (Task, error) {
	return s.one(ctx, `SELECT `+taskColumns+` FROM tasks WHERE id = $1 AND user_id = $2`, id, userID)
}

// createTask inserts a task for the user unless they hold MaxTasks already, in
// one statement with the user's task count. With a key, the key is stored in the same
// statement; a retry with the key returns the task the first request created
// (replayed = true) instead of creating another.
func (s *store) createTask(ctx context.Context, userID string, n newTask) (task Task, replayed bool, err error) {
	priority := "medium"
	if n.Priority != nil {
		priority = *n.Priority
	}
	tags := n.Tags
	if tags == nil {
		tags = []string{}
	}
	// The user's count goes up only while below the limit, and its row lock makes
	// concurrent creates by one user take turns: the limit holds exactly, and
	// costs one row, not a count of the user's tasks.
	const slotAndTask = `slot AS (INSERT INTO task_counts (user_id, n) VALUES ($1, 1)
		ON CONFLICT (user_id) DO UPDATE SET n = task_counts.n + 1 WHERE task_counts.n < $7 RETURNING 1),
		task AS (INSERT INTO tasks (user_id, title, description, priority, due_date, tags, due_kind, due_kind_at)
		SELECT $1::text, $2::text, $3::text, $4::text, $5::timestamptz, $6::text[], $8::text, $5::timestamptz FROM slot
		RETURNING ` + taskColumns + `)`
	insert := `WITH ` + slotAndTask + ` SELECT * FROM task`
	dueAt, dueKind := dueColumns(n.DueDate)
	args := []any{userID, *n.Title, n.Description, priority, dueAt, tags, n.MaxTasks, dueKind}
	if n.Key != "" {
		// A concurrent request with the same key waits on the key's unique index,
		// then fails with 23505, and its task insert is undone with it.
		insert = `WITH ` + slotAndTask + `, key AS (
			INSERT INTO idempotency_keys (user_id, key, request_hash, task_id, hashed_due_forms)
			SELECT $1, $9, $10, id, true FROM task)
			SELECT * FROM task`
		args = append(args, n.Key, n.RequestHash)
	}
	task, err = s.one(ctx, insert, args...)
	atLimit := errors.Is(err, errNotFound) // no slot, so no task
	pgErr, ok := errors.AsType[*pgconn.PgError](err)
	if n.Key == "" || !atLimit && !(ok && pgErr.Code == sqlstateUniqueViolation) {
		if atLimit {
			err = errTaskLimit
		}
		return task, false, err
	}
	// The key was used before (23505), or, at the limit, may have been: a retry
	// of the create that took the user's last slot must replay, not answer 409.
	task, err = s.replay(ctx, userID, n.Key, n.RequestHash, n.LegacyHash)
	if errors.Is(err, errKeyUnknown) {
		if err = errNotFound; atLimit {
			err = errTaskLimit
		}
	}
	return task, err == nil, err
}

// replay returns the task an earlier create with the user's key made, if the
// request was the same; a task deleted since is not found.
func (s *store) replay(ctx context.Context, userID, key string, requestHash, legacyHash []byte) (Task, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var hash []byte
	var taskID int64
	var legacy bool // stored by a release that hashed every due date as an instant
	err := s.pool.QueryRow(ctx, `SELECT request_hash, task_id, hashed_due_forms IS NULL FROM idempotency_keys
		WHERE user_id = $1 AND key = $2`, userID, key).Scan(&hash, &taskID, &legacy)
	if errors.Is(err, pgx.ErrNoRows) {
		return Task{}, errKeyUnknown
	}
	if err != nil {
		return Task{}, storeError(err)
	}
	if !bytes.Equal(hash, requestHash) && !(legacy && bytes.Equal(hash, legacyHash)) {
		return Task{}, errKeyReused
	}
	return s.getTask(ctx, userID, taskID)
}

// deleteOldKeys forgets Idempotency-Keys older than idempotencyTTL.
func (s *store) deleteOldKeys(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	tag, err := s.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)`,
		idempotencyTTL.Seconds())
	return tag.RowsAffected(), storeError(err)
}

// The writes below take the versions a client's If-Match allows: nil for any
// version, else the task's updated_at must be one of them. The check is part
// of the statement, so nothing can change the task in between.

// updateTask applies a partial change in one statement; updated_at always moves forward.
func (s *store) updateTask(ctx context.Context, userID string, id int64, c taskChange, ifMatch []time.Time) (Task, error) {
	dueAt, dueKind := dueColumns(c.DueDate)
	t, err := s.one(ctx, `UPDATE tasks SET
			title       = coalesce($3, title),
			description = CASE WHEN $4 THEN NULL ELSE coalesce($5, description) END,
			completed   = coalesce($6, completed),
			completed_at = CASE WHEN $6 IS NULL OR $6 = completed THEN completed_at WHEN $6 THEN now() END,
			priority    = coalesce($7, priority),
			due_date    = CASE WHEN $8 THEN NULL ELSE coalesce($9, due_date) END,
			due_kind    = CASE WHEN $8 THEN NULL ELSE coalesce($12, due_kind) END,
			due_kind_at = CASE WHEN $8 THEN NULL WHEN $12::text IS NOT NULL THEN $9 ELSE due_kind_at END,
			tags        = coalesce($10, tags),
			updated_at  = greatest(now(), updated_at + interval '1 microsecond')
		WHERE id = $1 AND user_id = $2 AND ($11::timestamptz[] IS NULL OR updated_at = ANY($11))
		RETURNING `+taskColumns,
		id, userID, c.Title, c.ClearDesc, c.Description, c.Completed, c.Priority, c.ClearDue, dueAt, c.Tags, ifMatch, dueKind)
	return s.checkStale(ctx, userID, id, ifMatch, t, err)
}

// toggleTask flips completed in one statement, so concurrent toggles never lose one.
func (s *store) toggleTask(ctx context.Context, userID string, id int64, ifMatch []time.Time) (Task, error) {
	t, err := s.one(ctx, `UPDATE tasks SET completed = NOT completed,
			completed_at = CASE WHEN completed THEN NULL ELSE now() END,
			updated_at = greatest(now(), updated_at + interval '1 microsecond')
		WHERE id = $1 AND user_id = $2 AND ($3::timestamptz[] IS NULL OR updated_at = ANY($3))
		RETURNING `+taskColumns, id, userID, ifMatch)
	return s.checkStale(ctx, userID, id, ifMatch, t, err)
}

// deleteTask removes the user's task id.
func (s *store) deleteTask(ctx context.Context, userID string, id int64, ifMatch []time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var deleted int
	err := s.pool.QueryRow(ctx, `WITH gone AS (DELETE FROM tasks WHERE id = $1 AND user_id = $2
			AND ($3::timestamptz[] IS NULL OR updated_at = ANY($3)) RETURNING user_id),
		counted AS (UPDATE task_counts c SET n = c.n - 1 FROM gone WHERE c.user_id = gone.user_id)
		SELECT count(*) FROM gone`, id, userID, ifMatch).Scan(&deleted)
	if err != nil {
		return storeError(err)
	}
	if deleted == 0 {
		_, err = s.checkStale(ctx, userID, id, ifMatch, Task{}, errNotFound)
	}
	return err
}

// checkStale tells a failed precondition from a missing task, after a write
// under ifMatch found no row; that second read happens only then.
func (s *store) checkStale(ctx context.Context, userID string, id int64, ifMatch []time.Time, t Task, err error) (Task, error) {
	if !errors.Is(err, errNotFound) || ifMatch == nil {
		return t, err
	}
	current, getErr := s.getTask(ctx, userID, id)
	if getErr != nil {
		return t, getErr
	}
	return t, &staleError{Current: current}
}

// listSort is a sort key of the list: its name in ?sort=, its natural
// direction, and its ORDER BY each way. Ties are broken by id in the same
// direction so pages are stable; tasks without a due date come last either way.
type listSort struct {
	name     string
	desc     bool // the natural direction: newest, soonest, high first; titles A to Z
	asc, dsc string
}

// listSorts are the sort keys, in the order a message lists them; "created" is the default.
var listSorts = []listSort{
	{"created", true, "created_at, id", "created_at DESC, id DESC"},
	{"updated", true, "updated_at, id", "updated_at DESC, id DESC"},
	{"title", false, "lower(title COLLATE task_fold), id", "lower(title COLLATE task_fold) DESC, id DESC"},
	{"due_date", false, "due_date NULLS LAST, id", "due_date DESC NULLS LAST, id DESC"},
	{"priority", true, "array_position('{low,medium,high}', priority), id", "array_position('{low,medium,high}', priority) DESC, id DESC"},
}

// listTasks returns one page of the user's matching tasks and how many match in all.
// The WHERE clause holds only the filters asked for, so PostgreSQL never
// evaluates an unused one row by row. The page is read with one row more than
// it shows: when nothing follows it, the total is the offset plus the page's
// length; a count follows only a page with more after it, or one past the end.
func (s *store) listTasks(ctx context.Context, userID string, q listQuery) ([]Task, int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	where, args := `WHERE user_id = $1`, []any{userID}
	if q.Completed != nil {
		args = append(args, *q.Completed)
		where += ` AND completed = $` + strconv.Itoa(len(args))
	}
	if q.Q != "" {
		args = append(args, q.Q)
		n := strconv.Itoa(len(args))
		// Not lower(), which folds as the database's LC_CTYPE says (ASCII only with
		// C): task_casefold (schema.sql) folds every script the same everywhere.
		where += ` AND (strpos(task_casefold(title), task_casefold($` + n + `)) > 0` +
			` OR strpos(task_casefold(description), task_casefold($` + n + `)) > 0)`
	}
	if len(q.Tags) > 0 {
		args = append(args, q.Tags)
		where += ` AND tags @> $` + strconv.Itoa(len(args))
	}
	sort, _ := findSort(q.Sort) // parseListQuery admits only known keys
	order := sort.asc
	if q.Desc {
		order = sort.dsc
	}
	n := len(args)
	page := ` ORDER BY ` + order + ` LIMIT $` + strconv.Itoa(n+1) + ` OFFSET $` + strconv.Itoa(n+2)
	rows, _ := s.pool.Query(ctx, `SELECT `+taskColumns+` FROM tasks `+where+page, append(args, q.Limit+1, q.Offset)...)
	tasks, err := pgx.CollectRows(rows, scanTask)
	if err != nil {
		return nil, 0, storeError(err)
	}
	more := len(tasks) > q.Limit
	if more {
		tasks = tasks[:q.Limit]
	}
	total := q.Offset + len(tasks)
	if more || len(tasks) == 0 && q.Offset > 0 {
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM tasks `+where, args[:n]...).Scan(&total); err != nil {
			return nil, 0, storeError(err)
		}
	}
	return tasks, total, nil
}
