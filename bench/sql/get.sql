-- GET /api/{user_id}/tasks/{id}: store.getTask
\set u random(1, :users)
\set id (:u - 1) * :tasks + random(1, :tasks)
SELECT id, user_id, title, description, completed, priority, due_date, tags, created_at, updated_at,
  due_kind, completed_at, version, recurrence, recur_from, timezone, reminders, next_reminder_at, parent_id, position FROM tasks
WHERE id = :id AND user_id = 'bench-u' || lpad(:u::text, 5, '0');
