// store.go holds one method per SQL statement.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

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
	rows, _ := s.q().Query(ctx, sql, args...) // a failed query's error comes back from CollectOneRow
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
	// The same row holds the user's version, which the new task takes (store.changes).
	const slotAndTask = `slot AS (INSERT INTO task_counts (user_id, n, version) VALUES ($1, 1, 1)
		ON CONFLICT (user_id) DO UPDATE SET n = task_counts.n + 1, version = task_counts.version + 1
		WHERE task_counts.n < $7 RETURNING version),
		task AS (INSERT INTO tasks (user_id, title, description, priority, due_date, tags, due_kind, due_kind_at, version)
		SELECT $1::text, $2::text, $3::text, $4::text, $5::timestamptz, $6::text[], $8::text, $5::timestamptz, version FROM slot
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
	err := s.q().QueryRow(ctx, `SELECT request_hash, task_id, hashed_due_forms IS NULL FROM idempotency_keys
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

// once runs write, a write on the user's task id, at most once per Idempotency-Key,
// in a transaction that first claims the key with the request's hash. A retry
// with the key and the same hash gets the first answer (replayed) and writes
// nothing; a concurrent one waits on the key's unique index for the first to
// end. Another request with the key is errKeyReused. When write fails, nothing
// is kept, the key included, so a retry runs it again.
func (s *store) once(ctx context.Context, userID, key string, requestHash []byte, id int64,
	write func(*store) (answer, error)) (a answer, replayed bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout) // the whole transaction, as for one statement
	defer cancel()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return a, false, storeError(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) // after Commit, nothing to do
	// The user's counter row first, then the key, as a create takes them (and
	// every write, the counter before the task): else a create and another write
	// with one key at once would each wait on what the other holds.
	if _, err = tx.Exec(ctx, `SELECT FROM task_counts WHERE user_id = $1 FOR NO KEY UPDATE`, userID); err != nil {
		return a, false, storeError(err)
	}
	claimed, err := tx.Exec(ctx, `INSERT INTO idempotency_keys (user_id, key, request_hash, task_id, hashed_due_forms)
		VALUES ($1, $2, $3, $4, true) ON CONFLICT (user_id, key) DO NOTHING`, userID, key, requestHash, id)
	if err != nil {
		return a, false, storeError(err)
	}
	if claimed.RowsAffected() == 0 {
		tx.Rollback(ctx)
		a, err = s.answerOf(ctx, userID, key, requestHash)
		return a, err == nil, err
	}
	if a, err = write(&store{pool: s.pool, timeout: s.timeout, tx: tx}); err != nil {
		return a, false, err
	}
	_, err = tx.Exec(ctx, `UPDATE idempotency_keys SET status = $3, etag = $4, answer = $5 WHERE user_id = $1 AND key = $2`,
		userID, key, a.Status, a.ETag, a.Body)
	if err == nil {
		err = tx.Commit(ctx)
	}
	return a, false, storeError(err)
}

// answerOf returns the answer kept with the user's key, if it was for the same request.
func (s *store) answerOf(ctx context.Context, userID, key string, requestHash []byte) (answer, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var a answer
	var hash []byte
	var status *int16 // none: the key is a create's
	err := s.q().QueryRow(ctx, `SELECT request_hash, status, coalesce(etag, ''), answer FROM idempotency_keys
		WHERE user_id = $1 AND key = $2`, userID, key).Scan(&hash, &status, &a.ETag, &a.Body)
	if errors.Is(err, pgx.ErrNoRows) { // forgotten (idempotencyTTL) since this request found it
		return a, fmt.Errorf("%w: the Idempotency-Key expired during the request", errUnavailable)
	}
	if err != nil {
		return a, storeError(err)
	}
	if status == nil || !bytes.Equal(hash, requestHash) {
		return a, errKeyReused
	}
	a.Status = int(*status)
	return a, nil
}

// deleteOldKeys forgets Idempotency-Keys older than idempotencyTTL.
func (s *store) deleteOldKeys(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	tag, err := s.q().Exec(ctx, `DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)`,
		idempotencyTTL.Seconds())
	return tag.RowsAffected(), storeError(err)
}

// The writes below take the versions a client's If-Match allows: nil for any
// version, else the task's updated_at must be one of them. The check is part
// of the statement, so nothing can change the task in between.
//
// Each write first moves the user's version (task_counts.version) and stamps
// the task or its tombstone with it: the change feed's order (store.changes).
// The counter's row is locked before the task's (and a key's) in every write, so
// two writes never wait on each other in a cycle. An update or a toggle that
// finds no task (404, 412) has moved the version for nothing: the next poll of
// each device reads the user's tasks once, finds nothing and answers 200, not 304.
const nextVersion = `next AS (UPDATE task_counts SET version = version + 1 WHERE user_id = $2 RETURNING version)`

