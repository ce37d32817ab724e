-- POST /api/{user_id}/tasks: store.createTask without an Idempotency-Key
\set u random(1, :users)
INSERT INTO tasks (user_id, title, description, priority, due_date, tags)
SELECT 'bench-w' || lpad(:u::text, 5, '0'), 'Load task', 'created under load by pgbench', 'medium', NULL, '{}'
WHERE (SELECT count(*) FROM tasks WHERE user_id = 'bench-w' || lpad(:u::text, 5, '0')) < 10000
RETURNING id, user_id, title, description, completed, priority, due_date, tags, created_at, updated_at;
