-- GET /api/{user_id}/tasks/{id}: store.getTask
\set u random(1, :users)
\set id (:u - 1) * :tasks + random(1, :tasks)
SELECT id, user_id, title, description, completed, priority, due_date, tags, created_at, updated_at,
  CASE WHEN due_kind_at = due_date THEN due_kind END AS due_kind, CASE WHEN completed THEN completed_at END AS completed_at FROM tasks
WHERE id = :id AND user_id = 'bench-u' || lpad(:u::text, 5, '0');
