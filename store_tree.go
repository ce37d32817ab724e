// store_tree.go holds the store's statements of the task tree: placing a task (a create, a move), renumbering a sibling group, and what completing or reopening a task does to its family.
package main

import (
	"context"
	"errors"
	"slices"

	"github.com/jackc/pgx/v5"
)

// treeSQL is a statement of the tree in its two forms: for the top level, and
// under a parent. Their SQL of being a child of the parent differs (NULL's is not
// a comparison), so that each finds its siblings in tasks_sibling_position.
type treeSQL [2]string

// newTreeSQL makes statement's two forms, with the parent the parameter $n.
func newTreeSQL(statement func(siblings string) string, n string) treeSQL {
	return treeSQL{statement(`parent_id IS NULL AND $` + n + `::bigint IS NULL`), statement(`parent_id = $` + n)}
}

// under is the form for parent (nil: the top level).
func (s treeSQL) under(parent *int64) string {
	if parent == nil {
		return s[0]
	}
	return s[1]
}

// placeSQL reads how to put the user's ($1) task $2 (0 for a new one) with its
// subtree under parent $3 (NULL: the top; in siblings, its SQL), right after its
// sibling $4 (NULL: first). place holds why it cannot (refusal, a key of
// treeRefusals, or "full": no position is left between $4 and the next sibling)
// and its position, after $4's (NULL for first: task_position_first of the write's own
// version). It reads the tree on the statement's snapshot: a write must use it
// only under the user's lock, or with the version guard (createSQL, moveSQL).
func placeSQL(siblings string) string {
	return `WITH RECURSIVE up AS (SELECT id, parent_id, recurrence FROM tasks WHERE user_id = $1 AND id = $3
			UNION SELECT t.id, t.parent_id, t.recurrence FROM up, tasks t WHERE t.user_id = $1 AND t.id = up.parent_id),
		down AS (SELECT id, recurrence, 1 AS level FROM tasks WHERE user_id = $1 AND id = $2
			UNION ALL SELECT t.id, t.recurrence, level + 1 FROM down, tasks t WHERE t.user_id = $1 AND t.parent_id = down.id AND level < 4),
		after AS (SELECT position, (SELECT position FROM tasks WHERE user_id = $1 AND ` + siblings + ` AND position > a.position AND id <> $2
				ORDER BY parent_id, position LIMIT 1) AS next FROM tasks AS a WHERE user_id = $1 AND id = $4 AND id <> $2 AND parent_id IS NOT DISTINCT FROM $3),
		gap AS (SELECT task_position_between(position, next) AS position FROM after),
		place AS (SELECT CASE
			WHEN $3::bigint IS NOT NULL AND NOT EXISTS (SELECT FROM up) THEN 'parent'
			WHEN EXISTS (SELECT FROM up WHERE id = $2) THEN 'cycle'
			WHEN (SELECT count(*) FROM up) + (SELECT coalesce(max(level), 1) FROM down) > 4 THEN 'depth'
			WHEN EXISTS (SELECT FROM up WHERE id = $3 AND recurrence IS NOT NULL) THEN 'recurring parent'
			WHEN $3::bigint IS NOT NULL AND EXISTS (SELECT FROM down WHERE level = 1 AND recurrence IS NOT NULL) THEN 'recurring'
			WHEN $4::bigint IS NOT NULL AND NOT EXISTS (SELECT FROM after) THEN 'after'
			WHEN $4::bigint IS NOT NULL AND (SELECT position FROM gap) IS NULL THEN 'full' END AS refusal, (SELECT position FROM gap) AS position)`
}

// Statements of the tree, each in its two forms (treeSQL).
var (
	placeRefusal = newTreeSQL(func(siblings string) string { return placeSQL(siblings) + ` SELECT refusal FROM place` }, "3")
	createSQL    = newTreeSQL(createStatement, "3")
	moveSQL      = newTreeSQL(moveStatement, "3")
	renumberSQL  = newTreeSQL(renumberStatement, "2")
)

// freshVersion is true while no other write of the user ($1) has committed since
// the statement's snapshot was taken: in a write's UPDATE of task_counts, which
// waits for the user's row lock and then sees the row as that write left it.
const freshVersion = `task_counts.version = (SELECT version FROM task_counts WHERE user_id = $1)`

