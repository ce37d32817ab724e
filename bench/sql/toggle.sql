-- PATCH /api/{user_id}/tasks/{id}/complete: store.toggleTask, the user's row lock and the toggle in one implicit transaction (\;)
\set u random(1, :users)
\set id (:u - 1) * :tasks + random(1, :tasks)
SELECT FROM task_counts WHERE user_id = 'bench-u' || lpad(:u::text, 5, '0') FOR NO KEY UPDATE \;
WITH t AS (UPDATE tasks SET completed = NOT completed, completed_at = CASE WHEN completed THEN NULL ELSE now() END,
    version = (SELECT version + 1 FROM task_counts WHERE user_id = 'bench-u' || lpad(:u::text, 5, '0')), updated_at = now()
  WHERE id = :id AND user_id = 'bench-u' || lpad(:u::text, 5, '0') AND (NULL::bigint[] IS NULL OR version = ANY(NULL::bigint[]))
  RETURNING id, user_id, title, description, completed, priority, due_date, tags, created_at, updated_at,
  due_kind, completed_at, version),
moved AS (UPDATE task_counts SET version = version + 1 WHERE user_id = 'bench-u' || lpad(:u::text, 5, '0') AND EXISTS (SELECT FROM t))
SELECT * FROM t;
