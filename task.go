// task.go holds the task as stored and sent, the validated values that change or list tasks, and what the feed and a kept answer hold.
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
	After     *listKey // keyset paging: only the tasks after this place (a cursor); nil for none
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

// feedPos is a place in a user's change feed: after the change of version
// Version to the task ID (ID breaks ties, as between the version-0 tasks that a
// release before the feed inserts; math.MaxInt64 is after every task of Version).
type feedPos struct{ Version, ID int64 }

// change is an entry of the change feed: a task in its latest state, or only
// its ID when it was deleted; Version is the write that left it so.
type change struct {
	Task
	Version int64
	Deleted bool
}

// answer is a write's first answer, kept with its Idempotency-Key: a retry gets it again.
type answer struct {
	Status int
	ETag   string // "" for none
	Body   []byte // nil for none
}