// updateTask applies a partial change in one statement; updated_at always moves forward.
func (s *store) updateTask(ctx context.Context, userID string, id int64, c taskChange, ifMatch []time.Time) (Task, error) {
	dueAt, dueKind := dueColumns(c.DueDate)
	t, err := s.one(ctx, `WITH `+nextVersion+` UPDATE tasks SET
			version     = next.version,
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
		FROM next WHERE id = $1 AND user_id = $2 AND ($11::timestamptz[] IS NULL OR updated_at = ANY($11))
		RETURNING `+taskColumns,
		id, userID, c.Title, c.ClearDesc, c.Description, c.Completed, c.Priority, c.ClearDue, dueAt, c.Tags, ifMatch, dueKind)
	return s.checkStale(ctx, userID, id, ifMatch, t, err)
}

// toggleTask flips completed in one statement, so concurrent toggles never lose one.
func (s *store) toggleTask(ctx context.Context, userID string, id int64, ifMatch []time.Time) (Task, error) {
	t, err := s.one(ctx, `WITH `+nextVersion+` UPDATE tasks SET completed = NOT completed,
			completed_at = CASE WHEN completed THEN NULL ELSE now() END, version = next.version,
			updated_at = greatest(now(), updated_at + interval '1 microsecond')
		FROM next WHERE id = $1 AND user_id = $2 AND ($3::timestamptz[] IS NULL OR updated_at = ANY($3))
		RETURNING `+taskColumns, id, userID, ifMatch)
	return s.checkStale(ctx, userID, id, ifMatch, t, err)
}

// deleteTask removes the user's task id and leaves a tombstone for the change
// feed. Two statements sent at once, which PostgreSQL runs as one transaction:
// the first locks the counter's row, before the task's (see nextVersion); the
// second, with a snapshot taken after that lock, counts the task out and moves
// the version only if it deleted the task.
func (s *store) deleteTask(ctx context.Context, userID string, id int64, ifMatch []time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var deleted int
	b := &pgx.Batch{}
	b.Queue(`SELECT FROM task_counts WHERE user_id = $1 FOR NO KEY UPDATE`, userID)
	b.Queue(`WITH gone AS (DELETE FROM tasks WHERE id = $1 AND user_id = $2
			AND ($3::timestamptz[] IS NULL OR updated_at = ANY($3)) RETURNING id),
		counted AS (UPDATE task_counts SET n = n - 1, version = version + 1
			WHERE user_id = $2 AND EXISTS (SELECT FROM gone) RETURNING version),
		tombstone AS (INSERT INTO task_tombstones (user_id, version, task_id) SELECT $2, version, $1 FROM counted)
		SELECT count(*) FROM gone`, id, userID, ifMatch).QueryRow(func(row pgx.Row) error { return row.Scan(&deleted) })
	if err := s.q().SendBatch(ctx, b).Close(); err != nil {
		return storeError(err)
	}
	if deleted > 0 {
		return nil
	}
	_, err := s.checkStale(ctx, userID, id, ifMatch, Task{}, errNotFound)
	return err
}

// changes returns the user's changes after pos, in version order: the tasks
// written since, and tombstones (above floor) of those deleted since, at most
// limit in all;
// and the user's version, which every change up to has been read when no more
// than limit came back. A user's versions commit in the order they were given
// out (nextVersion): a snapshot that holds version v holds every version before
// it, so a read that goes on from the last version it returned skips nothing.
// A read that finds the user's version where pos is (nothing new) stops after
// one row, the counter's; one that does not reads the feed in one statement.
func (s *store) changes(ctx context.Context, userID string, pos feedPos, floor int64, limit int) ([]change, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var current int64
	err := s.q().QueryRow(ctx, `SELECT version FROM task_counts WHERE user_id = $1`, userID).Scan(&current)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, 0, storeError(err)
	}
	if pos.Version > current {
		return nil, current, errCursorAhead
	}
	if current == pos.Version && pos.Version > 0 { // version 0: a release before the feed may have added tasks
		return nil, pos.Version, nil
	}
	rows, _ := s.q().Query(ctx, `(SELECT `+taskColumns+`, version, false AS deleted FROM tasks
			WHERE user_id = $1 AND version >= $2 AND (version, id) > ($2, $3) ORDER BY version, id LIMIT $4)
		UNION ALL
		(SELECT task_id, user_id, '', NULL, false, '', NULL, '{}', deleted_at, deleted_at, NULL, NULL, version, true
			FROM task_tombstones WHERE user_id = $1 AND version > $5 AND version >= $2 AND (version, task_id) > ($2, $3)
			ORDER BY version, task_id LIMIT $4)
		ORDER BY version, id LIMIT $4`, userID, pos.Version, pos.ID, limit, floor)
	changes, err := pgx.CollectRows(rows, scanChange)
	return changes, current, storeError(err)
}

