-- POST /api/{user_id}/tasks: store.createTask without an Idempotency-Key (a top-level task)
\set u random(1, :users)
WITH slot AS (INSERT INTO task_counts (user_id, n, version) VALUES ('bench-w' || lpad(:u::text, 5, '0'), 1, 1)
        ON CONFLICT (user_id) DO UPDATE SET n = task_counts.n + 1, version = task_counts.version + 1
        WHERE task_counts.n < 10000 RETURNING version) INSERT INTO tasks (user_id, version, title, description, priority, due_date, due_kind, tags, recurrence, recur_from, timezone, reminders, parent_id, position)
        SELECT 'bench-w' || lpad(:u::text, 5, '0'), version, 'Load task'::text, 'created under load by pgbench'::text, coalesce(NULL::text, 'medium'), NULL::timestamptz, NULL::text, coalesce(NULL::text[], '{}'),
            NULL::text, coalesce(NULL::text, 'due'), NULL::text, nullif(NULL::text, '[]')::json, NULL, task_position_first(version) FROM slot
        RETURNING id, user_id, title, description, completed, priority, due_date, tags, created_at, updated_at,
    due_kind, completed_at, version, recurrence, recur_from, timezone, reminders, next_reminder_at, parent_id, position;
