-- POST /api/{user_id}/tasks: store.createTask without an Idempotency-Key (a top-level task)
\set u random(1, :users)
WITH RECURSIVE up AS (SELECT id, parent_id, recurrence FROM tasks WHERE user_id = 'bench-w' || lpad(:u::text, 5, '0') AND id = NULL::bigint
            UNION SELECT t.id, t.parent_id, t.recurrence FROM up, tasks t WHERE t.user_id = 'bench-w' || lpad(:u::text, 5, '0') AND t.id = up.parent_id),
        down AS (SELECT id, recurrence, 1 AS level FROM tasks WHERE user_id = 'bench-w' || lpad(:u::text, 5, '0') AND id = 0::bigint
            UNION ALL SELECT t.id, t.recurrence, level + 1 FROM down, tasks t WHERE t.user_id = 'bench-w' || lpad(:u::text, 5, '0') AND t.parent_id = down.id AND level < 4),
        after AS (SELECT position, (SELECT position FROM tasks WHERE user_id = 'bench-w' || lpad(:u::text, 5, '0') AND parent_id IS NULL AND NULL::bigint::bigint IS NULL AND position > a.position AND id <> 0::bigint
                ORDER BY parent_id, position LIMIT 1) AS next FROM tasks AS a WHERE user_id = 'bench-w' || lpad(:u::text, 5, '0') AND id = NULL::bigint AND id <> 0::bigint AND parent_id IS NOT DISTINCT FROM NULL::bigint),
        gap AS (SELECT task_position_between(position, next) AS position FROM after),
        place AS (SELECT CASE
            WHEN NULL::bigint::bigint IS NOT NULL AND NOT EXISTS (SELECT FROM up) THEN 'parent'
            WHEN EXISTS (SELECT FROM up WHERE id = 0::bigint) THEN 'cycle'
            WHEN (SELECT count(*) FROM up) + (SELECT coalesce(max(level), 1) FROM down) > 4 THEN 'depth'
            WHEN EXISTS (SELECT FROM up WHERE id = NULL::bigint AND recurrence IS NOT NULL) THEN 'recurring parent'
            WHEN NULL::bigint::bigint IS NOT NULL AND EXISTS (SELECT FROM down WHERE level = 1 AND recurrence IS NOT NULL) THEN 'recurring'
            WHEN NULL::bigint::bigint IS NOT NULL AND NOT EXISTS (SELECT FROM after) THEN 'after'
            WHEN NULL::bigint::bigint IS NOT NULL AND (SELECT position FROM gap) IS NULL THEN 'full' END AS refusal, (SELECT position FROM gap) AS position),
        slot AS (INSERT INTO task_counts (user_id, n, version) SELECT 'bench-w' || lpad(:u::text, 5, '0'), 1, 1 WHERE (SELECT refusal FROM place) IS NULL
            ON CONFLICT (user_id) DO UPDATE SET n = task_counts.n + 1, version = task_counts.version + 1
            WHERE task_counts.n < 10000 AND (SELECT refusal FROM place) IS NULL AND (NULL::bigint::bigint IS NULL AND NULL::bigint::bigint IS NULL OR task_counts.version = (SELECT version FROM task_counts WHERE user_id = 'bench-w' || lpad(:u::text, 5, '0')))
            RETURNING version)
        INSERT INTO tasks (user_id, version, title, description, priority, due_date, due_kind, tags, recurrence, recur_from, timezone, reminders, parent_id, position)
        SELECT 'bench-w' || lpad(:u::text, 5, '0'), version, 'Load task'::text, 'created under load by pgbench'::text, coalesce(NULL::text, 'medium'), NULL::timestamptz, NULL::text, coalesce(NULL::text[], '{}'),
            NULL::text, coalesce(NULL::text, 'due'), NULL::text, nullif(NULL::text, '[]')::json, NULL::bigint, coalesce((SELECT position FROM place), task_position_first(version))
        FROM slot RETURNING id, user_id, title, description, completed, priority, due_date, tags, created_at, updated_at,
    due_kind, completed_at, version, recurrence, recur_from, timezone, reminders, next_reminder_at, parent_id, position;
