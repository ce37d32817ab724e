-- GET /api/{user_id}/changes?since=CURSOR with nothing new: store.changes reads the user's
-- version, finds it where the cursor is, and stops there
\set u random(1, :users)
SELECT version FROM task_counts WHERE user_id = 'bench-u' || lpad(:u::text, 5, '0');
