// store_test.go tests the store: the schema's constraints.
package main

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

func TestSchemaConstraints(t *testing.T) {
	ctx := context.Background()
	// Replicas starting at once: the migrations apply cleanly under their advisory lock.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := testDB.migrate(ctx, slog.New(slog.DiscardHandler)); err != nil {
				t.Errorf("migrating again: %v", err)
			}
		})
	}
	wg.Wait()
	// The database holds the limits even for a writer that skips the Go checks.
	for _, c := range []struct {
		name, title string
		tags        []string
	}{
		{"201-character title", strings.Repeat("日", 201), nil},
		{"blank title", "   ", nil},
		{"11 tags", "a", []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"}},
		{"33-character tag", "a", []string{strings.Repeat("t", 33)}},
		{"empty tag", "a", []string{""}},
		{"control character in a tag", "a", []string{"a\x1fb"}},
	} {
		_, err := testDB.pool.Exec(ctx, `INSERT INTO tasks (user_id, version, title, tags) VALUES ('constraint-test', 1, $1, coalesce($2, '{}'::text[]))`, c.title, c.tags)
		if err == nil || !strings.Contains(err.Error(), "23514") {
			t.Errorf("%s: insert = %v, want a check violation", c.name, err)
		}
	}
}
