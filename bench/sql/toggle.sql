-- PATCH /api/{user_id}/tasks/{id}/complete: store.toggleTask
\set u random(1, :users)
\set id (:u - 1) * :tasks + random(1, :tasks)
WITH RECURSIVE target AS (SELECT id, parent_id, completed, NOT completed AS done FROM tasks WHERE tasks.id = :id AND tasks.user_id = 'bench-u' || lpad(:u::text, 5, '0') AND (NULL::bigint[]::bigint[] IS NULL OR tasks.version = ANY(NULL::bigint[])) AND (tasks.recurrence IS NULL OR tasks.completed)),
        down AS (SELECT t.id, t.completed FROM target, tasks t WHERE target.done AND NOT target.completed AND t.user_id = 'bench-u' || lpad(:u::text, 5, '0') AND t.parent_id = target.id
            UNION SELECT t.id, t.completed FROM down, tasks t WHERE t.user_id = 'bench-u' || lpad(:u::text, 5, '0') AND t.parent_id = down.id),
        up AS (SELECT t.id, t.parent_id, t.completed FROM target, tasks t WHERE target.completed AND NOT target.done AND t.user_id = 'bench-u' || lpad(:u::text, 5, '0') AND t.id = target.parent_id
            UNION SELECT t.id, t.parent_id, t.completed FROM up, tasks t WHERE t.user_id = 'bench-u' || lpad(:u::text, 5, '0') AND t.id = up.parent_id),
        family AS (SELECT id, row_number() OVER () AS i FROM (SELECT id, completed FROM down UNION ALL SELECT id, completed FROM up) AS f
            WHERE completed <> (SELECT done FROM target)),
        next AS (UPDATE task_counts SET version = version + 1 + (SELECT count(*) FROM family)
            WHERE user_id = 'bench-u' || lpad(:u::text, 5, '0') AND EXISTS (SELECT FROM target) AND (false OR task_counts.version = (SELECT version FROM task_counts WHERE user_id = 'bench-u' || lpad(:u::text, 5, '0')))
            RETURNING version AS v),
        others AS (UPDATE tasks SET version = v - i, updated_at = now(), completed = NOT completed,
            completed_at = CASE WHEN completed THEN NULL ELSE now() END FROM family, next WHERE tasks.user_id = 'bench-u' || lpad(:u::text, 5, '0') AND tasks.id = family.id)
        UPDATE tasks SET version = next.v, updated_at = now(), completed = NOT completed, completed_at = CASE WHEN completed THEN NULL ELSE now() END FROM next WHERE tasks.id = :id AND tasks.user_id = 'bench-u' || lpad(:u::text, 5, '0') AND (NULL::bigint[]::bigint[] IS NULL OR tasks.version = ANY(NULL::bigint[])) AND (tasks.recurrence IS NULL OR tasks.completed) RETURNING id, user_id, title, description, completed, priority, due_date, tags, created_at, updated_at,
    due_kind, completed_at, version, recurrence, recur_from, timezone, reminders, next_reminder_at, parent_id, position;
