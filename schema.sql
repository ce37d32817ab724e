-- The whole schema of the tasks API. Applied at every start as one implicit
-- transaction; the advisory lock makes replicas that start together take turns.
SELECT pg_advisory_xact_lock(7031945862);

CREATE TABLE IF NOT EXISTS tasks (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     text        NOT NULL CHECK (user_id <> '' AND length(user_id) <= 255),
    title       text        NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200 AND btrim(title) <> ''),
    description text        CHECK (char_length(description) <= 1000),
    completed   boolean     NOT NULL DEFAULT false,
    priority    text        NOT NULL DEFAULT 'medium' CHECK (priority IN ('low', 'medium', 'high')),
    due_date    timestamptz,
    -- Up to 10 tags of 1-32 characters, none holding a control character. A CHECK
    -- cannot hold a subquery, and a SQL function checking each tag made every write
    -- cost PostgreSQL twice the CPU, so one regular expression reads the tags joined
    -- by a control character (a NULL joins as an empty tag) and wants exactly as
    -- many pieces as there are tags.
    tags        text[]      NOT NULL DEFAULT '{}' CHECK (cardinality(tags) = 0 OR cardinality(tags) <= 10
                    AND array_to_string(tags, E'\x1f', '') ~ ('^[^[:cntrl:]]{1,32}(\x1f[^[:cntrl:]]{1,32}){' || cardinality(tags) - 1 || '}$')),
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
