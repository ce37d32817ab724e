-- PUT /api/{user_id}/tasks/{id}: store.updateTask with title and description set
\set u random(1, :users)
\set id (:u - 1) * :tasks + random(1, :tasks)
WITH next AS (UPDATE task_counts SET version = version + 1
        WHERE user_id = 'bench-u' || lpad(:u::text, 5, '0') AND EXISTS (SELECT FROM tasks WHERE tasks.id = :id AND tasks.user_id = 'bench-u' || lpad(:u::text, 5, '0') AND (NULL::bigint[]::bigint[] IS NULL OR tasks.version = ANY(NULL::bigint[]))) RETURNING version AS v)
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
    reminders    = CASE WHEN NULL::text::text IS NULL THEN reminders ELSE nullif(NULL::text::text, '[]')::json END FROM next WHERE tasks.id = :id AND tasks.user_id = 'bench-u' || lpad(:u::text, 5, '0') AND (NULL::bigint[]::bigint[] IS NULL OR tasks.version = ANY(NULL::bigint[])) RETURNING id, user_id, title, description, completed, priority, due_date, tags, created_at, updated_at,
    due_kind, completed_at, version, recurrence, recur_from, timezone, reminders, next_reminder_at, parent_id, position;
