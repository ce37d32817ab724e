-- PUT /api/{user_id}/tasks/{id}: store.updateTask with title and description set
\set u random(1, :users)
\set id (:u - 1) * :tasks + random(1, :tasks)
WITH next AS (UPDATE task_counts SET version = version + 1 WHERE user_id = 'bench-u' || lpad(:u::text, 5, '0') RETURNING version)
UPDATE tasks SET version = next.version, title = coalesce('Updated under load', title), description = CASE WHEN false THEN NULL ELSE coalesce('changed by pgbench', description) END,
  completed = coalesce(NULL::boolean, completed),
  completed_at = CASE WHEN NULL::boolean IS NULL OR NULL::boolean = completed THEN completed_at WHEN NULL::boolean THEN now() END,
  priority = coalesce(NULL, priority), due_date = CASE WHEN false THEN NULL ELSE coalesce(NULL, due_date) END,
  due_kind = CASE WHEN false THEN NULL ELSE coalesce(NULL, due_kind) END,
  due_kind_at = CASE WHEN false THEN NULL WHEN NULL::text IS NOT NULL THEN NULL ELSE due_kind_at END,
  tags = coalesce(NULL, tags), updated_at = greatest(now(), updated_at + interval '1 microsecond')
FROM next WHERE id = :id AND user_id = 'bench-u' || lpad(:u::text, 5, '0') AND (NULL::timestamptz[] IS NULL OR updated_at = ANY(NULL::timestamptz[]))
RETURNING id, user_id, title, description, completed, priority, due_date, tags, created_at, updated_at,
  CASE WHEN due_kind_at = due_date THEN due_kind END AS due_kind, CASE WHEN completed THEN completed_at END AS completed_at;
