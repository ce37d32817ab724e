-- GET /api/{user_id}/tasks: the statement store.listTasks sends for a plain list
\set u random(1, :users)
SELECT id, user_id, title, description, completed, priority, due_date, tags, created_at, updated_at,
  due_kind, completed_at, version, recurrence, recur_from, timezone, reminders, next_reminder_at, parent_id, position FROM tasks
WHERE user_id = 'bench-u' || lpad(:u::text, 5, '0') ORDER BY created_at DESC, id DESC LIMIT 1001 OFFSET 0;
