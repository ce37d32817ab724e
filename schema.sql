-- The tasks API's schema as numbered migrations, applied at start (migrate.go).
-- A released migration is never edited (TestMigrationsUnchanged): a change is a
-- new one at the end. Every unique key starts with user_id (Citus distributes by it).

-- migration 1: tasks 1.0
-- Limits are domains, not table CHECKs: PostgreSQL prepares a table's CHECKs for
-- every statement, a domain's once per connection, and only for columns set.
CREATE DOMAIN task_user_id AS text CHECK (VALUE <> '' AND length(VALUE) <= 255);
CREATE DOMAIN task_title AS text CHECK (char_length(VALUE) BETWEEN 1 AND 200 AND btrim(VALUE) <> '');
CREATE DOMAIN task_description AS text CHECK (char_length(VALUE) <= 1000);
CREATE DOMAIN task_priority AS text CHECK (VALUE IN ('low', 'medium', 'high'));
-- Up to 10 tags of 1-32 characters without control characters: the tags joined by
-- \x1f (a NULL joins as an empty tag) must split into exactly as many pieces.
CREATE DOMAIN task_tags AS text[] CHECK (cardinality(VALUE) = 0 OR cardinality(VALUE) <= 10
    AND array_to_string(VALUE, E'\x1f', '') ~ ('^[^[:cntrl:]]{1,32}(\x1f[^[:cntrl:]]{1,32}){' || cardinality(VALUE) - 1 || '}$'));
-- What a due date means (due.go): an instant, an all-day date, or a floating wall-clock time.
CREATE DOMAIN task_due_kind AS text CHECK (VALUE IN ('instant', 'date', 'local'));

-- Search (q) and sort=title fold text in ICU's root locale, not the database's
-- LC_CTYPE (ASCII only with C). task_casefold is a fold, not lower(): it matches
-- a final sigma, ß as ss, İ as i, and compatibility forms (ﬁ, Ｆ) as their letters.
-- On a PostgreSQL built without ICU the migration, and the service, fail at start.
CREATE COLLATION task_fold (provider = icu, locale = 'und');
CREATE FUNCTION task_casefold(t text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN replace(replace(translate(lower(normalize(t, NFKC) COLLATE task_fold), 'ς', 'σ'), U&'i\0307', 'i'), 'ß', 'ss');

-- Per user: how many tasks they hold (MAX_TASKS_PER_USER is one row to check),
-- and version, which counts their writes. Every write takes this row's lock
-- first, moves version, and stamps the task or tombstone it writes with it, so
-- one user's versions commit in order: the change feed's order and each task's ETag.
CREATE TABLE task_counts (
    user_id task_user_id PRIMARY KEY,
    n       integer      NOT NULL,
    version bigint       NOT NULL
);

-- due_date: a date's midnight and a floating time's wall clock read as UTC, so
-- all three kinds sort together. No index on version, and room on each page
-- (fillfactor), so that updates stay HOT.
CREATE TABLE tasks (
    user_id      task_user_id     NOT NULL,
    id           bigint           GENERATED ALWAYS AS IDENTITY,
    version      bigint           NOT NULL,
    title        task_title       NOT NULL,
    description  task_description,
    completed    boolean          NOT NULL DEFAULT false,
    completed_at timestamptz,     -- set when it becomes completed, NULL while open
    priority     task_priority    NOT NULL DEFAULT 'medium',
    due_date     timestamptz,
    due_kind     task_due_kind,   -- set exactly when due_date is
    tags         task_tags        NOT NULL DEFAULT '{}',
    created_at   timestamptz      NOT NULL DEFAULT now(),
    updated_at   timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, id)
) WITH (fillfactor = 90);
-- Every list of one user, newest first by default; a feed read of their rows.
CREATE INDEX tasks_user_created ON tasks (user_id, created_at DESC, id DESC);

-- A deleted task, kept SYNC_RETENTION (and an hour) so that devices learn of it.
CREATE TABLE task_tombstones (
    user_id    text        NOT NULL,
    version    bigint      NOT NULL,
    task_id    bigint      NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, version)
);
CREATE INDEX task_tombstones_deleted ON task_tombstones (deleted_at);

-- A write's Idempotency-Key and its first answer, kept 24 hours for its retries.
CREATE TABLE idempotency_keys (
    user_id      text        NOT NULL,
    key          text        NOT NULL CHECK (key ~ '^[!-~]{1,255}$'),
    request_hash bytea       NOT NULL,
    status       smallint,   -- NULL only inside the transaction that claimed the key
    etag         text,
    location     text,
    answer       bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- Live updates: a write's commit NOTIFYs task_changes with "VERSION USER_ID" (live.go).
CREATE FUNCTION task_counts_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('task_changes', NEW.version || ' ' || NEW.user_id);
    RETURN NULL;
END $$;
CREATE TRIGGER task_counts_notify AFTER INSERT OR UPDATE OF version ON task_counts
FOR EACH ROW EXECUTE FUNCTION task_counts_notify();

-- migration 2: recurring tasks
-- recurrence is an RRULE in its one spelling (recurrence.go), recurring from
-- the due date or from each completion; timezone is the IANA zone an instant
-- due date recurs in (UTC without one). A recurring task needs a due date: the
-- one table CHECK, as it reads two columns.
CREATE DOMAIN task_recurrence AS text CHECK (length(VALUE) <= 500);
CREATE DOMAIN task_recur_from AS text CHECK (VALUE IN ('due', 'completion'));
CREATE DOMAIN task_timezone AS text CHECK (length(VALUE) <= 64);
ALTER TABLE tasks
    ADD COLUMN recurrence task_recurrence,
    ADD COLUMN recur_from task_recur_from NOT NULL DEFAULT 'due',
    ADD COLUMN timezone   task_timezone,
    ADD CONSTRAINT tasks_recurrence_needs_due CHECK (recurrence IS NULL OR due_date IS NOT NULL);

-- migration 3: due dates read in a time zone
-- task_instant reads wall, a wall clock, in the IANA zone tz as RFC 5545 §3.3.5
-- says (recurrence.go's wallToInstant, which TestTaskInstantIsWallToInstant
-- holds it to): a time a clock change skips with the offset before the gap, one
-- it repeats as the first of the two. PostgreSQL's own AT TIME ZONE takes the
-- second. b and a are the offsets a day before and a day after.
CREATE FUNCTION task_instant(wall timestamp, tz text) RETURNS timestamptz LANGUAGE sql STABLE PARALLEL SAFE
RETURN (SELECT CASE WHEN timezone(tz, f) = wall THEN f WHEN timezone(tz, s) = wall THEN s ELSE timezone('UTC', wall - b) END
    FROM (SELECT timezone('UTC', wall - greatest(b, a)) AS f, timezone('UTC', wall - least(b, a)) AS s, b
        FROM (SELECT timezone(tz, timezone('UTC', wall - interval '1 day')) - (wall - interval '1 day') AS b,
                     timezone(tz, timezone('UTC', wall + interval '1 day')) - (wall + interval '1 day') AS a) AS offsets) AS candidates);
