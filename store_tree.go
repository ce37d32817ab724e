// store_tree.go holds the store's statements that place a task in the tree (a create, a move), renumber a sibling group, and complete or reopen a task with its family.
package main

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// treeSQL is a statement of the tree in its two forms: for the top level, and
// under a parent. Their SQL of being a child of the parent differs (NULL's is not
// a comparison), so that each finds its siblings in tasks_sibling_position, and
// only a task going under a parent is held to the rules of depth, cycles and
// recurrence (parentRules), which read the parent's ancestry and the subtree.
type treeSQL [2]string

// newTreeSQL makes statement's two forms, in which :siblings is the SQL of being
// a child of the parent, :rules and :refusals parentRules' parts, and :task,
// :parent and :after stand for task (SQL: a parameter, or 0 for a new task),
// parent and after (parameters).
func newTreeSQL(statement, task, parent, after string) treeSQL {
	form := func(siblings, rules, refusals string) string {
		s := strings.NewReplacer(":siblings", siblings, ":rules", rules, ":refusals", refusals).Replace(statement)
		return strings.NewReplacer(":task", task, ":parent", parent, ":after", after).Replace(s)
	}
	return treeSQL{form(`parent_id IS NULL AND :parent::bigint IS NULL`, "", ""), form(`parent_id = :parent`, parentRules[0], parentRules[1])}
}

// under is the form for parent (nil: the top level).
func (s treeSQL) under(parent *int64) string {
	if parent == nil {
		return s[0]
	}
	return s[1]
}

// parentRules are the CTEs and the refusals of placeSQL for a task going under
// :parent: up is the parent's ancestry, down the subtree. An open task does not go
// under a completed one, whose subtasks completing it completed.
var parentRules = [2]string{`up AS (SELECT id, parent_id, recurrence, completed FROM tasks WHERE user_id = $1 AND id = :parent
		UNION SELECT t.id, t.parent_id, t.recurrence, t.completed FROM up, tasks t WHERE t.user_id = $1 AND t.id = up.parent_id),
	down AS (SELECT id, recurrence, 1 AS level FROM tasks WHERE user_id = $1 AND id = :task
		UNION ALL SELECT t.id, t.recurrence, level + 1 FROM down, tasks t WHERE t.user_id = $1 AND t.parent_id = down.id AND level < 4),`, `
		WHEN NOT EXISTS (SELECT FROM up) THEN 'parent'
		WHEN EXISTS (SELECT FROM up WHERE id = :task) THEN 'cycle'
		WHEN (SELECT count(*) FROM up) + (SELECT coalesce(max(level), 1) FROM down) > 4 THEN 'depth'
		WHEN EXISTS (SELECT FROM up WHERE id = :parent AND recurrence IS NOT NULL) THEN 'recurring parent'
		WHEN EXISTS (SELECT FROM down WHERE level = 1 AND recurrence IS NOT NULL) THEN 'recurring'
		WHEN EXISTS (SELECT FROM up WHERE id = :parent AND completed) AND NOT EXISTS (SELECT FROM tasks
			WHERE user_id = $1 AND id = :task AND completed) THEN 'completed parent'`}

// placeSQL reads how to put the user's ($1) :task with its subtree under :parent
// (NULL: the top) right after its sibling :after (NULL: first). place holds why
// it cannot (refusal: a key of treeRefusals, or "full": no position is left
// between :after and the next sibling) and its position after :after's (NULL for
// first: task_position_first of the write's own version). It reads the tree on
// the statement's snapshot: a write uses it under the user's lock, or with
// freshVersion.
const placeSQL = `WITH RECURSIVE :rules
	after AS (SELECT position, (SELECT position FROM tasks WHERE user_id = $1 AND :siblings AND position > a.position AND id <> :task
			ORDER BY parent_id, position LIMIT 1) AS next FROM tasks AS a WHERE user_id = $1 AND id = :after AND id <> :task AND parent_id IS NOT DISTINCT FROM :parent),
	gap AS (SELECT task_position_between(position, next) AS position FROM after),
	place AS (SELECT CASE :refusals
		WHEN :after::bigint IS NOT NULL AND NOT EXISTS (SELECT FROM after) THEN 'after'
		WHEN :after::bigint IS NOT NULL AND (SELECT position FROM gap) IS NULL THEN 'full' END AS refusal, (SELECT position FROM gap) AS position)`

