-- The whole schema of the tasks API. Applied at every start as one implicit
-- transaction; the advisory lock makes replicas that start together take turns.
SELECT pg_advisory_xact_lock(7031945862);

-- Up to 10 tags, each 1-32 characters: a CHECK cannot hold a subquery, so a function does.
CREATE OR REPLACE FUNCTION tasks_tags_valid(tags text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT cardinality(tags) <= 10
       AND NOT EXISTS (SELECT FROM unnest(tags) AS t WHERE t IS NULL OR char_length(t) NOT BETWEEN 1 AND 32)
$$;

CREATE TABLE IF NOT EXISTS tasks (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     text        NOT NULL CHECK (user_id <> '' AND length(user_id) <= 255),
    title       text        NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200 AND btrim(title) <> ''),
    description text        CHECK (char_length(description) <= 1000),
    completed   boolean     NOT NULL DEFAULT false,
    priority    text        NOT NULL DEFAULT 'medium' CHECK (priority IN ('low', 'medium', 'high')),
    due_date    timestamptz,
    tags        text[]      NOT NULL DEFAULT '{}' CHECK (tasks_tags_valid(tags)),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Serves every list for one user (default order: newest first) and reads of
-- one user's rows without touching anyone else's.
CREATE INDEX IF NOT EXISTS tasks_user_created ON tasks (user_id, created_at DESC, id DESC);

-- A create's Idempotency-Key, kept at least 24 hours: a retry with the same key
-- returns task_id instead of creating another task. No foreign key: a key must
-- outlive its task, or a retry after a delete would create the task again.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    user_id      text        NOT NULL,
    key          text        NOT NULL CHECK (key ~ '^[!-~]{1,255}$'),
    request_hash bytea       NOT NULL,
    task_id      bigint      NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_created ON idempotency_keys (created_at);
