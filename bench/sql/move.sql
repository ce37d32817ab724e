-- POST /api/{user_id}/tasks/{id}/move: store.moveTask, a top-level task right after another
\set u random(1, :users)
\set moved (:u - 1) * :tasks + random(1, :tasks)
\set anchor (:u - 1) * :tasks + 1 + (:moved - (:u - 1) * :tasks) % :tasks
WITH RECURSIVE
    after AS (SELECT position, (SELECT position FROM tasks WHERE user_id = 'bench-u' || lpad(:u::text, 5, '0') AND parent_id IS NULL AND NULL::bigint::bigint IS NULL AND position > a.position AND id <> :moved
            ORDER BY parent_id, position LIMIT 1) AS next FROM tasks AS a WHERE user_id = 'bench-u' || lpad(:u::text, 5, '0') AND id = :anchor AND id <> :moved AND parent_id IS NOT DISTINCT FROM NULL::bigint),
    gap AS (SELECT task_position_between(position, next) AS position FROM after),
    place AS (SELECT CASE
        WHEN :anchor::bigint IS NOT NULL AND NOT EXISTS (SELECT FROM after) THEN 'after'
        WHEN :anchor::bigint IS NOT NULL AND (SELECT position FROM gap) IS NULL THEN 'full' END AS refusal, (SELECT position FROM gap) AS position),
        next AS (UPDATE task_counts SET version = version + 1 WHERE user_id = 'bench-u' || lpad(:u::text, 5, '0') AND task_counts.version = (SELECT version FROM task_counts WHERE user_id = 'bench-u' || lpad(:u::text, 5, '0')) AND (SELECT refusal FROM place) IS NULL
            AND EXISTS (SELECT FROM tasks WHERE id = :moved AND user_id = 'bench-u' || lpad(:u::text, 5, '0') AND (NULL::bigint[]::bigint[] IS NULL OR version = ANY(NULL::bigint[]))) RETURNING version AS v)
        UPDATE tasks SET version = v, updated_at = now(), parent_id = NULL::bigint, position = coalesce((SELECT position FROM place), task_position_first(v))
        FROM next WHERE id = :moved AND user_id = 'bench-u' || lpad(:u::text, 5, '0') RETURNING id, user_id, title, description, completed, priority, due_date, tags, created_at, updated_at,
    due_kind, completed_at, version, recurrence, recur_from, timezone, reminders, next_reminder_at, parent_id, position;
