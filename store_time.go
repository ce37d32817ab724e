// store_time.go holds the store's statements for what happens in time: moving a recurring task, firing reminders, and Web Push's outbox and subscriptions.
package main

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// moveSeries, on a transaction holding the user's row lock (store.locked), moves
// the user's recurring task id to its next occurrence, due at next (wall on the
// rule's clock, kept as due_wall), with recurrence its rule from then on, and
// records the occurrence done as a completed copy without recurrence: two
// versions, the copy's the later one, and a task more, unless the user holds
// maxTasks (errTaskLimit). Its reminders at an instant, the occurrence's, go (its
// offsets follow the next). With next nil, none is left: the task completes.
func (s *store) moveSeries(ctx context.Context, tx querier, userID string, id int64, next *Due, wall time.Time, recurrence string, maxTasks int) (Task, error) {
	dueAt, _ := dueColumns(next)
	t, err := s.one(ctx, tx, `WITH slot AS (UPDATE task_counts SET n = n + ($3::timestamptz IS NOT NULL)::int,
			version = version + 1 + ($3::timestamptz IS NOT NULL)::int WHERE user_id = $2 AND (n < $5 OR $3::timestamptz IS NULL) RETURNING version AS v),
		copy AS (INSERT INTO tasks (user_id, version, title, description, priority, due_date, due_kind, tags, completed, completed_at, position)
			SELECT user_id, v, title, description, priority, due_date, due_kind, tags, true, now(), task_position_first(v)
			FROM tasks, slot WHERE id = $1 AND user_id = $2 AND $3::timestamptz IS NOT NULL)
		UPDATE tasks SET version = v - ($3::timestamptz IS NOT NULL)::int, updated_at = now(), due_date = coalesce($3::timestamptz, due_date),
			recurrence = $4, completed = $3::timestamptz IS NULL, due_wall = CASE WHEN $3::timestamptz IS NOT NULL THEN $6::timestamp END,
			reminders = CASE WHEN $3::timestamptz IS NULL THEN reminders ELSE (SELECT ('[' || string_agg(r::text, ',') || ']')::json
				FROM json_array_elements(reminders) AS r WHERE r->>'at' IS NULL) END, completed_at = CASE WHEN $3::timestamptz IS NULL THEN now() END
		FROM slot WHERE id = $1 AND user_id = $2 RETURNING `+taskColumns, id, userID, dueAt, recurrence, maxTasks, wall)
	if errors.Is(err, errNotFound) { // no slot: the user holds maxTasks
		err = errTaskLimit
	}
	return t, err
}

// locked runs fn in a transaction on q (a savepoint if q is one) that first takes the
// user's row lock, then reads their task id as it is, with its due_wall (errNotFound if they have none).
func (s *store) locked(ctx context.Context, q querier, userID string, id int64, fn func(tx querier, t Task) error) error {
	return s.inTransaction(ctx, q, func(ctx context.Context, tx querier) error {
		if _, err := tx.Exec(ctx, `SELECT FROM task_counts WHERE user_id = $1 FOR NO KEY UPDATE`, userID); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `SELECT `+taskColumns+`, due_wall FROM tasks WHERE id = $1 AND user_id = $2`, id, userID)
		t, err := pgx.CollectOneRow(rows, func(row pgx.CollectableRow) (t Task, err error) { return t, scanTaskInto(row, &t, &t.dueWall) })
		if err != nil {
			return err
		}
		return fn(tx, t)
	})
}

// dueWork returns when the first reminder is due to fire and the first push to
// be sent, each nil for none: one statement, which reads two indexes' first entries.
func (s *store) dueWork(ctx context.Context) (reminder, push *time.Time, err error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	err = s.pool.QueryRow(ctx, `SELECT (SELECT min(next_reminder_at) FROM tasks), (SELECT min(not_before) FROM push_outbox)`).Scan(&reminder, &push)
	return reminder, push, storeError(err)
}

