// task.go holds the task as stored and sent, and the validated values that change or list tasks.
package main

import "time"

// Task is one task as stored and as sent to clients.
type Task struct {
	ID          int64      `json:"id"`
	UserID      string     `json:"user_id"`
	Title       string     `json:"title"`
	Description *string    `json:"description"`
	Completed   bool       `json:"completed"`
	CompletedAt *time.Time `json:"completed_at"` // when it last became completed; nil while open
	Priority    string     `json:"priority"`
	DueDate     *Due       `json:"due_date"`
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
	DueDate     *Due
	ClearDue    bool // set due_date to NULL
	Tags        []string
}

// listQuery is a validated list request.
type listQuery struct {
	Completed *bool    // nil: all
	Sort      string   // the name of one of listSorts
	Desc      bool     // descending
	Q         string   // literal, case-insensitive substring of title or description
	Tags      []string // all must be present
	Limit     int
	Offset    int
}

// newTask is a create: the change, the user's task limit, and the client's
// Idempotency-Key ("" for none) with a hash of the request it came with.
type newTask struct {
	taskChange
	MaxTasks    int
	Key         string
	RequestHash []byte
	LegacyHash  []byte // the hash an earlier release stored for the same request, when it differs
}
