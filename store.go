// store.go holds the PostgreSQL pool, the embedded schema and one method per SQL statement.
package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed schema.sql
var schemaSQL string

// Store errors; handlers map them to statuses in writeError.
var (
	errNotFound    = errors.New("task not found")
	errUnavailable = errors.New("database unavailable")
	errRejected    = errors.New("rejected by a database constraint")
	errTaskLimit   = errors.New("task limit reached")
	errKeyReused   = errors.New("idempotency key reused with a different request")
)

// staleError says a precondition (If-Match) failed: the task has changed since.
type staleError struct{ Current Task }

func (e *staleError) Error() string { return "task changed since the version given" }

// idempotencyTTL is how long an Idempotency-Key is kept at least.
const idempotencyTTL = 24 * time.Hour

// Task is one task as stored and as sent to clients.
type Task struct {
	ID          int64      `json:"id"`
	UserID      string     `json:"user_id"`
	Title       string     `json:"title"`
	Description *string    `json:"description"`
	Completed   bool       `json:"completed"`
	Priority    string     `json:"priority"`
	DueDate     *time.Time `json:"due_date"`
	Tags        []string   `json:"tags"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
}

// taskChange is a validated create or partial update; nil pointers leave a field as it is.
type taskChange struct {
	Title       *string
	Description *string
	ClearDesc   bool // set description to NULL
	Completed   *bool
	Priority    *string
	DueDate     *time.Time
	ClearDue    bool // set due_date to NULL
	Tags        []string
}

// listQuery is a validated list request.
type listQuery struct {
	Completed *bool    // nil: all
	Sort      string   // a key of listOrders
	Desc      bool     // descending
	Q         string   // literal, case-insensitive substring of title or description
	Tags      []string // all must be present
	Limit     int
	Offset    int
}

// store runs the service's SQL on a pgx pool.
type store struct {
	pool    *pgxpool.Pool
	timeout time.Duration // bounds every statement, including the wait for a pooled connection
}

// openStore builds a pool for url without connecting; it dials on first use.
func openStore(url string, timeout time.Duration) (*store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The parse error may quote the URL, password included: keep only what is safe.
		return nil, errors.New("DATABASE_URL is not a valid PostgreSQL URL or key=value string")
	}
	if !strings.Contains(url, "pool_max_conns") {
		// pgxpool's default (4 here, one per core otherwise) leaves writes queueing for
		// a connection while others wait on a commit's fsync; 16 let PostgreSQL commit
		// them together: +40 % updates/s and -15 % API CPU per update, measured with
		// bench/run.sh on 2 cores.
		cfg.MaxConns = 16
	}
	cfg.ConnConfig.ConnectTimeout = timeout
	// pgx gives up on a connection that timed out by sending a cancel request
	// on a new connection and draining the old one, under a 15 s deadline, and
	// the pool holds the old connection's slot until then: after the database
	// stopped answering (a partition, a black hole), every slot would stay
	// taken for 15 s once it is back. Bounding that cleanup by the statement
	// timeout ends it sooner. Only the cleanup dials with a deadline further
	// off than the timeout: a connect's own deadline is ConnectTimeout.
	dialer := &net.Dialer{}
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialCtx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		conn, err := dialer.DialContext(dialCtx, network, addr)
		if err != nil {
			return nil, err
		}
		if d, ok := ctx.Deadline(); ok && time.Until(d) > timeout { // pgx's cancel request
			conn.SetDeadline(time.Now().Add(timeout))
		}
		return boundedConn{conn, timeout}, nil
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("open pool: %w", err)
	}
	return &store{pool: pool, timeout: timeout}, nil
}

// boundedConn is a connection on which no deadline lies further ahead than max.
type boundedConn struct {
	net.Conn
	max time.Duration
}

func (c boundedConn) bound(t time.Time) time.Time {
	if limit := time.Now().Add(c.max); !t.IsZero() && t.After(limit) {
		return limit
	}
	return t
}

func (c boundedConn) SetDeadline(t time.Time) error      { return c.Conn.SetDeadline(c.bound(t)) }
func (c boundedConn) SetReadDeadline(t time.Time) error  { return c.Conn.SetReadDeadline(c.bound(t)) }
func (c boundedConn) SetWriteDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(c.bound(t)) }

// migrate waits for the database with backoff until ctx ends, then applies the schema.
func (s *store) migrate(ctx context.Context, logf func(attempt int, err error)) error {
	delay := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := s.ping(ctx)
		if err == nil {
			break
		}
		logf(attempt, err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("database not reachable: %w", err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
	if _, err := s.pool.Exec(ctx, schemaSQL); err != nil {
		return fmt.Errorf("apply schema: %w", err)
	}
	return nil
}

// ping checks that the database answers.
func (s *store) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return storeError(s.pool.Ping(ctx))
}

const taskColumns = `id, user_id, title, description, completed, priority, due_date, tags, created_at, updated_at`

// scanTask reads one row of taskColumns. A row in PostgreSQL's binary format
// (what pgx asks for, except on the simple protocol) is decoded straight from
// its bytes by taskFromBinary; pgx's Scan plans every column again for each
// statement and allocates for each value: an eighth of a list's CPU here.
func scanTask(rows pgx.CollectableRow) (Task, error) {
	if t, ok := taskFromBinary(rows.FieldDescriptions(), rows.RawValues()); ok {
		return t, nil
	}
	var t Task
	err := rows.Scan(&t.ID, &t.UserID, &t.Title, &t.Description, &t.Completed, &t.Priority,
		&t.DueDate, &t.Tags, &t.CreatedAt, &t.UpdatedAt)
	if err != nil {
		return t, err
	}
	t.CreatedAt, t.UpdatedAt = t.CreatedAt.UTC(), t.UpdatedAt.UTC()
	if t.DueDate != nil {
		d := t.DueDate.UTC()
		t.DueDate = &d
	}
	if t.Tags == nil {
		t.Tags = []string{}
	}
	return t, nil
}

// taskColumnTypes are the type OIDs of taskColumns (domains are sent as their base types).
var taskColumnTypes = [...]uint32{pgtype.Int8OID, pgtype.TextOID, pgtype.TextOID, pgtype.TextOID,
	pgtype.BoolOID, pgtype.TextOID, pgtype.TimestamptzOID, pgtype.TextArrayOID, pgtype.TimestamptzOID, pgtype.TimestamptzOID}

// taskFromBinary decodes a row of taskColumns in the binary format; ok is false
// for anything else (text format, other types, a value it does not expect), which
// scanTask leaves to pgx.
func taskFromBinary(fields []pgconn.FieldDescription, raw [][]byte) (t Task, ok bool) {
	if len(fields) != len(taskColumnTypes) || len(raw) != len(fields) {
		return t, false
	}
	for i, f := range fields {
		binaryOrText := f.Format == pgx.BinaryFormatCode || f.DataTypeOID == pgtype.TextOID // text reads the same in both
		nullable := i == 3 || i == 6                                                        // description, due_date
		if !binaryOrText || f.DataTypeOID != taskColumnTypes[i] || raw[i] == nil && !nullable {
			return t, false
		}
	}
	if len(raw[0]) != 8 || len(raw[4]) != 1 {
		return t, false
	}
	t.ID = int64(binary.BigEndian.Uint64(raw[0]))
	t.UserID, t.Title = string(raw[1]), string(raw[2])
	if raw[3] != nil {
		d := string(raw[3])
		t.Description = &d
	}
	t.Completed = raw[4][0] == 1
	switch p := raw[5]; string(p) { // the three priorities without an allocation each
	case "low":
		t.Priority = "low"
	case "medium":
		t.Priority = "medium"
	case "high":
		t.Priority = "high"
	default:
		t.Priority = string(p)
	}
	if raw[6] != nil {
		d, ok := timeFromBinary(raw[6])
		if !ok {
			return t, false
		}
		t.DueDate = &d
	}
	var created, updated bool
	t.Tags, ok = textArrayFromBinary(raw[7])
	t.CreatedAt, created = timeFromBinary(raw[8])
	t.UpdatedAt, updated = timeFromBinary(raw[9])
	return t, ok && created && updated
}

// timeFromBinary decodes a binary timestamptz: microseconds since 2000-01-01 UTC;
// ok is false outside PostgreSQL's range (4713 BC to 294276 AD), which leaves out infinity.
func timeFromBinary(b []byte) (time.Time, bool) {
	if len(b) != 8 {
		return time.Time{}, false
	}
	us := int64(binary.BigEndian.Uint64(b))
	if us < -211813488000000000 || us >= 9223371331200000000 {
		return time.Time{}, false
	}
	return time.Unix(946684800+us/1e6, us%1e6*1e3).UTC(), true
}

// textArrayFromBinary decodes a one-dimensional binary text[] without NULLs:
// dimensions, a has-NULL flag and the element type, then each dimension's
// length and lower bound, then each element as its length and bytes.
func textArrayFromBinary(b []byte) ([]string, bool) {
	if len(b) < 12 {
		return nil, false
	}
	ndim := binary.BigEndian.Uint32(b)
	if ndim == 0 {
		return []string{}, len(b) == 12
	}
	if ndim != 1 || len(b) < 20 {
		return nil, false
	}
	n := int(binary.BigEndian.Uint32(b[12:]))
	if b = b[20:]; n > len(b)/4 {
		return nil, false
	}
	tags := make([]string, 0, n)
	for range n {
		if len(b) < 4 {
			return nil, false
		}
		size := int(int32(binary.BigEndian.Uint32(b)))
		if size < 0 || len(b) < 4+size {
			return nil, false
		}
		tags = append(tags, string(b[4:4+size]))
		b = b[4+size:]
	}
	return tags, len(b) == 0
}

// one runs a statement that returns at most one task.
func (s *store) one(ctx context.Context, sql string, args ...any) (Task, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	rows, _ := s.pool.Query(ctx, sql, args...) // a failed query's error comes back from CollectOneRow
	t, err := pgx.CollectOneRow(rows, scanTask)
	return t, storeError(err)
}

// getTask returns the user's task id.
func (s *store) getTask(ctx context.Context, userID string, id int64) (Task, error) {
	return s.one(ctx, `SELECT `+taskColumns+` FROM tasks WHERE id = $1 AND user_id = $2`, id, userID)
}

// newTask is a create: the change, the user's task limit, and the client's
// Idempotency-Key ("" for none) with a hash of the request it came with.
type newTask struct {
	taskChange
	MaxTasks    int
	Key         string
	RequestHash []byte
}

// createTask inserts a task for the user unless they hold MaxTasks already, in
// one statement with the user's task count. With a key, the key is stored in the same
// statement; a retry with the key returns the task the first request created
// (replayed = true) instead of creating another.
func (s *store) createTask(ctx context.Context, userID string, n newTask) (task Task, replayed bool, err error) {
	priority := "medium"
	if n.Priority != nil {
		priority = *n.Priority
	}
	tags := n.Tags
	if tags == nil {
		tags = []string{}
	}
	// The user's count goes up only while below the limit, and its row lock makes
	// concurrent creates by one user take turns: the limit holds exactly, and
	// costs one row, not a count of the user's tasks.
	const slotAndTask = `slot AS (INSERT INTO task_counts (user_id, n) VALUES ($1, 1)
		ON CONFLICT (user_id) DO UPDATE SET n = task_counts.n + 1 WHERE task_counts.n < $7 RETURNING 1),
		task AS (INSERT INTO tasks (user_id, title, description, priority, due_date, tags)
		SELECT $1::text, $2::text, $3::text, $4::text, $5::timestamptz, $6::text[] FROM slot
		RETURNING ` + taskColumns + `)`
	insert := `WITH ` + slotAndTask + ` SELECT ` + taskColumns + ` FROM task`
	args := []any{userID, *n.Title, n.Description, priority, n.DueDate, tags, n.MaxTasks}
	if n.Key != "" {
		// A concurrent request with the same key waits on the key's unique index,
		// then fails with 23505, and its task insert is undone with it.
		insert = `WITH ` + slotAndTask + `, key AS (
			INSERT INTO idempotency_keys (user_id, key, request_hash, task_id) SELECT $1, $8, $9, id FROM task)
			SELECT ` + taskColumns + ` FROM task`
		args = append(args, n.Key, n.RequestHash)
	}
	task, err = s.one(ctx, insert, args...)
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, errNotFound):
		return task, false, errTaskLimit
	case n.Key != "" && errors.As(err, &pgErr) && pgErr.Code == "23505":
		task, err = s.replay(ctx, userID, n.Key, n.RequestHash)
		return task, err == nil, err
	}
	return task, false, err
}

// replay returns the task an earlier create with the user's key made, if the
// request was the same; a task deleted since is not found.
func (s *store) replay(ctx context.Context, userID, key string, requestHash []byte) (Task, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var hash []byte
	var taskID int64
	err := s.pool.QueryRow(ctx, `SELECT request_hash, task_id FROM idempotency_keys WHERE user_id = $1 AND key = $2`,
		userID, key).Scan(&hash, &taskID)
	if err != nil {
		return Task{}, storeError(err)
	}
	if !bytes.Equal(hash, requestHash) {
		return Task{}, errKeyReused
	}
	return s.getTask(ctx, userID, taskID)
}

// deleteOldKeys forgets Idempotency-Keys older than idempotencyTTL.
func (s *store) deleteOldKeys(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	tag, err := s.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)`,
		idempotencyTTL.Seconds())
	return tag.RowsAffected(), storeError(err)
}

