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

-- migration 2: recurring tasks and reminders
-- recurrence is an RRULE in its one spelling (recurrence.go), recurring from
-- the due date or from each completion; timezone is the IANA zone an instant
-- due date recurs in (UTC without one). A recurring task needs a due date: a
-- table CHECK, as it reads two columns. due_wall is the wall clock in timezone
-- that a series move meant for due_date: it reads otherwise only in a gap that
-- a clock change skips (02:30 read as 03:30), and the series goes on from it.
CREATE DOMAIN task_recurrence AS text CHECK (length(VALUE) <= 500);
CREATE DOMAIN task_recur_from AS text CHECK (VALUE IN ('due', 'completion'));
CREATE DOMAIN task_timezone AS text CHECK (length(VALUE) <= 64);
ALTER TABLE tasks
    ADD COLUMN recurrence task_recurrence,
    ADD COLUMN recur_from task_recur_from NOT NULL DEFAULT 'due',
    ADD COLUMN timezone   task_timezone,
    ADD COLUMN due_wall   timestamp,
    ADD CONSTRAINT tasks_recurrence_needs_due CHECK (recurrence IS NULL OR due_date IS NOT NULL);

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

-- Reminders, and Web Push to deliver them: reminders is a task's reminders in their one spelling (reminders.go), up to 5:
-- {"offset": "-PT15M"}, an ISO 8601 duration from the due moment (a date's is the
-- start of its day in timezone), or {"at": "2026-12-01T08:45:00Z"}. An offset
-- needs a due date, and for a date or a floating time a timezone.
ALTER TABLE tasks
    ADD COLUMN reminders        json,
    ADD COLUMN next_reminder_at timestamptz, -- the next moment one fires; NULL when none is pending
    ADD CONSTRAINT tasks_reminder_offsets_need_due CHECK (reminders IS NULL OR reminders::text NOT LIKE '%"offset"%'
        OR due_date IS NOT NULL AND (due_kind = 'instant' OR timezone IS NOT NULL));
-- The scheduler's one statement a second when nothing is due reads the first entry.
CREATE INDEX tasks_next_reminder ON tasks (next_reminder_at) WHERE next_reminder_at IS NOT NULL;

-- task_reminder_moments are the moments of a task's reminders. An offset from
-- an instant moves its days on the wall clock of its zone (a day is nominal,
-- RFC 5545 §3.3.6) and its time exactly; from a date or a floating time, whose
-- moment is a wall clock in timezone, all of it on that clock (PT9H is 09:00).
CREATE FUNCTION task_reminder_moments(reminders json, due timestamptz, kind text, tz text) RETURNS timestamptz[]
LANGUAGE sql STABLE PARALLEL SAFE
RETURN (SELECT array_agg(CASE WHEN r->>'at' IS NOT NULL THEN (r->>'at')::timestamptz
        WHEN kind = 'instant' THEN task_instant(timezone(coalesce(tz, 'UTC'), due) + days, coalesce(tz, 'UTC')) + (o - days)
        ELSE task_instant(timezone('UTC', due) + o, tz) END)
    FROM json_array_elements(reminders) AS r,
        LATERAL (SELECT CASE WHEN r->>'offset' LIKE '-%' THEN -substr(r->>'offset', 2)::interval ELSE (r->>'offset')::interval END AS o) AS offsets,
        LATERAL (SELECT make_interval(days => extract(day FROM o)::int) AS days) AS nominal);

-- next_reminder_at follows what it depends on; an open task's is the first
-- moment still ahead. The scheduler moves it past each that fires. A write that
-- began before a reminder fired, and recomputes it after (it waited on the
-- user's row), would find that moment still ahead of its now(): the moments
-- recorded in fired_reminders are left out.
CREATE FUNCTION tasks_next_reminder() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.next_reminder_at := CASE WHEN NOT NEW.completed THEN (SELECT min(m)
        FROM unnest(task_reminder_moments(NEW.reminders, NEW.due_date, NEW.due_kind, NEW.timezone)) AS m
        WHERE m > now() AND NOT EXISTS (SELECT FROM fired_reminders AS f
            WHERE f.user_id = NEW.user_id AND f.task_id = NEW.id AND f.at = m)) END;
    RETURN NEW;
END $$;
CREATE TRIGGER tasks_next_reminder_insert BEFORE INSERT ON tasks
FOR EACH ROW WHEN (NEW.reminders IS NOT NULL) EXECUTE FUNCTION tasks_next_reminder();
CREATE TRIGGER tasks_next_reminder_update BEFORE UPDATE ON tasks FOR EACH ROW
WHEN ((NEW.reminders IS NOT NULL OR OLD.reminders IS NOT NULL) AND ROW(NEW.reminders::text, NEW.due_date, NEW.due_kind, NEW.timezone, NEW.completed)
    IS DISTINCT FROM ROW(OLD.reminders::text, OLD.due_date, OLD.due_kind, OLD.timezone, OLD.completed))
EXECUTE FUNCTION tasks_next_reminder();

-- A reminder that fired, at its moment, kept SYNC_RETENTION (and an hour) for the change feed.
CREATE TABLE fired_reminders (
    user_id  text        NOT NULL,
    version  bigint      NOT NULL,
    task_id  bigint      NOT NULL,
    at       timestamptz NOT NULL,
    fired_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, version)
);
CREATE INDEX fired_reminders_fired ON fired_reminders (fired_at);

