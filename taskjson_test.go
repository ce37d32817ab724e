// taskjson_test.go tests the hand-written task JSON writer (appendTask) against json.Marshal.
package main

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// checkAppendTask fails unless appendTask writes valid JSON that reads back as t,
// and as json.Marshal's output reads back.
func checkAppendTask(t *testing.T, task Task) {
	t.Helper()
	got := appendTask(nil, &task)
	want, err := json.Marshal(task)
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	if err := json.Unmarshal(got, &a); err != nil {
		t.Fatalf("appendTask wrote invalid JSON %s: %v", got, err)
	}
	json.Unmarshal(want, &b)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("appendTask = %s\njson.Marshal = %s", got, want)
	}
}

func TestAppendTask(t *testing.T) {
	due := time.Date(2026, 12, 1, 17, 0, 0, 123456000, time.UTC)
	for i, s := range []string{"", "plain", `quote " backslash \ slash /`, "tab\tnew\nline\rcr", "\x00\x01\x1f\x7f",
		"<html>&amp;", "日本語 é 🎉", "line\u2028para\u2029", "bad \xff\xfe utf8", "\ufffd literal", "\xed\xa0\x80 surrogate"} {
		checkAppendTask(t, Task{ID: 1 << 40, UserID: s, Title: s, Description: &s, Priority: "high", DueDate: &Due{due, dueKind(i % 3)},
			Tags: []string{s, "x"}, CreatedAt: due, UpdatedAt: due.Add(time.Microsecond), Completed: i%2 == 1, CompletedAt: map[bool]*time.Time{true: &due}[i%2 == 1]})
	}
	checkAppendTask(t, Task{ID: 7, Tags: []string{}, CreatedAt: time.Unix(0, 0).UTC(), UpdatedAt: time.Unix(1, 0).UTC()})
	checkAppendTask(t, Task{ID: 8, Tags: []string{}, ParentID: new(int64(7)), Position: "Bz0V", CreatedAt: time.Unix(0, 0).UTC(), UpdatedAt: time.Unix(1, 0).UTC()})
}

func FuzzAppendTask(f *testing.F) {
	f.Add("title", "description", "tag", int64(1), int64(1795680000123456), true)
	f.Fuzz(func(t *testing.T, title, description, tag string, id, micros int64, completed bool) {
		ts := time.UnixMicro(int64(uint64(micros) % 253402300799000000)).UTC() // within years 1970 to 9999
		checkAppendTask(t, Task{ID: id, UserID: tag, Title: title, Description: &description, Completed: completed,
			Priority: "low", DueDate: &Due{ts, dueKind(uint64(id) % 3)}, Tags: []string{tag, title}, CreatedAt: ts, UpdatedAt: ts})
	})
}