// The writes below take the versions a client's If-Match allows: nil for any
// version, else the task's updated_at must be one of them. The check is part
// of the statement, so nothing can change the task in between.

// updateTask applies a partial change in one statement; updated_at always moves forward.
func (s *store) updateTask(ctx context.Context, userID string, id int64, c taskChange, ifMatch []time.Time) (Task, error) {
	t, err := s.one(ctx, `UPDATE tasks SET
			title       = coalesce($3, title),
			description = CASE WHEN $4 THEN NULL ELSE coalesce($5, description) END,
			completed   = coalesce($6, completed),
			priority    = coalesce($7, priority),
			due_date    = CASE WHEN $8 THEN NULL ELSE coalesce($9, due_date) END,
			tags        = coalesce($10, tags),
			updated_at  = greatest(now(), updated_at + interval '1 microsecond')
		WHERE id = $1 AND user_id = $2 AND ($11::timestamptz[] IS NULL OR updated_at = ANY($11))
		RETURNING `+taskColumns,
		id, userID, c.Title, c.ClearDesc, c.Description, c.Completed, c.Priority, c.ClearDue, c.DueDate, c.Tags, ifMatch)
	return s.checkStale(ctx, userID, id, ifMatch, t, err)
}

// toggleTask flips completed in one statement, so concurrent toggles never lose one.
func (s *store) toggleTask(ctx context.Context, userID string, id int64, ifMatch []time.Time) (Task, error) {
	t, err := s.one(ctx, `UPDATE tasks SET completed = NOT completed,
			updated_at = greatest(now(), updated_at + interval '1 microsecond')
		WHERE id = $1 AND user_id = $2 AND ($3::timestamptz[] IS NULL OR updated_at = ANY($3))
		RETURNING `+taskColumns, id, userID, ifMatch)
	return s.checkStale(ctx, userID, id, ifMatch, t, err)
}

