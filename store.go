// store.go holds one method per SQL statement on tasks, the feed and Idempotency-Keys; store_time.go holds those of recurring series, reminders and Web Push, store_tree.go those of creates, moves and completions in the tree.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// taskColumns are a task's columns, in the order taskFromBinary reads them.
const taskColumns = `id, user_id, title, description, completed, priority, due_date, tags, created_at, updated_at,
	due_kind, completed_at, version, recurrence, recur_from, timezone, reminders, next_reminder_at, parent_id, position`

// selectTask reads the user's ($2) task $1.
const selectTask = `SELECT ` + taskColumns + ` FROM tasks WHERE id = $1 AND user_id = $2`

// getTask returns the user's task id.
func (s *store) getTask(ctx context.Context, userID string, id int64) (Task, error) {
	return s.one(ctx, s.pool, selectTask, id, userID)
}

// Every write moves the user's version (task_counts.version) and stamps the task
// or its tombstone with it, taking the user's row lock, held until commit, before
// the task's: one user's versions commit in the order they were given out
// (store.changes), and two writes never wait on each other in a cycle. A write
// changes the task, and moves the version, only if the user has the task and,
// when ifMatch is not nil (If-Match), its version is one of ifMatch: a 404 or a
// 412 leaves the feed and every stream as they were. (The version's check runs
// on the statement's snapshot: after a concurrent write to the task it can move
// for nothing, which costs a stream a read, never a change.) An update or toggle
// that would complete an open recurring task, change another task (complete one
// with subtasks, reopen a subtask), or give recurrence to a task with subtasks,
// changes nothing: errSeries sends it to completeSeries.
const taskMatches = `tasks.id = $1 AND tasks.user_id = $2 AND ($3::bigint[] IS NULL OR tasks.version = ANY($3))`

// versioned is a write that sets set on the user's ($2) task that matches where, and
// moves the version. When where reads other tasks (tree), it writes only if no other
// write of the user came between its snapshot and its lock (freshVersion), so that
// it read the tree as it is.
func versioned(where, set string, tree bool) string {
	fresh := ""
	if tree {
		fresh = ` AND ` + freshVersion("$2")
	}
	return `WITH next AS (UPDATE task_counts SET version = version + 1
		WHERE user_id = $2 AND EXISTS (SELECT FROM tasks WHERE ` + where + `)` + fresh + ` RETURNING version AS v)
		UPDATE tasks SET version = next.v, updated_at = now(), ` + set + ` FROM next WHERE ` + where + ` RETURNING ` + taskColumns
}

// updateSet is what an update sets (updateSQL, updateTreeSQL).
const updateSet = `
	title        = coalesce($4, title),
	description  = CASE WHEN $5 THEN NULL ELSE coalesce($6, description) END,
	completed    = coalesce($7, completed),
	completed_at = CASE WHEN $7 IS NULL OR $7 = completed THEN completed_at WHEN $7 THEN now() END,
	priority     = coalesce($8, priority),
	due_date     = CASE WHEN $9 THEN NULL ELSE coalesce($10, due_date) END,
	due_kind     = CASE WHEN $9 THEN NULL ELSE coalesce($11, due_kind) END,
	tags         = coalesce($12, tags),
	recurrence   = CASE WHEN $13 THEN NULL ELSE coalesce($14, recurrence) END,
	recur_from   = coalesce($15, recur_from),
	timezone     = CASE WHEN $16 THEN NULL ELSE coalesce($17, timezone) END,
	reminders    = CASE WHEN $18::text IS NULL THEN reminders ELSE nullif($18::text, '[]')::json END`

// updateSQL applies a partial change that sets neither completed nor recurrence.
var updateSQL = versioned(taskMatches, updateSet, false)

