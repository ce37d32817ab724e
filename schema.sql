-- The schema of the tasks API, as numbered migrations. At start the service
-- applies, in order, each migration the database has not recorded in
-- schema_migrations, all in one transaction under an advisory lock (migrate.go).
-- A migration is never edited once released (TestMigrationsUnchanged pins each
-- one's SHA-256); a change to the schema is a new migration at the end.

-- migration 1: tasks, per-user task counts and Idempotency-Keys
-- The schema as it was before migrations were recorded, written so that on a
-- database made by those releases every statement finds its object and does nothing.

-- The limits live in domains rather than in table CHECK constraints: PostgreSQL
-- prepares a table's CHECK expressions again for every statement it executes,
-- which made each write cost it more CPU (bench/run.sh -p update measures it),
-- while a domain's checks are kept per connection (and run only for the
-- columns a statement sets).
-- CREATE DOMAIN has no IF NOT EXISTS.
DO $$ BEGIN
    CREATE DOMAIN task_user_id AS text CHECK (VALUE <> '' AND length(VALUE) <= 255);
    CREATE DOMAIN task_title AS text CHECK (char_length(VALUE) BETWEEN 1 AND 200 AND btrim(VALUE) <> '');
    CREATE DOMAIN task_description AS text CHECK (char_length(VALUE) <= 1000);
    CREATE DOMAIN task_priority AS text CHECK (VALUE IN ('low', 'medium', 'high'));
    -- Up to 10 tags of 1-32 characters, none holding a control character: one regular
    -- expression reads the tags joined by a control character (a NULL joins as an
    -- empty tag) and wants exactly as many pieces as there are tags.
    CREATE DOMAIN task_tags AS text[] CHECK (cardinality(VALUE) = 0 OR cardinality(VALUE) <= 10
        AND array_to_string(VALUE, E'\x1f', '') ~ ('^[^[:cntrl:]]{1,32}(\x1f[^[:cntrl:]]{1,32}){' || cardinality(VALUE) - 1 || '}$'));
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

CREATE TABLE IF NOT EXISTS tasks (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     task_user_id     NOT NULL,
    title       task_title       NOT NULL,
    description task_description,
    completed   boolean          NOT NULL DEFAULT false,
    priority    task_priority    NOT NULL DEFAULT 'medium',
    due_date    timestamptz,
    tags        task_tags        NOT NULL DEFAULT '{}',
    created_at  timestamptz      NOT NULL DEFAULT now(),
    updated_at  timestamptz      NOT NULL DEFAULT now()
);

-- Serves every list for one user (default order: newest first) and reads of
-- one user's rows without touching anyone else's.
CREATE INDEX IF NOT EXISTS tasks_user_created ON tasks (user_id, created_at DESC, id DESC);

-- How many tasks each user holds, kept by the create and delete statements, so
-- MAX_TASKS_PER_USER is one row to check rather than a count of the user's tasks.
-- Made once from the tasks already there when the table is new.
DO $$ BEGIN
    IF to_regclass('task_counts') IS NULL THEN
        CREATE TABLE task_counts (user_id text PRIMARY KEY, n integer NOT NULL);
        INSERT INTO task_counts SELECT user_id, count(*) FROM tasks GROUP BY user_id;
    END IF;
END $$;

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

-- migration 2: a collation that folds case in every script, whatever the database's locale
-- lower() folds as the database's LC_CTYPE says, and with C (Docker images, some
-- managed databases) that is ASCII only: search (q) and sort=title fold text in
-- this collation, ICU's root locale, instead. On a PostgreSQL built without ICU
-- this migration fails, and the service with it, at start rather than at each search.
CREATE COLLATION IF NOT EXISTS task_fold (provider = icu, locale = 'und');

-- migration 3: a due date keeps its form: a date, a floating time or an instant
-- due_date holds the moment; for a date its midnight, and for a floating time its
-- wall clock, both as UTC, so the three sort together. due_kind says which it is;
-- rows written before (and by an older release during a rolling deploy) have none,
-- and are instants, as they were returned.
CREATE DOMAIN task_due_kind AS text CHECK (VALUE IN ('instant', 'date', 'local'));
ALTER TABLE tasks ADD COLUMN due_kind task_due_kind;

-- migration 4: a due date's kind counts only for the due date it was written with
-- A release before migration 3 that changes due_date leaves due_kind as it was:
-- a task sent as a date and moved by such a release to an instant would read back
-- as a date. due_kind_at is the due_date that due_kind describes; the store reads
-- the kind only while the two agree, and an instant otherwise.
ALTER TABLE tasks ADD COLUMN due_kind_at timestamptz;
UPDATE tasks SET due_kind_at = due_date WHERE due_kind IS NOT NULL;