// deleteTask removes the user's task id.
func (s *store) deleteTask(ctx context.Context, userID string, id int64, ifMatch []time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var deleted int
	err := s.pool.QueryRow(ctx, `WITH gone AS (DELETE FROM tasks WHERE id = $1 AND user_id = $2
			AND ($3::timestamptz[] IS NULL OR updated_at = ANY($3)) RETURNING user_id),
		counted AS (UPDATE task_counts c SET n = c.n - 1 FROM gone WHERE c.user_id = gone.user_id)
		SELECT count(*) FROM gone`, id, userID, ifMatch).Scan(&deleted)
	if err != nil {
		return storeError(err)
	}
	if deleted == 0 {
		_, err = s.checkStale(ctx, userID, id, ifMatch, Task{}, errNotFound)
	}
	return err
}

// checkStale tells a failed precondition from a missing task, after a write
// under ifMatch found no row; that second read happens only then.
func (s *store) checkStale(ctx context.Context, userID string, id int64, ifMatch []time.Time, t Task, err error) (Task, error) {
	if !errors.Is(err, errNotFound) || ifMatch == nil {
		return t, err
	}
	current, getErr := s.getTask(ctx, userID, id)
	if getErr != nil {
		return t, getErr
	}
	return t, &staleError{Current: current}
}