// Statements of the tree, each in its two forms (treeSQL). createInTreeSQL takes
// createSQL's parameters, then the parent and the sibling after; moveSQL the user,
// the task, the parent, the sibling after, and If-Match; placeRefusal the first
// four of moveSQL's; renumberSQL the user, the parent and the sibling after.
var (
	createInTreeSQL = newTreeSQL(placeSQL+`,
		slot AS (UPDATE task_counts SET n = n + 1, version = version + 1 WHERE user_id = $1 AND n < $8 AND `+freshVersion("$1")+`
			AND (SELECT refusal FROM place) IS NULL RETURNING version) `+
		insertTask(":parent", "coalesce((SELECT position FROM place), task_position_first(version))"), "0", "$13", "$14")
	moveSQL = newTreeSQL(placeSQL+`,
		next AS (UPDATE task_counts SET version = version + 1 WHERE user_id = $1 AND `+freshVersion("$1")+` AND (SELECT refusal FROM place) IS NULL
			AND EXISTS (SELECT FROM tasks WHERE id = $2 AND user_id = $1 AND ($5::bigint[] IS NULL OR version = ANY($5))) RETURNING version AS v)
		UPDATE tasks SET version = v, updated_at = now(), parent_id = $3, position = coalesce((SELECT position FROM place), task_position_first(v))
		FROM next WHERE id = $2 AND user_id = $1 RETURNING `+taskColumns, "$2", "$3", "$4")
	placeRefusal = newTreeSQL(placeSQL+` SELECT refusal FROM place`, "$2", "$3", "$4")
	// renumberSQL gives the tasks of a group up to :after new positions in their
	// order, and each a version of its own: task_position_first of versions counted
	// down from the first, so that each is before every position the group held, and
	// :after's is far from the next's.
	renumberSQL = newTreeSQL(`WITH ranked AS (SELECT id, row_number() OVER (ORDER BY position DESC) AS r FROM tasks
			WHERE user_id = $1 AND :siblings AND position <= (SELECT position FROM tasks WHERE user_id = $1 AND id = :after)),
		bumped AS (UPDATE task_counts SET version = version + (SELECT count(*) FROM ranked) WHERE user_id = $1
			RETURNING version - (SELECT count(*) FROM ranked) AS base)
		UPDATE tasks SET version = base + r, position = task_position_first(base + r) FROM ranked, bumped WHERE user_id = $1 AND tasks.id = ranked.id`, "", "$2", "$3")
)

// leaf is true for the user's ($2) task $1 without subtasks (updateTreeSQL, toggleSQL).
const leaf = `NOT EXISTS (SELECT FROM tasks c WHERE c.user_id = $2 AND c.parent_id = $1)`

// freshVersion is true while no other write of the user has committed since the
// statement's snapshot was taken: in a write's UPDATE of task_counts, which waits
// for the user's row lock, then sees the row as that write left it.
func freshVersion(user string) string {
	return `task_counts.version = (SELECT version FROM task_counts WHERE user_id = ` + user + `)`
}

