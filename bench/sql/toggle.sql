-- PATCH /api/{user_id}/tasks/{id}/complete: store.toggleTask
\set u random(1, :users)
\set id (:u - 1) * :tasks + random(1, :tasks)
WITH next AS (UPDATE task_counts SET version = version + 1 WHERE user_id = 'bench-u' || lpad(:u::text, 5, '0') RETURNING version)
UPDATE tasks SET completed = NOT completed, completed_at = CASE WHEN completed THEN NULL ELSE now() END, version = next.version,
  updated_at = greatest(now(), updated_at + interval '1 microsecond')
FROM next WHERE id = :id AND user_id = 'bench-u' || lpad(:u::text, 5, '0') AND (NULL::timestamptz[] IS NULL OR updated_at = ANY(NULL::timestamptz[]))
RETURNING id, user_id, title, description, completed, priority, due_date, tags, created_at, updated_at,
  CASE WHEN due_kind_at = due_date THEN due_kind END AS due_kind, CASE WHEN completed THEN completed_at END AS completed_at;