// listOrders maps each sort key to its ORDER BY for ascending and descending order.
// Ties are broken by id in the same direction so pages are stable; tasks without a
// due date come last either way.
var listOrders = map[string][2]string{
	"created":  {"created_at, id", "created_at DESC, id DESC"},
	"updated":  {"updated_at, id", "updated_at DESC, id DESC"},
	"title":    {"lower(title), id", "lower(title) DESC, id DESC"},
	"due_date": {"due_date NULLS LAST, id", "due_date DESC NULLS LAST, id DESC"},
	"priority": {"array_position('{low,medium,high}', priority), id", "array_position('{low,medium,high}', priority) DESC, id DESC"},
}

// listTasks returns one page of the user's matching tasks and how many match in all.
// The WHERE clause holds only the filters asked for, so PostgreSQL never
// evaluates an unused one row by row; each combination is its own cached
// statement. The page is read with one row more than it shows: when nothing
// follows it, the total is the offset plus the page's length, and the list is
// one statement. A count follows only for a page with more after it, or an
// empty page past the end.
func (s *store) listTasks(ctx context.Context, userID string, q listQuery) ([]Task, int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	where, args := `WHERE user_id = $1`, []any{userID}
	if q.Completed != nil {
		args = append(args, *q.Completed)
		where += ` AND completed = $` + strconv.Itoa(len(args))
	}
	if q.Q != "" {
		args = append(args, q.Q)
		n := strconv.Itoa(len(args))
		where += ` AND (strpos(lower(title), lower($` + n + `)) > 0 OR strpos(lower(description), lower($` + n + `)) > 0)`
	}
	if len(q.Tags) > 0 {
		args = append(args, q.Tags)
		where += ` AND tags @> $` + strconv.Itoa(len(args))
	}
	order := listOrders[q.Sort][0]
	if q.Desc {
		order = listOrders[q.Sort][1]
	}
	n := len(args)
	page := ` ORDER BY ` + order + ` LIMIT $` + strconv.Itoa(n+1) + ` OFFSET $` + strconv.Itoa(n+2)
	rows, _ := s.pool.Query(ctx, `SELECT `+taskColumns+` FROM tasks `+where+page, append(args, q.Limit+1, q.Offset)...)
	tasks, err := pgx.CollectRows(rows, scanTask)
	if err != nil {
		return nil, 0, storeError(err)
	}
	more := len(tasks) > q.Limit
	if more {
		tasks = tasks[:q.Limit]
	}
	total := q.Offset + len(tasks)
	if more || len(tasks) == 0 && q.Offset > 0 {
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM tasks `+where, args[:n]...).Scan(&total); err != nil {
			return nil, 0, storeError(err)
		}
	}
	return tasks, total, nil
}

// storeError turns a driver error into a store error: no row is errNotFound; a
// rejected value is errRejected; anything about reaching the database is errUnavailable.
// Other errors are bugs and pass through for a 500.
func storeError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return errNotFound
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		// No answer from the server: a dial, network, pool or deadline failure.
		return fmt.Errorf("%w: %w", errUnavailable, err)
	}
	switch {
	case pgErr.Code == "23514", strings.HasPrefix(pgErr.Code, "22"): // check violation, data exception
		return fmt.Errorf("%w: %s", errRejected, pgErr.Code)
	case strings.HasPrefix(pgErr.Code, "08"), strings.HasPrefix(pgErr.Code, "53"),
		strings.HasPrefix(pgErr.Code, "57"): // connection, resources, operator intervention (incl. statement timeout)
		return fmt.Errorf("%w: %w", errUnavailable, err)
	}
	return err
}
