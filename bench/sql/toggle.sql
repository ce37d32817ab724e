-- PATCH /api/{user_id}/tasks/{id}/complete: store.toggleTask
\set u random(1, :users)
\set id (:u - 1) * :tasks + random(1, :tasks)
WITH next AS (UPDATE task_counts SET version = version + 1
        WHERE user_id = 'bench-u' || lpad(:u::text, 5, '0') AND EXISTS (SELECT FROM tasks WHERE tasks.id = :id AND tasks.user_id = 'bench-u' || lpad(:u::text, 5, '0') AND (NULL::bigint[]::bigint[] IS NULL OR tasks.version = ANY(NULL::bigint[])) AND (tasks.recurrence IS NULL OR tasks.completed)
    AND (tasks.completed AND tasks.parent_id IS NULL OR NOT tasks.completed AND NOT EXISTS (SELECT FROM tasks c WHERE c.user_id = 'bench-u' || lpad(:u::text, 5, '0') AND c.parent_id = :id))) AND task_counts.version = (SELECT version FROM task_counts WHERE user_id = 'bench-u' || lpad(:u::text, 5, '0')) RETURNING version AS v)
        UPDATE tasks SET version = next.v, updated_at = now(), completed = NOT completed, completed_at = CASE WHEN completed THEN NULL ELSE now() END FROM next WHERE tasks.id = :id AND tasks.user_id = 'bench-u' || lpad(:u::text, 5, '0') AND (NULL::bigint[]::bigint[] IS NULL OR tasks.version = ANY(NULL::bigint[])) AND (tasks.recurrence IS NULL OR tasks.completed)
    AND (tasks.completed AND tasks.parent_id IS NULL OR NOT tasks.completed AND NOT EXISTS (SELECT FROM tasks c WHERE c.user_id = 'bench-u' || lpad(:u::text, 5, '0') AND c.parent_id = :id)) RETURNING id, user_id, title, description, completed, priority, due_date, tags, created_at, updated_at,
    due_kind, completed_at, version, recurrence, recur_from, timezone, reminders, next_reminder_at, parent_id, position;