// versions returns the version of each of the users (0 for one who never wrote), in one statement.
func (s *store) versions(ctx context.Context, userIDs []string) (map[string]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	rows, _ := s.q().Query(ctx, `SELECT user_id, version FROM task_counts WHERE user_id = ANY($1)`, userIDs)
	versions, userID, version := make(map[string]int64, len(userIDs)), "", int64(0)
	_, err := pgx.ForEachRow(rows, []any{&userID, &version}, func() error {
		versions[userID] = version
		return nil
	})
	return versions, storeError(err)
}

// notify sends payload on notifyChannel as a write does (live.go: a session hears its own).
func (s *store) notify(ctx context.Context, payload string) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	_, err := s.q().Exec(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, payload)
	return storeError(err)
}

// listen makes conn, a session outside the pool, receive notifyChannel's notifications.
func listen(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, `LISTEN `+notifyChannel)
	return err
}

// keepListening names conn, once it has heard its own NOTIFY, and keeps it
// however long it idles: behind a transaction-mode pooler these settings would
// stay on a server session that other clients get next (and PgBouncer refuses
// idle_session_timeout as a startup parameter).
func keepListening(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, `SET application_name = 'tasks listener'; SET idle_session_timeout = 0`)
	return err
}

// unlisten undoes listen on a session that did not hear its own NOTIFY, so
// that no pooler's server session keeps it for other clients (at best: it may reach another).
func unlisten(ctx context.Context, conn *pgx.Conn) { conn.Exec(ctx, `UNLISTEN *`) }

// deleteOldTombstones forgets deletions older than retention and an hour: a
// margin for a delete whose transaction began (its deleted_at) before a feed
// read that did not yet see it, and for clocks that disagree.
func (s *store) deleteOldTombstones(ctx context.Context, retention time.Duration) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	tag, err := s.q().Exec(ctx, `DELETE FROM task_tombstones WHERE deleted_at < now() - make_interval(secs => $1)`,
		(retention + time.Hour).Seconds())
	return tag.RowsAffected(), storeError(err)
}

// listTasks returns one page of the user's matching tasks, how many match in
// all, and whether more follow it. After a cursor (q.After), the page starts
// after the cursor's task in the list's order, wherever that task is now, so
// writes between two page loads neither repeat nor skip a task.
// The WHERE clause holds only the filters asked for, so PostgreSQL never
// evaluates an unused one row by row. The page is read with one row more than
// it shows: when nothing follows it, the total is the offset plus the page's
// length; a count follows only a page with more after it, or one past the end.
func (s *store) listTasks(ctx context.Context, userID string, q listQuery) (tasks []Task, total int, more bool, err error) {
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
	op, dir := ">", ""
	if q.Desc {
		op, dir = "<", " DESC"
	}
	nulls := ""
	if sort.nullable {
		nulls = " NULLS LAST"
	}
	n, keyset := len(args), ""
	if a := q.After; a != nil { // keyset paging: after the cursor's task, in this order
		args = append(args, a.ID)
		id := "$" + strconv.Itoa(len(args))
		switch key := sort.key(0); {
		case a.Key == nil: // a task without a due date: only those after it, by id
			keyset = ` AND ` + key + ` IS NULL AND id ` + op + ` ` + id
		case sort.nullable:
			args = append(args, a.Key)
			at := sort.key(len(args))
			keyset = ` AND (` + key + ` ` + op + ` ` + at + ` OR ` + key + ` = ` + at + ` AND id ` + op + ` ` + id + ` OR ` + key + ` IS NULL)`
		default:
			args = append(args, a.Key)
			keyset = ` AND (` + key + `, id) ` + op + ` (` + sort.key(len(args)) + `, ` + id + `)`
		}
	}
	page := ` ORDER BY ` + sort.key(0) + dir + nulls + `, id` + dir +
		` LIMIT $` + strconv.Itoa(len(args)+1) + ` OFFSET $` + strconv.Itoa(len(args)+2)
	rows, _ := s.q().Query(ctx, `SELECT `+taskColumns+` FROM tasks `+where+keyset+page, append(args, q.Limit+1, q.Offset)...)
	if tasks, err = pgx.CollectRows(rows, scanTask); err != nil {
		return nil, 0, false, storeError(err)
	}
	more = len(tasks) > q.Limit
	if more {
		tasks = tasks[:q.Limit]
	}
	total = q.Offset + len(tasks)
	if more || len(tasks) == 0 && q.Offset > 0 || q.After != nil { // after a cursor, how many came before is not known
		if err := s.q().QueryRow(ctx, `SELECT count(*) FROM tasks `+where, args[:n]...).Scan(&total); err != nil {
			return nil, 0, false, storeError(err)
		}
	}
	return tasks, total, more, nil
}
