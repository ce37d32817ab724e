// task.go holds the task as stored and sent, the validated values that change or list tasks, and what the feed and a kept answer hold.
package main

import (
	"encoding/json"
	"time"
)

// Task is one task as stored and as sent to clients.
type Task struct {
	ID           int64           `json:"id"`
	UserID       string          `json:"user_id"`
	Title        string          `json:"title"`
	Description  *string         `json:"description"`
	Completed    bool            `json:"completed"`
	CompletedAt  *time.Time      `json:"completed_at"` // when it last became completed; nil while open
	Priority     string          `json:"priority"`
	DueDate      *Due            `json:"due_date"`
	Recurrence   *string         `json:"recurrence"`       // an RRULE in its one spelling (recurrence.go); nil for none
	RecurFrom    string          `json:"recur_from"`       // "due" or "completion"
	Timezone     *string         `json:"timezone"`         // the IANA zone an instant recurs in, and a date's or floating time's reminders count in; nil: UTC
	Reminders    json.RawMessage `json:"reminders"`        // a JSON array as parseReminders keeps it; [] for none
	NextReminder *time.Time      `json:"next_reminder_at"` // when the next one fires; nil for none
	Tags         []string        `json:"tags"`
	ParentID     *int64          `json:"parent_id"` // the task it is a subtask of; nil at the top
	Position     string          `json:"position"`  // orders it among its siblings, byte by byte (schema.sql's task_position)
	CreatedAt    time.Time       `json:"created_at"`
	UpdatedAt    time.Time       `json:"updated_at"`
	Version      int64           `json:"-"` // the user's version when it was last written: its ETag
	dueWall      *time.Time      // a recurring instant's wall clock in Timezone, as its series meant it (store.locked reads it)
}

// taskChange is a validated create or partial update; nil pointers leave a field as it is.
// Its JSON is what writeHash hashes: the names and order of its fields stay, and a field
// added later is left out while unset.
type taskChange struct {
	Title       *string         `json:"Title"`
	Description *string         `json:"Description"`
	ClearDesc   bool            `json:"ClearDesc"` // set description to NULL
	Completed   *bool           `json:"Completed"`
	Priority    *string         `json:"Priority"`
	DueDate     *Due            `json:"DueDate"`
	ClearDue    bool            `json:"ClearDue"` // set due_date to NULL
	Tags        []string        `json:"Tags"`
	Recurrence  *string         `json:"Recurrence,omitempty"`
	ClearRecur  bool            `json:"ClearRecur,omitempty"` // set recurrence to NULL
	RecurFrom   *string         `json:"RecurFrom,omitempty"`
	Timezone    *string         `json:"Timezone,omitempty"`
	ClearZone   bool            `json:"ClearZone,omitempty"` // set timezone to NULL
	Reminders   json.RawMessage `json:"Reminders,omitempty"` // a JSON array (parseReminders); nil leaves them, [] clears them
	ParentID    *int64          `json:"ParentID,omitempty"`  // a create's parent, or a move's: nil for the top
	After       *int64          `json:"After,omitempty"`     // the sibling a create or a move goes right after: nil for first
}

// listQuery is a validated list request.
type listQuery struct {
	Completed *bool    // nil: all
	Sort      listSort // one of listSorts
	Desc      bool     // descending
	Q         string   // literal, case-insensitive substring of title or description
	Tags      []string // all must be present
	Limit     int
	Offset    int
	After     *listKey // keyset paging: only the tasks after this place (a cursor); nil for none
	Total     bool     // count every matching task of a filtered list (total=true)
	Zone      string   // sort=due_date: the IANA zone (tz=) dates and floating times are read in; "" for UTC
	Parent    *int64   // parent_id=: only its subtasks, or with 0 (none) only top-level tasks; nil for all
}

// feedEntry is an entry of the change feed: a task in its latest state, or only
// its ID when it was deleted, or a reminder of it that fired, at DueDate.At, when
// UpdatedAt; Task.Version is the write that left it so.
type feedEntry struct {
	Task
	Kind byte // entryTask, entryDeleted or entryReminder
}

// The kinds of feed entries, as store.changes spells them.
const entryTask, entryDeleted, entryReminder = 't', 'd', 'r'

// noReminders is the reminders of a task that has none.
var noReminders = json.RawMessage(`[]`)

// answer is a write's first answer, kept with its Idempotency-Key: a retry gets it again.
type answer struct {
	Status   int
	ETag     string // "" for none
	Location string // "" for none
	Body     []byte // nil for none
}
