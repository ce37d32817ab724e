// store.go holds the PostgreSQL pool, the embedded schema and one method per SQL statement.
package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
)

// queryTimeout bounds every statement, including the wait for a pooled connection.
const queryTimeout = 5 * time.Second

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
	pool *pgxpool.Pool
}

// openStore builds a pool for url without connecting; connect dials lazily.
func openStore(url string) (*store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The parse error may quote the URL, password included: keep only what is safe.
		return nil, errors.New("DATABASE_URL is not a valid PostgreSQL URL or key=value string")
	}
	cfg.ConnConfig.ConnectTimeout = queryTimeout
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("open pool: %w", err)
	}
	return &store{pool: pool}, nil
}

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
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	return storeError(s.pool.Ping(ctx))
}

const taskColumns = `id, user_id, title, description, completed, priority, due_date, tags, created_at, updated_at`

// scanTask reads one row of taskColumns, then any extra columns into extra.
func scanTask(row pgx.Row, extra ...any) (Task, error) {
	var t Task
	dest := []any{&t.ID, &t.UserID, &t.Title, &t.Description, &t.Completed, &t.Priority,
		&t.DueDate, &t.Tags, &t.CreatedAt, &t.UpdatedAt}
	if err := row.Scan(append(dest, extra...)...); err != nil {
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

// one runs a statement that returns at most one task.
func (s *store) one(ctx context.Context, sql string, args ...any) (Task, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	t, err := scanTask(s.pool.QueryRow(ctx, sql, args...))
	return t, storeError(err)
}

// getTask returns the user's task id.
func (s *store) getTask(ctx context.Context, userID string, id int64) (Task, error) {
	return s.one(ctx, `SELECT `+taskColumns+` FROM tasks WHERE id = $1 AND user_id = $2`, id, userID)
}

// createTask inserts a task for the user unless they have maxTasks already; the
// change must carry a title. The count and the insert are one statement, so
// concurrent creates can overshoot the limit by at most the number in flight.
func (s *store) createTask(ctx context.Context, userID string, c taskChange, maxTasks int) (Task, error) {
	priority := "medium"
	if c.Priority != nil {
		priority = *c.Priority
	}
	tags := c.Tags
	if tags == nil {
		tags = []string{}
	}
	t, err := s.one(ctx, `INSERT INTO tasks (user_id, title, description, priority, due_date, tags)
		SELECT $1, $2, $3, $4, $5, $6
		WHERE (SELECT count(*) FROM tasks WHERE user_id = $1) < $7
		RETURNING `+taskColumns,
		userID, *c.Title, c.Description, priority, c.DueDate, tags, maxTasks)
	if errors.Is(err, errNotFound) {
		return t, errTaskLimit
	}
	return t, err
}

// updateTask applies a partial change in one statement; updated_at always moves forward.
func (s *store) updateTask(ctx context.Context, userID string, id int64, c taskChange) (Task, error) {
	return s.one(ctx, `UPDATE tasks SET
			title       = coalesce($3, title),
			description = CASE WHEN $4 THEN NULL ELSE coalesce($5, description) END,
			completed   = coalesce($6, completed),
			priority    = coalesce($7, priority),
			due_date    = CASE WHEN $8 THEN NULL ELSE coalesce($9, due_date) END,
			tags        = coalesce($10, tags),
			updated_at  = greatest(now(), updated_at + interval '1 microsecond')
		WHERE id = $1 AND user_id = $2 RETURNING `+taskColumns,
		id, userID, c.Title, c.ClearDesc, c.Description, c.Completed, c.Priority, c.ClearDue, c.DueDate, c.Tags)
}

// toggleTask flips completed in one statement, so concurrent toggles never lose one.
func (s *store) toggleTask(ctx context.Context, userID string, id int64) (Task, error) {
	return s.one(ctx, `UPDATE tasks SET completed = NOT completed,
			updated_at = greatest(now(), updated_at + interval '1 microsecond')
		WHERE id = $1 AND user_id = $2 RETURNING `+taskColumns, id, userID)
}

// deleteTask removes the user's task id.
func (s *store) deleteTask(ctx context.Context, userID string, id int64) error {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	tag, err := s.pool.Exec(ctx, `DELETE FROM tasks WHERE id = $1 AND user_id = $2`, id, userID)
	if err != nil {
		return storeError(err)
	}
	if tag.RowsAffected() == 0 {
		return errNotFound
	}
	return nil
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
func (s *store) listTasks(ctx context.Context, userID string, q listQuery) ([]Task, int, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	order := listOrders[q.Sort][0]
	if q.Desc {
		order = listOrders[q.Sort][1]
	}
	where := `WHERE user_id = $1
		AND ($2::boolean IS NULL OR completed = $2)
		AND ($3 = '' OR strpos(lower(title), lower($3)) > 0 OR strpos(lower(description), lower($3)) > 0)
		AND tags @> $4`
	tags := q.Tags
	if tags == nil {
		tags = []string{}
	}
	// The total rides along with the page, so a list is one statement.
	rows, err := s.pool.Query(ctx, `SELECT `+taskColumns+`, count(*) OVER () FROM tasks `+where+
		` ORDER BY `+order+` LIMIT $5 OFFSET $6`, userID, q.Completed, q.Q, tags, q.Limit, q.Offset)
	if err != nil {
		return nil, 0, storeError(err)
	}
	tasks := []Task{}
	total := 0
	for rows.Next() {
		t, err := scanTask(rows, &total)
		if err != nil {
			return nil, 0, storeError(err)
		}
		tasks = append(tasks, t)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, storeError(err)
	}
	if len(tasks) == 0 && q.Offset > 0 {
		// A page past the end carries no row to hold the total: count only then.
		err := s.pool.QueryRow(ctx, `SELECT count(*) FROM tasks `+where, userID, q.Completed, q.Q, tags).Scan(&total)
		if err != nil {
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
