-- GET /api/{user_id}/tasks: the statement store.listTasks sends for a plain list
\set u random(1, :users)
SELECT id, user_id, title, description, completed, priority, due_date, tags, created_at, updated_at,
  CASE WHEN due_kind_at = due_date THEN due_kind END AS due_kind, CASE WHEN completed THEN completed_at END AS completed_at FROM tasks
WHERE user_id = 'bench-u' || lpad(:u::text, 5, '0') ORDER BY created_at DESC, id DESC LIMIT 1001 OFFSET 0;