-- A browser's push subscription (PushSubscription.toJSON()), up to 20 a user.
CREATE TABLE push_subscriptions (
    user_id    text        NOT NULL,
    endpoint   text        NOT NULL CHECK (length(endpoint) <= 2048),
    p256dh     text        NOT NULL,
    auth       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, endpoint)
);

-- The pushes to send, written with the reminder that fired them, so a process
-- that dies before sending loses none: a sender claims a row until not_before,
-- deletes it once the push service took it, and retries it until an hour old.
CREATE TABLE push_outbox (
    user_id    text        NOT NULL,
    id         bigint      GENERATED ALWAYS AS IDENTITY,
    endpoint   text        NOT NULL,
    topic      text        NOT NULL,
    payload    text        NOT NULL,
    attempts   integer     NOT NULL DEFAULT 0,
    not_before timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, id),
    FOREIGN KEY (user_id, endpoint) REFERENCES push_subscriptions ON DELETE CASCADE
);
CREATE INDEX push_outbox_due ON push_outbox (not_before);

-- migration 3: subtasks and the user's own order
-- parent_id is another task of the same user, or NULL at the top; a recurring
-- task is never a subtask (nor a parent: store_tree.go). position orders a task
-- among its siblings (same user and parent_id), unique among them: compared
-- byte by byte (COLLATE "C", whatever the database's locale), 1 to 64
-- characters of [0-9A-Za-z], never ending in 0, so that there is always room between two.
CREATE DOMAIN task_position AS text COLLATE "C" CHECK (VALUE ~ '^[0-9A-Za-z]{0,63}[1-9A-Za-z]$');

-- task_position_first(v) is the position of a task put first by the write of
-- version v: v's digits in base 61, each counted down from z, after a first
-- character that falls as they grow longer. A later version's sorts before
-- every position given before it, so putting a task first reads no sibling.
CREATE FUNCTION task_position_first(v bigint) RETURNS text LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    digits CONSTANT text := '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
    key text := '';
BEGIN
    LOOP
        key := substr(digits, 62 - (v % 61)::int, 1) || key;
        v := v / 61;
        EXIT WHEN v = 0;
    END LOOP;
    RETURN substr(digits, 13 - length(key), 1) || key;
END $$;

-- task_position_between(lo, hi) is a position after lo and before hi (NULL:
-- the end): halfway, read as base-62 fractions, at the first digit where they
-- differ by two or more; after the last sibling, lo's first digit that can be
-- one more, so that adding at the end leaves the most room. NULL past 64 characters.
CREATE FUNCTION task_position_between(lo text, hi text) RETURNS text LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    digits CONSTANT text := '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
    a int;
    b int;
    above boolean := hi IS NULL; -- past a digit where hi is one more than lo: anything after lo
BEGIN
    FOR i IN 1..64 LOOP
        a := CASE WHEN i <= length(lo) THEN strpos(digits, substr(lo, i, 1)) - 1 ELSE 0 END;
        b := CASE WHEN above THEN 62 WHEN i <= length(hi) THEN strpos(digits, substr(hi, i, 1)) - 1 ELSE 0 END;
        IF b - a > 1 THEN
            RETURN left(lo, i - 1) || repeat('0', i - 1 - length(lo)) || substr(digits, CASE WHEN hi IS NULL THEN a + 2 ELSE (a + b) / 2 + 1 END, 1);
        END IF;
        above := above OR b > a;
    END LOOP;
    RETURN NULL;
END $$;

-- Each task is re-stamped with a new version, oldest first, and put first in
-- turn (the newest-first order of the default list), so that every device's
-- next pull brings it with its new fields.
ALTER TABLE tasks ADD COLUMN parent_id bigint, ADD COLUMN position task_position;
WITH ranked AS (SELECT user_id, id, row_number() OVER (PARTITION BY user_id ORDER BY created_at, id) AS r,
        count(*) OVER (PARTITION BY user_id) AS n FROM tasks),
    bumped AS (UPDATE task_counts c SET version = c.version + ranked.n FROM ranked
        WHERE c.user_id = ranked.user_id AND ranked.r = 1 RETURNING c.user_id, c.version - ranked.n AS base)
UPDATE tasks t SET version = base + r, position = task_position_first(base + r)
FROM ranked JOIN bumped USING (user_id) WHERE t.user_id = ranked.user_id AND t.id = ranked.id;
-- The parent's key includes user_id, so that a tree lives on one node when
-- distributed by user. The sibling key's index finds a task's children and
-- its neighbours; tasks_user_position serves sort=position.
ALTER TABLE tasks ALTER COLUMN position SET NOT NULL,
    ADD CONSTRAINT tasks_parent FOREIGN KEY (user_id, parent_id) REFERENCES tasks (user_id, id),
    ADD CONSTRAINT tasks_subtask_not_recurring CHECK (parent_id IS NULL OR recurrence IS NULL),
    ADD CONSTRAINT tasks_sibling_position UNIQUE NULLS NOT DISTINCT (user_id, parent_id, position);
CREATE INDEX tasks_user_position ON tasks (user_id, position, id);
