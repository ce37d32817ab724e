// listsort.go holds the list's sort keys: their names, their SQL, and a task's value for each, which a cursor keeps.
package main

import (
	"fmt"
	"strconv"
	"strings"
)

// listSort is a sort key of the list, named in ?sort=. Ties are broken by id in
// the same direction so pages are stable; tasks without a due date come last either way.
type listSort struct {
	name          string         // its name in ?sort=
	desc          bool           // the natural direction: newest, soonest, high first; titles A to Z
	expr          string         // the key's SQL, %s for column
	column, param string         // the column, and its type as a parameter: timestamptz or text
	nullable      bool           // only due_date
	keys          []string       // the values a text key can take; nil for any
	value         func(Task) any // the column's value off a task, for a cursor: a time.Time, a string, or nil for NULL
}

// listSorts are the sort keys, in the order a message lists them; the first, "created", is the default.
var listSorts = []listSort{
	{"created", true, "%s", "created_at", "timestamptz", false, nil, func(t Task) any { return t.CreatedAt }},
	{"updated", true, "%s", "updated_at", "timestamptz", false, nil, func(t Task) any { return t.UpdatedAt }},
	{"title", false, "lower(%s COLLATE task_fold)", "title", "text", false, nil, func(t Task) any { return t.Title }},
	{"due_date", false, "%s", "due_date", "timestamptz", true, nil, func(t Task) any {
		if t.DueDate == nil {
			return nil
		}
		return t.DueDate.At
	}},
	{"priority", true, "array_position('{low,medium,high}', %s)", "priority", "text", false, priorities, func(t Task) any { return t.Priority }},
	{"position", false, "%s", "position", "text", false, nil, func(t Task) any { return t.Position }},
}

// key is the SQL of the sort key of a row, or with n > 0 of the value of parameter $n.
func (s listSort) key(n int) string {
	if n > 0 {
		return fmt.Sprintf(s.expr, "$"+strconv.Itoa(n)+"::"+s.param)
	}
	return fmt.Sprintf(s.expr, s.column)
}

// findSort returns the sort key named name.
func findSort(name string) (listSort, bool) {
	for _, s := range listSorts {
		if s.name == name {
			return s, true
		}
	}
	return listSort{}, false
}

// sortNames lists the sort keys as a message does: 'a', 'b' or 'c'.
func sortNames() string {
	names := make([]string, len(listSorts))
	for i, s := range listSorts {
		names[i] = "'" + s.name + "'"
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