// treeRefusals are the 422s of a create or a move that placeSQL refuses, by refusal.
var treeRefusals = map[string]error{
	"parent":           validationError{{[]any{"body", "parent_id"}, "Input should be the id of one of your tasks, or null", "value_error"}},
	"cycle":            validationError{{[]any{"body", "parent_id"}, "A task cannot go under itself or one of its subtasks", "value_error"}},
	"depth":            validationError{{[]any{"body", "parent_id"}, "Tasks nest at most 4 levels deep: a top-level task and three below it", "value_error"}},
	"recurring parent": validationError{{[]any{"body", "parent_id"}, "A recurring task cannot have subtasks", "value_error"}},
	"recurring":        validationError{{[]any{"body", "parent_id"}, "A recurring task cannot be a subtask", "value_error"}},
	"completed parent": validationError{{[]any{"body", "parent_id"}, "An open task cannot go under a completed one: reopen it first", "value_error"}},
	"after":            validationError{{[]any{"body", "after"}, "Input should be the id of another task under parent_id, or null", "value_error"}},
}

// errRecurringParent refuses recurrence to a task that has subtasks.
var errRecurringParent = validationError{{[]any{"body", "recurrence"}, "A task with subtasks cannot repeat: move them out first", "value_error"}}

// createTask inserts a task for the user, first among the top-level tasks, unless
// they hold maxTasks already (errTaskLimit), in one statement: the user's count goes
// up only while below the limit, and its row lock makes one user's creates take
// turns. A create under a parent or after a sibling is createInTree's.
func (s *store) createTask(ctx context.Context, q querier, userID string, c taskChange, maxTasks int) (Task, error) {
	dueAt, dueKind := dueColumns(c.DueDate)
	args := []any{userID, *c.Title, c.Description, c.Priority, dueAt, dueKind, c.Tags, maxTasks, c.Recurrence, c.RecurFrom, c.Timezone, c.Reminders}
	if c.ParentID != nil || c.After != nil {
		return s.createInTree(ctx, q, userID, c, append(args, c.ParentID, c.After))
	}
	t, err := s.one(ctx, q, createSQL, args...)
	if errors.Is(err, errNotFound) { // no slot, so no task
		err = errTaskLimit
	}
	return t, err
}

// createSQL is createTask's statement: $1 the user, $2 to $12 the fields as it sends them.
var createSQL = `WITH slot AS (INSERT INTO task_counts (user_id, n, version) VALUES ($1, 1, 1)
		ON CONFLICT (user_id) DO UPDATE SET n = task_counts.n + 1, version = task_counts.version + 1
		WHERE task_counts.n < $8 RETURNING version) ` + insertTask("NULL", "task_position_first(version)")

// insertTask inserts a task as createTask's statements do, after a CTE slot that
// gives its version, under parent (SQL) at position (SQL).
func insertTask(parent, position string) string {
	return `INSERT INTO tasks (user_id, version, title, description, priority, due_date, due_kind, tags, recurrence, recur_from, timezone, reminders, parent_id, position)
		SELECT $1, version, $2::text, $3::text, coalesce($4::text, 'medium'), $5::timestamptz, $6::text, coalesce($7::text[], '{}'),
			$9::text, coalesce($10::text, 'due'), $11::text, nullif($12::text, '[]')::json, ` + parent + `, ` + position + ` FROM slot
		RETURNING ` + taskColumns
}