-- migration 5: search folds case rather than lowercases
-- ICU's lower() is right for display and wrong for matching: it writes a final
-- sigma (ΟΔΟΣ → οδος, so σ is not found), turns İ into i and a combining dot, keeps
-- ß (so strasse does not find Straße), and leaves decomposed é apart from composed
-- é. task_casefold does what a fold does for those; search compares folded text.
CREATE FUNCTION task_casefold(t text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN replace(replace(translate(lower(normalize(t, NFC) COLLATE task_fold), 'ς', 'σ'), U&'i\0307', 'i'), 'ß', 'ss');

-- migration 6: an Idempotency-Key says how its request was hashed
-- Releases before migration 3 hashed a date or a floating time as the instant they
-- stored. A key they wrote (hashed_due_forms NULL) also matches its retry hashed
-- that way; a key written since (true) only as the request is hashed now.
ALTER TABLE idempotency_keys ADD COLUMN hashed_due_forms boolean;

-- migration 7: search folds compatibility forms too
-- NFKC rather than NFC: a ligature (ﬁ), a long s (ſ) and fullwidth letters (Ｆ) as
-- pasted from a PDF or typed on an East Asian keyboard match their plain letters.
CREATE OR REPLACE FUNCTION task_casefold(t text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN replace(replace(translate(lower(normalize(t, NFKC) COLLATE task_fold), 'ς', 'σ'), U&'i\0307', 'i'), 'ß', 'ss');

-- migration 8: when a task was completed
-- Set when a task becomes completed, cleared when it is reopened; read only while
-- completed, so a release before it that reopens a task leaves no stale time.
-- A task already completed gets its last write's time, the nearest known.
ALTER TABLE tasks ADD COLUMN completed_at timestamptz;
UPDATE tasks SET completed_at = updated_at WHERE completed;

-- migration 9: a change feed: a version per user on every task, and tombstones
-- task_counts.version counts a user's writes. Each write moves it and stamps the
-- task (or the deleted task's tombstone) with the new value; the row lock that
-- creates already took on it holds until commit, so one user's versions commit
-- in the order they were given out, and a feed read after version v misses
-- nothing (store.changes). Tasks there before get versions 1..n, so the first
-- sync after the upgrade returns them. A release before it inserts version 0.
ALTER TABLE task_counts ADD COLUMN version bigint NOT NULL DEFAULT 0;
INSERT INTO task_counts (user_id, n) SELECT user_id, count(*) FROM tasks GROUP BY user_id
ON CONFLICT (user_id) DO NOTHING;
ALTER TABLE tasks ADD COLUMN version bigint NOT NULL DEFAULT 0;
UPDATE tasks t SET version = v.version
FROM (SELECT id, row_number() OVER (PARTITION BY user_id ORDER BY id) AS version FROM tasks) v WHERE t.id = v.id;
UPDATE task_counts c SET version = v.version
FROM (SELECT user_id, max(version) AS version FROM tasks GROUP BY user_id) v WHERE c.user_id = v.user_id;
-- No index on version: a write that changes an indexed column cannot update its
-- row in place (a HOT update), and that doubled what an update cost PostgreSQL
-- (bench/run.sh -p update). A feed read gets the user's rows by tasks_user_created.
-- Room on each page for the new version of a row that an update writes, so that
-- updates stay HOT; that pays for the version's own write (bench/ab.sh).
ALTER TABLE tasks SET (fillfactor = 90);
-- A deleted task, kept SYNC_RETENTION (and an hour) so that devices learn of it.
CREATE TABLE task_tombstones (
    user_id    text        NOT NULL,
    version    bigint      NOT NULL,
    task_id    bigint      NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, version)
);
CREATE INDEX task_tombstones_deleted ON task_tombstones (deleted_at);

-- migration 10: an Idempotency-Key for every write, with the answer it got
-- A create's key replays the task it made (task_id). An update's, a toggle's or a
-- delete's replays its first answer, kept here: status, ETag and body.
ALTER TABLE idempotency_keys ADD COLUMN status smallint, ADD COLUMN etag text, ADD COLUMN answer bytea;

-- migration 11: live updates: a write notifies at its commit
-- Every write moves its user's version (migration 9); this trigger sends, on
-- the channel task_changes, the new version and the user id, never task data.
-- PostgreSQL delivers it only if the write commits, to every session that
-- LISTENs on the channel: each replica's watcher (live.go) wakes that user's
-- event streams.
CREATE FUNCTION task_counts_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('task_changes', NEW.version || ' ' || NEW.user_id);
    RETURN NULL;
END $$;
CREATE TRIGGER task_counts_notify AFTER INSERT OR UPDATE OF version ON task_counts
FOR EACH ROW EXECUTE FUNCTION task_counts_notify();