// createStatement inserts a task as createTask tells, first among its siblings
// or after $4, with $5 to $15 its fields and maxTasks: a create under a parent or
// after a sibling reads the tree, so it writes only if no other write of the
// user came between its snapshot and its lock (freshVersion).
func createStatement(siblings string) string {
	return placeSQL(siblings) + `,
		slot AS (INSERT INTO task_counts (user_id, n, version) SELECT $1, 1, 1 WHERE (SELECT refusal FROM place) IS NULL
			ON CONFLICT (user_id) DO UPDATE SET n = task_counts.n + 1, version = task_counts.version + 1
			WHERE task_counts.n < $11 AND (SELECT refusal FROM place) IS NULL AND ($3::bigint IS NULL AND $4::bigint IS NULL OR ` + freshVersion + `)
			RETURNING version)
		INSERT INTO tasks (user_id, version, title, description, priority, due_date, due_kind, tags, recurrence, recur_from, timezone, reminders, parent_id, position)
		SELECT $1, version, $5::text, $6::text, coalesce($7::text, 'medium'), $8::timestamptz, $9::text, coalesce($10::text[], '{}'),
			$12::text, coalesce($13::text, 'due'), $14::text, nullif($15::text, '[]')::json, $3, coalesce((SELECT position FROM place), task_position_first(version))
		FROM slot RETURNING ` + taskColumns
}

// moveStatement moves the user's task $2, if its version is one of $5 (If-Match; NULL
// for any), as placeSQL places it: one row, unless no other write of the user
// came between its snapshot and its lock (freshVersion).
func moveStatement(siblings string) string {
	return placeSQL(siblings) + `,
		next AS (UPDATE task_counts SET version = version + 1 WHERE user_id = $1 AND ` + freshVersion + ` AND (SELECT refusal FROM place) IS NULL
			AND EXISTS (SELECT FROM tasks WHERE id = $2 AND user_id = $1 AND ($5::bigint[] IS NULL OR version = ANY($5))) RETURNING version AS v)
		UPDATE tasks SET version = v, updated_at = now(), parent_id = $3, position = coalesce((SELECT position FROM place), task_position_first(v))
		FROM next WHERE id = $2 AND user_id = $1 RETURNING ` + taskColumns
}

// renumberStatement gives the user's ($1) tasks under parent $2 new positions in their
// order, and each a version of its own: task_position_first of versions counted down
// from the first, so that each is before every position the group held.
func renumberStatement(siblings string) string {
	return `WITH ranked AS (SELECT id, row_number() OVER (ORDER BY position DESC) AS r FROM tasks WHERE user_id = $1 AND ` + siblings + `),
		bumped AS (UPDATE task_counts SET version = version + (SELECT count(*) FROM ranked) WHERE user_id = $1
			RETURNING version - (SELECT count(*) FROM ranked) AS base)
		UPDATE tasks SET version = base + r, position = task_position_first(base + r) FROM ranked, bumped WHERE user_id = $1 AND tasks.id = ranked.id`
}

// treeRefusals are the 422s of a create or a move that placeSQL refuses, by refusal.
var treeRefusals = map[string]error{
	"parent":           validationError{{[]any{"body", "parent_id"}, "Input should be the id of one of your tasks, or null", "value_error"}},
	"cycle":            validationError{{[]any{"body", "parent_id"}, "A task cannot go under itself or one of its subtasks", "value_error"}},
	"depth":            validationError{{[]any{"body", "parent_id"}, "Tasks nest at most 4 levels deep: a top-level task and three below it", "value_error"}},
	"recurring parent": validationError{{[]any{"body", "parent_id"}, "A recurring task cannot have subtasks", "value_error"}},
	"recurring":        validationError{{[]any{"body", "parent_id"}, "A recurring task cannot be a subtask", "value_error"}},
	"after":            validationError{{[]any{"body", "after"}, "Input should be the id of another task under parent_id, or null", "value_error"}},
}

// errRecurringParent refuses recurrence to a task that has subtasks.
var errRecurringParent = validationError{{[]any{"body", "recurrence"}, "A task with subtasks cannot repeat: move them out first", "value_error"}}

// createTask inserts a task for the user, first among its siblings (under
// c.ParentID) or right after c.After, unless they hold maxTasks already
// (errTaskLimit) or the tree forbids it (treeRefusals), in one statement: the
// user's count goes up only while below the limit, and its row lock makes one
// user's creates take turns. When a create in the tree wrote nothing (a refusal,
// the limit, or another write in between), place runs it under the lock.
func (s *store) createTask(ctx context.Context, q querier, userID string, c taskChange, maxTasks int) (Task, error) {
	dueAt, dueKind := dueColumns(c.DueDate)
	sql := createSQL.under(c.ParentID)
	args := []any{userID, int64(0), c.ParentID, c.After, *c.Title, c.Description, c.Priority, dueAt, dueKind, c.Tags, maxTasks,
		c.Recurrence, c.RecurFrom, c.Timezone, c.Reminders}
	t, err := s.one(ctx, q, sql, args...)
	switch {
	case !errors.Is(err, errNotFound):
		return t, err
	case c.ParentID == nil && c.After == nil: // no slot, so no task
		return t, errTaskLimit
	}
	anchor, missing := c.After, treeRefusals["after"] // the task the new one hangs on
	if c.ParentID != nil {
		anchor, missing = c.ParentID, treeRefusals["parent"]
	}
	if t, err = s.place(ctx, q, userID, *anchor, nil, errTaskLimit, c.ParentID, sql, args); errors.Is(err, errNotFound) {
		err = missing
	}
	return t, err
}