// updateTreeSQL applies a partial change that sets completed or recurrence, unless it
// completes an open recurring task or changes another task (completes one with subtasks,
// reopens a subtask: setCompleted's), or gives recurrence to one with subtasks. A statement
// of its own, so that updateSQL keeps the generic plan PostgreSQL would not choose for this one.
var updateTreeSQL = versioned(taskMatches+` AND (tasks.recurrence IS NULL OR tasks.completed OR $7 IS NOT TRUE)
	AND (($7 IS NOT TRUE OR tasks.completed) AND $14::text IS NULL OR `+leaf+`) AND ($7 IS NOT FALSE OR NOT tasks.completed OR tasks.parent_id IS NULL)`,
	updateSet, true)

// updateTask applies a partial change to the user's task id, in one statement.
func (s *store) updateTask(ctx context.Context, q querier, userID string, id int64, c taskChange, ifMatch []int64) (Task, error) {
	dueAt, dueKind := dueColumns(c.DueDate)
	sql := updateSQL
	if c.Completed != nil || c.Recurrence != nil {
		sql = updateTreeSQL
	}
	t, err := s.one(ctx, q, sql, id, userID, ifMatch, c.Title, c.ClearDesc, c.Description, c.Completed, c.Priority,
		c.ClearDue, dueAt, dueKind, c.Tags, c.ClearRecur, c.Recurrence, c.RecurFrom, c.ClearZone, c.Timezone, c.Reminders)
	return t, s.missed(ctx, q, userID, id, ifMatch, true, err)
}

// toggleSQL flips completed, unless it would complete an open recurring task, or
// change another task (setCompleted's).
var toggleSQL = versioned(taskMatches+` AND (tasks.recurrence IS NULL OR tasks.completed)
	AND (tasks.completed AND tasks.parent_id IS NULL OR NOT tasks.completed AND `+leaf+`)`,
	`completed = NOT completed, completed_at = CASE WHEN completed THEN NULL ELSE now() END`, true)

// toggleTask flips completed in one statement, so concurrent toggles never lose one.
func (s *store) toggleTask(ctx context.Context, q querier, userID string, id int64, ifMatch []int64) (Task, error) {
	t, err := s.one(ctx, q, toggleSQL, id, userID, ifMatch)
	return t, s.missed(ctx, q, userID, id, ifMatch, true, err)
}

// deleteTask removes the user's task id with its subtasks, and leaves a tombstone
// of each for the feed, in two statements sent at once, which PostgreSQL runs as one
// transaction: the first locks the user's row; the second, on a snapshot taken after
// that lock (so it sees every subtask any write added), counts the tasks out and
// moves the version only for those it deleted, so the count never drifts.
func (s *store) deleteTask(ctx context.Context, q querier, userID string, id int64, ifMatch []int64) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var deleted int
	b := &pgx.Batch{}
	b.Queue(`SELECT FROM task_counts WHERE user_id = $1 FOR NO KEY UPDATE`, userID)
	b.Queue(`WITH RECURSIVE subtree AS (SELECT id FROM tasks WHERE `+taskMatches+`
			UNION SELECT t.id FROM subtree, tasks t WHERE t.user_id = $2 AND t.parent_id = subtree.id),
		gone AS (DELETE FROM tasks WHERE user_id = $2 AND id IN (SELECT id FROM subtree) RETURNING id),
		counted AS (UPDATE task_counts SET n = n - (SELECT count(*) FROM gone), version = version + (SELECT count(*) FROM gone)
			WHERE user_id = $2 AND EXISTS (SELECT FROM gone) RETURNING version - (SELECT count(*) FROM gone) AS base),
		tombstones AS (INSERT INTO task_tombstones (user_id, version, task_id)
			SELECT $2, base + row_number() OVER (ORDER BY id), id FROM counted, gone)
		SELECT count(*) FROM gone`, id, userID, ifMatch).QueryRow(func(row pgx.Row) error { return row.Scan(&deleted) })
	err := storeError(q.SendBatch(ctx, b).Close())
	if err == nil && deleted == 0 {
		err = errNotFound
	}
	return s.missed(ctx, q, userID, id, ifMatch, false, err)
}