// createInTree is createTask for a task under c.ParentID, or after c.After, with
// args createInTreeSQL's: one statement, or, when it wrote nothing (a refusal, the
// limit, or another write of the user in between), place under the user's lock.
func (s *store) createInTree(ctx context.Context, q querier, userID string, c taskChange, args []any) (Task, error) {
	sql := createInTreeSQL.under(c.ParentID)
	t, err := s.one(ctx, q, sql, args...)
	if !errors.Is(err, errNotFound) {
		return t, err
	}
	anchor, missing := c.After, treeRefusals["after"] // the task the new one hangs on
	if c.ParentID != nil {
		anchor, missing = c.ParentID, treeRefusals["parent"]
	}
	t, err = s.place(ctx, q, userID, *anchor, nil, errTaskLimit, c.ParentID, sql, args, []any{userID, int64(0), c.ParentID, c.After})
	if errors.Is(err, errNotFound) {
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
	// place checks If-Match under the lock, so its statement does not: a renumbering it runs first may move the task's own version.
	return s.place(ctx, q, userID, id, ifMatch, errNotFound, to.ParentID, sql, append(args[:4:4], nil), args[:4])
}

// place runs sql, createInTreeSQL's or moveSQL's with args, which wrote nothing on
// q, again under the user's lock, where it reads the tree as every earlier write of
// the user left it, after checking If-Match on the task anchor as it is there
// (errNotFound if the user has none). If the positions under parent ran out after
// the sibling after, it renumbers those up to it first; if placeRefusal (with
// placeArgs) refuses, it answers treeRefusals' error; if neither, none.
func (s *store) place(ctx context.Context, q querier, userID string, anchor int64, ifMatch []int64, none error, parent *int64, sql string, args, placeArgs []any) (t Task, err error) {
	err = s.locked(ctx, q, userID, anchor, func(tx querier, current Task) error {
		if ifMatch != nil && !slices.Contains(ifMatch, current.Version) {
			return &staleError{Current: current}
		}
		for range 2 { // renumbered once, the task fits
			if t, err = s.one(ctx, tx, sql, args...); !errors.Is(err, errNotFound) {
				return err
			}
			rows, _ := tx.Query(ctx, placeRefusal.under(parent), placeArgs...)
			refusal, readErr := pgx.CollectOneRow(rows, pgx.RowTo[*string])
			switch {
			case readErr != nil:
				return readErr
			case refusal == nil:
				return none
			case *refusal != "full":
				return treeRefusals[*refusal]
			}
			rows, _ = tx.Query(ctx, renumberSQL.under(parent), userID, parent, placeArgs[3])
			if rows.Close(); rows.Err() != nil {
				return rows.Err()
			}
		}
		return none
	})
	return t, err
}

// completeSQL sets completed to $3 on the user's ($2) task $1: completing it
// completes its open descendants, reopening it reopens its completed ancestors,
// each with a version of its own. It reads the tree on its snapshot, so it runs
// under the user's lock (completeSeries, for the writes versioned leaves to it).
const completeSQL = `WITH RECURSIVE target AS (SELECT id, parent_id, completed FROM tasks WHERE id = $1 AND user_id = $2),
	down AS (SELECT t.id, t.completed FROM target, tasks t WHERE $3 AND NOT target.completed AND t.user_id = $2 AND t.parent_id = target.id
		UNION SELECT t.id, t.completed FROM down, tasks t WHERE t.user_id = $2 AND t.parent_id = down.id),
	up AS (SELECT t.id, t.parent_id, t.completed FROM target, tasks t WHERE NOT $3 AND target.completed AND t.user_id = $2 AND t.id = target.parent_id
		UNION SELECT t.id, t.parent_id, t.completed FROM up, tasks t WHERE t.user_id = $2 AND t.id = up.parent_id),
	family AS (SELECT id, row_number() OVER () AS i FROM (SELECT id, completed FROM down UNION ALL SELECT id, completed FROM up) AS f
		WHERE completed <> $3),
	next AS (UPDATE task_counts SET version = version + 1 + (SELECT count(*) FROM family)
		WHERE user_id = $2 AND EXISTS (SELECT FROM target) RETURNING version AS v),
	others AS (UPDATE tasks SET version = v - i, updated_at = now(), completed = $3, completed_at = CASE WHEN $3 THEN now() END
		FROM family, next WHERE tasks.user_id = $2 AND tasks.id = family.id)
	UPDATE tasks SET version = v, updated_at = now(), completed = $3, completed_at = CASE WHEN completed = $3 THEN completed_at WHEN $3 THEN now() END
	FROM next WHERE id = $1 AND user_id = $2 RETURNING ` + taskColumns

// setCompleted sets the user's task id completed (done) or open, and its family
// with it (completeSQL); under the user's lock.
func (s *store) setCompleted(ctx context.Context, tx querier, userID string, id int64, done bool) (Task, error) {
	return s.one(ctx, tx, completeSQL, id, userID, done)
}