// moveTask puts the user's task id, with its subtree, under parent (nil: the top)
// right after its sibling after (nil: first), if its version is one of ifMatch (nil:
// any); errNotFound if the user has no task id, *staleError if ifMatch names none of
// its versions, one of treeRefusals if the tree forbids it. It writes the task's row
// alone, unless the group's positions ran out between after and the next sibling.
func (s *store) moveTask(ctx context.Context, q querier, userID string, id int64, to taskChange, ifMatch []int64) (Task, error) {
	sql := moveSQL.under(to.ParentID)
	args := []any{userID, id, to.ParentID, to.After, ifMatch}
	t, err := s.one(ctx, q, sql, args...)
	if !errors.Is(err, errNotFound) {
		return t, err
	}
	return s.place(ctx, q, userID, id, ifMatch, errNotFound, to.ParentID, sql, args)
}

// place runs sql, createSQL or moveSQL with args, which wrote nothing on q, again
// under the user's lock, where it reads the tree as every earlier write of the user
// left it, after checking If-Match on the task anchor as it is there (errNotFound if
// the user has none). If the positions under parent ran out, it renumbers them first;
// if placeSQL refuses, it answers treeRefusals' error; if neither, none.
func (s *store) place(ctx context.Context, q querier, userID string, anchor int64, ifMatch []int64, none error, parent *int64, sql string, args []any) (t Task, err error) {
	err = s.locked(ctx, q, userID, anchor, func(tx querier, current Task) error {
		if ifMatch != nil && !slices.Contains(ifMatch, current.Version) {
			return &staleError{Current: current}
		}
		for range 2 { // renumbered once, the task fits
			if t, err = s.one(ctx, tx, sql, args...); !errors.Is(err, errNotFound) {
				return err
			}
			rows, _ := tx.Query(ctx, placeRefusal.under(parent), args[:4]...)
			refusal, readErr := pgx.CollectOneRow(rows, pgx.RowTo[*string])
			switch {
			case readErr != nil:
				return readErr
			case refusal == nil:
				return none
			case *refusal != "full":
				return treeRefusals[*refusal]
			}
			rows, _ = tx.Query(ctx, renumberSQL.under(parent), userID, parent)
			if rows.Close(); rows.Err() != nil {
				return rows.Err()
			}
		}
		return none
	})
	return t, err
}

// cascaded is the statement of a write that sets set on the user's ($2) task that
// matches where and moves the version, and that may complete or reopen the task:
// done is its completed after the write, as SQL of its row. Completing it completes
// its open descendants; reopening it reopens its completed ancestors; each with a
// version of its own. Those are read on the statement's snapshot: unless calm (SQL,
// true when the write can change neither), it writes only if no other write of the
// user came between that snapshot and its lock (freshVersion), else nothing, and
// store.missed sends it to completeSeries, which runs it under the lock.
func cascaded(where, set, done, calm string) string {
	return `WITH RECURSIVE target AS (SELECT id, parent_id, completed, ` + done + ` AS done FROM tasks WHERE ` + where + `),
		down AS (SELECT t.id, t.completed FROM target, tasks t WHERE target.done AND NOT target.completed AND t.user_id = $2 AND t.parent_id = target.id
			UNION SELECT t.id, t.completed FROM down, tasks t WHERE t.user_id = $2 AND t.parent_id = down.id),
		up AS (SELECT t.id, t.parent_id, t.completed FROM target, tasks t WHERE target.completed AND NOT target.done AND t.user_id = $2 AND t.id = target.parent_id
			UNION SELECT t.id, t.parent_id, t.completed FROM up, tasks t WHERE t.user_id = $2 AND t.id = up.parent_id),
		family AS (SELECT id, row_number() OVER () AS i FROM (SELECT id, completed FROM down UNION ALL SELECT id, completed FROM up) AS f
			WHERE completed <> (SELECT done FROM target)),
		next AS (UPDATE task_counts SET version = version + 1 + (SELECT count(*) FROM family)
			WHERE user_id = $2 AND EXISTS (SELECT FROM target) AND (` + calm + ` OR task_counts.version = (SELECT version FROM task_counts WHERE user_id = $2))
			RETURNING version AS v),
		others AS (UPDATE tasks SET version = v - i, updated_at = now(), completed = NOT completed,
			completed_at = CASE WHEN completed THEN NULL ELSE now() END FROM family, next WHERE tasks.user_id = $2 AND tasks.id = family.id)
		UPDATE tasks SET version = next.v, updated_at = now(), ` + set + ` FROM next WHERE ` + where + ` RETURNING ` + taskColumns
}