// missed tells why a write of the user's task id changed nothing (errNotFound): the
// task is missing (errNotFound), ifMatch names none of its versions (*staleError, with
// the task as it is), or, for an update or a toggle (series), the write must run under
// the user's lock (errSeries: completeSeries decides there): it may complete an open
// recurring task or change another task (setCompleted), give recurrence to a task with
// subtasks, or have read the tree before another write committed (versioned). Any
// other err passes through. It reads on q: a keyed write never waits on a second connection.
func (s *store) missed(ctx context.Context, q querier, userID string, id int64, ifMatch []int64, series bool, err error) error {
	if !errors.Is(err, errNotFound) || !series && ifMatch == nil {
		return err
	}
	current, getErr := s.one(ctx, q, selectTask, id, userID)
	switch {
	case getErr != nil:
		return getErr
	case !series || ifMatch != nil && !slices.Contains(ifMatch, current.Version):
		return &staleError{Current: current}
	}
	return errSeries
}

// writeOnce runs write on the pool; with an Idempotency-Key (key != ""), at most
// once per key: in a transaction that claims the user's key with the request's
// hash, runs write, and keeps its answer with the key. A retry with the same hash
// gets the kept answer (replayed) and writes nothing, whatever happened to the
// task since; a concurrent one waits on the key's unique index for the first to
// end; another request with the key is errKeyReused. A failed write keeps nothing.
func (s *store) writeOnce(ctx context.Context, userID, key string, hash []byte, write func(context.Context, querier) (answer, error)) (a answer, replayed bool, err error) {
	if key == "" {
		a, err = write(ctx, s.pool)
		return a, false, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	// Every keyed write takes its key before the user's row, so two of them
	// never wait on each other's in a cycle.
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		claimed, err := tx.Exec(ctx, `INSERT INTO idempotency_keys (user_id, key, request_hash) VALUES ($1, $2, $3)
			ON CONFLICT (user_id, key) DO NOTHING`, userID, key, hash)
		if err != nil {
			return err
		}
		if claimed.RowsAffected() == 0 {
			replayed = true
			return keptAnswer(ctx, tx, userID, key, hash, &a)
		}
		if a, err = write(ctx, tx); err != nil { // within the transaction's bound
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE idempotency_keys SET status = $3, etag = $4, location = $5, answer = $6
			WHERE user_id = $1 AND key = $2`, userID, key, a.Status, a.ETag, a.Location, a.Body)
		return err
	})
	return a, replayed, storeError(err)
}

// keptAnswer reads into a the answer kept with the user's key, if it was for the same request.
func keptAnswer(ctx context.Context, tx pgx.Tx, userID, key string, hash []byte, a *answer) error {
	var kept []byte
	var status int16
	err := tx.QueryRow(ctx, `SELECT request_hash, status, coalesce(etag, ''), coalesce(location, ''), answer
		FROM idempotency_keys WHERE user_id = $1 AND key = $2`, userID, key).Scan(&kept, &status, &a.ETag, &a.Location, &a.Body)
	if errors.Is(err, pgx.ErrNoRows) { // forgotten (idempotencyTTL) since this request found it
		return fmt.Errorf("%w: the Idempotency-Key expired during the request", errUnavailable)
	}
	if err == nil && !bytes.Equal(kept, hash) {
		err = errKeyReused
	}
	a.Status = int(status)
	return err
}

// forgetBatch bounds what one cleanup statement deletes, so that a backlog
// goes in many short statements, each well inside QUERY_TIMEOUT.
const forgetBatch = 1000

// deleteOld forgets up to batch Idempotency-Keys older than idempotencyTTL, and
// up to batch tombstones and fired reminders each older than retention and an
// hour (a margin for a write whose transaction began, its deleted_at, before a
// feed read that did not yet see it, and for clocks that disagree); it returns
// the largest count.
func (s *store) deleteOld(ctx context.Context, retention time.Duration, batch int) (int64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	forget := func(sql string, age time.Duration) (int64, error) {
		tag, err := s.pool.Exec(ctx, sql, age.Seconds(), batch)
		return tag.RowsAffected(), storeError(err)
	}
	keys, err := forget(`DELETE FROM idempotency_keys WHERE (user_id, key) IN (SELECT user_id, key FROM idempotency_keys
		WHERE created_at < now() - make_interval(secs => $1) LIMIT $2)`, idempotencyTTL)
	if err != nil {
		return 0, err
	}
	tombstones, err := forget(`DELETE FROM task_tombstones WHERE (user_id, version) IN (SELECT user_id, version FROM task_tombstones
		WHERE deleted_at < now() - make_interval(secs => $1) LIMIT $2)`, retention+time.Hour)
	if err != nil {
		return 0, err
	}
	fired, err := forget(`DELETE FROM fired_reminders WHERE (user_id, version) IN (SELECT user_id, version FROM fired_reminders
		WHERE fired_at < now() - make_interval(secs => $1) LIMIT $2)`, retention+time.Hour)
	return max(keys, tombstones, fired), err
}

// changes returns the user's changes after version since, in version order, at
// most limit: the tasks written since, and tombstones and fired reminders (above
// floor) since; and the user's version, up to which all was read if no more than
// limit came back. Versions commit in the order they were given out (versioned),
// so a snapshot holding version v holds every one before it, and a read going on
// from the last version returned skips nothing. With nothing new, it reads one row.
func (s *store) changes(ctx context.Context, userID string, since, floor int64, limit int) ([]feedEntry, int64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var current int64
	err := s.pool.QueryRow(ctx, `SELECT version FROM task_counts WHERE user_id = $1`, userID).Scan(&current)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, 0, storeError(err)
	}
	if since > current {
		return nil, current, errCursorAhead
	}
	if current == since {
		return nil, since, nil
	}
	rows, _ := s.pool.Query(ctx, `(SELECT `+taskColumns+`, 't'::"char" AS kind FROM tasks
			WHERE user_id = $1 AND version > $2 ORDER BY version LIMIT $3)
		UNION ALL
		(SELECT task_id, user_id, '', NULL, false, '', NULL, '{}', deleted_at, deleted_at, NULL, NULL, version, NULL, 'due', NULL, NULL, NULL, NULL, '', 'd'
			FROM task_tombstones WHERE user_id = $1 AND version > $2 AND version > $4 ORDER BY version LIMIT $3)
		UNION ALL
		(SELECT task_id, user_id, '', NULL, false, '', at, '{}', fired_at, fired_at, 'instant', NULL, version, NULL, 'due', NULL, NULL, NULL, NULL, '', 'r'
			FROM fired_reminders WHERE user_id = $1 AND version > $2 AND version > $4 ORDER BY version LIMIT $3)
		ORDER BY version LIMIT $3`, userID, since, limit, floor)
	entries, err := pgx.CollectRows(rows, scanFeedEntry)
	return entries, current, storeError(err)
}

// versions returns the version of each of the users (0 for one who never wrote), in one statement.
func (s *store) versions(ctx context.Context, userIDs []string) (map[string]int64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, _ := s.pool.Query(ctx, `SELECT user_id, version FROM task_counts WHERE user_id = ANY($1)`, userIDs)
	versions, userID, version := make(map[string]int64, len(userIDs)), "", int64(0)
	_, err := pgx.ForEachRow(rows, []any{&userID, &version}, func() error {
		versions[userID] = version
		return nil
	})
	return versions, storeError(err)
}

// notify sends payload on notifyChannel as a write does (live.go: a session hears its own).
func (s *store) notify(ctx context.Context, payload string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	_, err := s.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, payload)
	return storeError(err)
}

// listen makes conn, a session outside the pool, receive notifyChannel's notifications.
func listen(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, `LISTEN `+notifyChannel)
	return err
}

// keepListening names conn, once it has heard its own NOTIFY, and keeps it
// however long it idles. Not as startup parameters: PgBouncer refuses
// idle_session_timeout, and a pooler would keep them for other clients.
func keepListening(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, `SET application_name = 'tasks listener'; SET idle_session_timeout = 0`)
	return err
}

// unlisten closes conn, first undoing listen when it never heard its own
// NOTIFY (untrusted), so that no pooler's server session keeps it for other clients.
func unlisten(ctx context.Context, conn *pgx.Conn, untrusted bool) {
	if untrusted {
		conn.Exec(ctx, `UNLISTEN *`)
	}
	conn.Close(ctx)
}

// listTasks returns one page of the user's matching tasks, how many match in all
// (-1: not counted), and whether more follow. After a cursor (q.After), the page
// starts after the cursor's task in the list's order, wherever that task is now.
// The WHERE clause holds only the filters asked for, so PostgreSQL never evaluates
// an unused one. The page is read with one row more than it shows: when nothing
// follows, the total is the offset plus the page's length; otherwise an unfiltered
// list's is the user's count row, and a filtered one is counted if q.Total asks.
func (s *store) listTasks(ctx context.Context, userID string, q listQuery) (tasks []Task, total int, more bool, err error) {
	ctx, cancel := s.bound(ctx)
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
	if q.Parent != nil && *q.Parent == 0 {
		where += ` AND parent_id IS NULL`
	} else if q.Parent != nil {
		args = append(args, *q.Parent)
		where += ` AND parent_id = $` + strconv.Itoa(len(args))
	}
	op, dir := ">", ""
	if q.Desc {
		op, dir = "<", " DESC"
	}
	nulls := ""
	if q.Sort.nullable {
		nulls = " NULLS LAST"
	}
	n, keyset, key := len(args), "", q.Sort.key(0)
	if q.Zone != "" { // dates and floating times read in the zone; a cursor holds the instant (listCursor)
		args = append(args, q.Zone)
		key = `CASE WHEN due_kind = 'instant' THEN due_date ELSE task_instant(due_date AT TIME ZONE 'UTC', $` + strconv.Itoa(len(args)) + `) END`
	}
	if a := q.After; a != nil { // keyset paging: after the cursor's task, in this order
		args = append(args, a.ID)
		id := "$" + strconv.Itoa(len(args))
		switch {
		case a.Key == nil: // a task without a due date: only those after it, by id
			keyset = ` AND ` + key + ` IS NULL AND id ` + op + ` ` + id
		case q.Sort.nullable:
			args = append(args, a.Key)
			at := q.Sort.key(len(args))
			keyset = ` AND (` + key + ` ` + op + ` ` + at + ` OR ` + key + ` = ` + at + ` AND id ` + op + ` ` + id + ` OR ` + key + ` IS NULL)`
		default:
			args = append(args, a.Key)
			keyset = ` AND (` + key + `, id) ` + op + ` (` + q.Sort.key(len(args)) + `, ` + id + `)`
		}
	}
	page := ` ORDER BY ` + key + dir + nulls + `, id` + dir +
		` LIMIT $` + strconv.Itoa(len(args)+1) + ` OFFSET $` + strconv.Itoa(len(args)+2)
	rows, _ := s.pool.Query(ctx, `SELECT `+taskColumns+` FROM tasks `+where+keyset+page, append(args, q.Limit+1, q.Offset)...)
	if tasks, err = pgx.CollectRows(rows, scanTask); err != nil {
		return nil, 0, false, storeError(err)
	}
	more = len(tasks) > q.Limit
	if more {
		tasks = tasks[:q.Limit]
	}
	total = q.Offset + len(tasks)
	if !more && (len(tasks) > 0 || q.Offset == 0) && q.After == nil { // after a cursor, how many came before is not known
		return tasks, total, more, nil
	}
	count := `SELECT count(*) FROM tasks ` + where
	switch {
	case n == 1 && q.Parent == nil: // no filter
		count = `SELECT coalesce((SELECT n FROM task_counts WHERE user_id = $1), 0)`
	case !q.Total:
		return tasks, -1, more, nil
	}
	if err := s.pool.QueryRow(ctx, count, args[:n]...).Scan(&total); err != nil {
		return nil, 0, false, storeError(err)
	}
	return tasks, total, more, nil
}
