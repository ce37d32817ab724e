-- GET /api/{user_id}/changes?since=CURSOR with nothing new: store.changes, after the user's last version
\set u random(1, :users)
(SELECT id, user_id, title, description, completed, priority, due_date, tags, created_at, updated_at,
  CASE WHEN due_kind_at = due_date THEN due_kind END AS due_kind, CASE WHEN completed THEN completed_at END AS completed_at, version, false AS deleted
  FROM tasks WHERE user_id = 'bench-u' || lpad(:u::text, 5, '0') AND version >= (SELECT version FROM task_counts WHERE user_id = 'bench-u' || lpad(:u::text, 5, '0'))
  AND (version, id) > ((SELECT version FROM task_counts WHERE user_id = 'bench-u' || lpad(:u::text, 5, '0')), 9223372036854775807)
  AND ((SELECT version FROM task_counts WHERE user_id = 'bench-u' || lpad(:u::text, 5, '0')) < (SELECT version FROM task_counts WHERE user_id = 'bench-u' || lpad(:u::text, 5, '0')) OR false)
  ORDER BY version, id LIMIT 1001)
UNION ALL
(SELECT task_id, user_id, '', NULL, false, '', NULL, '{}', deleted_at, deleted_at, NULL, NULL, version, true
  FROM task_tombstones WHERE user_id = 'bench-u' || lpad(:u::text, 5, '0') AND version >= (SELECT version FROM task_counts WHERE user_id = 'bench-u' || lpad(:u::text, 5, '0'))
  AND (version, task_id) > ((SELECT version FROM task_counts WHERE user_id = 'bench-u' || lpad(:u::text, 5, '0')), 9223372036854775807) ORDER BY version, task_id LIMIT 1001)
ORDER BY version, id LIMIT 1001;
