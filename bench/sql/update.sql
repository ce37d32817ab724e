-- PUT /api/{user_id}/tasks/{id}: store.updateTask with title and description set
\set u random(1, :users)
\set id (:u - 1) * :tasks + random(1, :tasks)
WITH RECURSIVE target AS (SELECT id, parent_id, completed, coalesce(NULL::boolean, completed) AS done FROM tasks WHERE tasks.id = :id AND tasks.user_id = 'bench-u' || lpad(:u::text, 5, '0') AND (NULL::bigint[]::bigint[] IS NULL OR tasks.version = ANY(NULL::bigint[])) AND (tasks.recurrence IS NULL OR tasks.completed OR NULL::boolean IS NOT TRUE)
    AND (NULL::text IS NULL OR NOT EXISTS (SELECT FROM tasks c WHERE c.user_id = 'bench-u' || lpad(:u::text, 5, '0') AND c.parent_id = :id))),
        down AS (SELECT t.id, t.completed FROM target, tasks t WHERE target.done AND NOT target.completed AND t.user_id = 'bench-u' || lpad(:u::text, 5, '0') AND t.parent_id = target.id
            UNION SELECT t.id, t.completed FROM down, tasks t WHERE t.user_id = 'bench-u' || lpad(:u::text, 5, '0') AND t.parent_id = down.id),
        up AS (SELECT t.id, t.parent_id, t.completed FROM target, tasks t WHERE target.completed AND NOT target.done AND t.user_id = 'bench-u' || lpad(:u::text, 5, '0') AND t.id = target.parent_id
            UNION SELECT t.id, t.parent_id, t.completed FROM up, tasks t WHERE t.user_id = 'bench-u' || lpad(:u::text, 5, '0') AND t.id = up.parent_id),
        family AS (SELECT id, row_number() OVER () AS i FROM (SELECT id, completed FROM down UNION ALL SELECT id, completed FROM up) AS f
            WHERE completed <> (SELECT done FROM target)),
        next AS (UPDATE task_counts SET version = version + 1 + (SELECT count(*) FROM family)
            WHERE user_id = 'bench-u' || lpad(:u::text, 5, '0') AND EXISTS (SELECT FROM target) AND (NULL::boolean IS NULL AND NULL::text IS NULL OR task_counts.version = (SELECT version FROM task_counts WHERE user_id = 'bench-u' || lpad(:u::text, 5, '0')))
            RETURNING version AS v),
        others AS (UPDATE tasks SET version = v - i, updated_at = now(), completed = NOT completed,
            completed_at = CASE WHEN completed THEN NULL ELSE now() END FROM family, next WHERE tasks.user_id = 'bench-u' || lpad(:u::text, 5, '0') AND tasks.id = family.id)
        UPDATE tasks SET version = next.v, updated_at = now(),
    title        = coalesce('Updated under load', title),
    description  = CASE WHEN false THEN NULL ELSE coalesce('changed by pgbench', description) END,
    completed    = coalesce(NULL::boolean, completed),
    completed_at = CASE WHEN NULL::boolean IS NULL OR NULL::boolean = completed THEN completed_at WHEN NULL::boolean THEN now() END,
    priority     = coalesce(NULL, priority),
    due_date     = CASE WHEN false THEN NULL ELSE coalesce(NULL, due_date) END,
    due_kind     = CASE WHEN false THEN NULL ELSE coalesce(NULL, due_kind) END,
    tags         = coalesce(NULL, tags),
    recurrence   = CASE WHEN false THEN NULL ELSE coalesce(NULL, recurrence) END,
    recur_from   = coalesce(NULL, recur_from),
    timezone     = CASE WHEN false THEN NULL ELSE coalesce(NULL, timezone) END,
    reminders    = CASE WHEN NULL::text::text IS NULL THEN reminders ELSE nullif(NULL::text::text, '[]')::json END FROM next WHERE tasks.id = :id AND tasks.user_id = 'bench-u' || lpad(:u::text, 5, '0') AND (NULL::bigint[]::bigint[] IS NULL OR tasks.version = ANY(NULL::bigint[])) AND (tasks.recurrence IS NULL OR tasks.completed OR NULL::boolean IS NOT TRUE)
    AND (NULL::text IS NULL OR NOT EXISTS (SELECT FROM tasks c WHERE c.user_id = 'bench-u' || lpad(:u::text, 5, '0') AND c.parent_id = :id)) RETURNING id, user_id, title, description, completed, priority, due_date, tags, created_at, updated_at,
    due_kind, completed_at, version, recurrence, recur_from, timezone, reminders, next_reminder_at, parent_id, position;