// fireReminders fires, in one transaction, each due reminder of up to batch users whose row
// locks it takes without waiting (a lock another replica holds is that replica's to fire), and
// returns how many fired: each task's next_reminder_at moves past the moment, each firing is
// recorded for the feed (two versions: the task's, then the record's) and, with push, queued
// for each of the user's subscriptions under a topic of its own as {"type": "reminder", "task":
// {"id", "title", "due_date"}, "at"}, spelled as the API spells them (due.go). The locks come
// first, so that the second statement's snapshot sees what another replica fired before it let go.
func (s *store) fireReminders(ctx context.Context, batch int, push bool) (fired int, err error) {
	err = s.inTransaction(ctx, s.pool, func(ctx context.Context, tx querier) error {
		rows, _ := tx.Query(ctx, `SELECT user_id FROM task_counts WHERE user_id IN (SELECT user_id FROM tasks
			WHERE next_reminder_at <= now() ORDER BY next_reminder_at LIMIT $1) ORDER BY user_id FOR NO KEY UPDATE SKIP LOCKED`, batch)
		users, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil || len(users) == 0 {
			return err
		}
		rows, _ = tx.Query(ctx, `WITH due AS (SELECT user_id, id, next_reminder_at AS at, title, due_date, due_kind, reminders, timezone,
				row_number() OVER w AS i, count(*) OVER w AS k FROM tasks
				WHERE user_id = ANY($1) AND next_reminder_at <= now() WINDOW w AS (PARTITION BY user_id)),
			bumped AS (UPDATE task_counts c SET version = version + 2 * d.k FROM (SELECT DISTINCT user_id, k FROM due) d
				WHERE c.user_id = d.user_id RETURNING c.user_id, c.version - 2 * d.k AS base),
			moved AS (UPDATE tasks t SET version = base + 2 * i - 1, next_reminder_at = (SELECT min(m)
					FROM unnest(task_reminder_moments(d.reminders, d.due_date, d.due_kind, d.timezone)) AS m WHERE m > d.at)
				FROM due d JOIN bumped USING (user_id) WHERE t.user_id = d.user_id AND t.id = d.id),
			recorded AS (INSERT INTO fired_reminders (user_id, version, task_id, at)
				SELECT user_id, base + 2 * i, id, at FROM due JOIN bumped USING (user_id)),
			queued AS (INSERT INTO push_outbox (user_id, endpoint, topic, payload)
				SELECT user_id, endpoint, concat_ws(' ', user_id, id, extract(epoch FROM at)), json_build_object('type', 'reminder',
					'task', json_build_object('id', id, 'title', title, 'due_date', CASE due_kind
						WHEN 'date' THEN to_json(timezone('UTC', due_date)::date) WHEN 'local' THEN to_json(timezone('UTC', due_date))
						WHEN 'instant' THEN to_json((to_json(timezone('UTC', due_date)) #>> '{}') || 'Z') END),
					'at', (to_json(timezone('UTC', at)) #>> '{}') || 'Z')::text
				FROM due JOIN push_subscriptions USING (user_id) WHERE $2)
			SELECT count(*) FROM due`, users, push)
		fired, err = pgx.CollectOneRow(rows, pgx.RowTo[int])
		return err
	})
	return fired, err
}

// pushJob is a push to send: its row in the outbox, and the keys of its subscription.
type pushJob struct {
	UserID, Endpoint, Topic, Payload, P256dh, Auth string
	ID                                             int64
	Attempts                                       int
	Created                                        time.Time
}

// claimPushes takes up to batch pushes due to be sent, each for lease: another
// sender takes one only after its lease ends unsent (this process died).
func (s *store) claimPushes(ctx context.Context, batch int, lease time.Duration) ([]pushJob, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, _ := s.pool.Query(ctx, `UPDATE push_outbox o SET not_before = now() + make_interval(secs => $2), attempts = o.attempts + 1
		FROM (SELECT user_id, id FROM push_outbox WHERE not_before <= now() ORDER BY not_before LIMIT $1 FOR UPDATE SKIP LOCKED) c,
			push_subscriptions s
		WHERE o.user_id = c.user_id AND o.id = c.id AND s.user_id = o.user_id AND s.endpoint = o.endpoint
		RETURNING o.user_id, o.endpoint, o.topic, o.payload, s.p256dh, s.auth, o.id, o.attempts, o.created_at`, batch, lease.Seconds())
	jobs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[pushJob])
	return jobs, storeError(err)
}

// pushed ends a claimed push: sent (or given up), retried from retry when it is
// not zero, or, when gone, with its subscription, which the push service no
// longer knows (and every push queued for it).
func (s *store) pushed(ctx context.Context, j pushJob, retry time.Time, gone bool) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	sql, args := `DELETE FROM push_outbox WHERE user_id = $1 AND id = $2`, []any{j.UserID, j.ID}
	switch {
	case gone:
		sql, args = `DELETE FROM push_subscriptions WHERE user_id = $1 AND endpoint = $2`, []any{j.UserID, j.Endpoint}
	case !retry.IsZero():
		sql, args = `UPDATE push_outbox SET not_before = $3 WHERE user_id = $1 AND id = $2`, append(args, retry)
	}
	_, err := s.pool.Exec(ctx, sql, args...)
	return storeError(err)
}

// subscribe keeps the user's push subscription to endpoint with its keys: created
// is false when the endpoint was held already (its keys are replaced), and
// errSubscriptionLimit refuses one more than most. The user's advisory lock makes
// two subscribes take turns, so that the count holds.
func (s *store) subscribe(ctx context.Context, q querier, userID, endpoint, p256dh, auth string, most int) (created bool, err error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_advisory_xact_lock(hashtextextended($1, 7031945863))`, userID)
	b.Queue(`INSERT INTO push_subscriptions (user_id, endpoint, p256dh, auth) SELECT $1, $2, $3, $4
		WHERE (SELECT count(*) FROM push_subscriptions WHERE user_id = $1 AND endpoint <> $2) < $5
		ON CONFLICT (user_id, endpoint) DO UPDATE SET p256dh = EXCLUDED.p256dh, auth = EXCLUDED.auth
		RETURNING xmax = 0`, userID, endpoint, p256dh, auth, most).QueryRow(func(row pgx.Row) error { return row.Scan(&created) })
	err = storeError(q.SendBatch(ctx, b).Close())
	if errors.Is(err, errNotFound) {
		err = errSubscriptionLimit
	}
	return created, err
}

// unsubscribe deletes the user's push subscription to endpoint, if any, and its queued pushes.
func (s *store) unsubscribe(ctx context.Context, q querier, userID, endpoint string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	_, err := q.Exec(ctx, `DELETE FROM push_subscriptions WHERE user_id = $1 AND endpoint = $2`, userID, endpoint)
	return storeError(err)
}
