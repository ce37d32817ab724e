// taskrow_test.go tests the binary row decoder (taskFromBinary) against pgx's own codecs.
package main

import (
	"context"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// TestScanTaskFromBinary: tasks decoded from the binary format by taskFromBinary
// equal what pgx's Scan makes of the same rows, read over the simple protocol
// (text format, where scanTask leaves every row to pgx).
func TestScanTaskFromBinary(t *testing.T) {
	ctx := context.Background()
	user := newUser(t)
	_, err := testDB.pool.Exec(ctx, `INSERT INTO tasks (user_id, version, title, description, completed, priority, due_date, due_kind, tags, created_at, position) VALUES
		($1, 1, 'plain', NULL, false, 'medium', NULL, NULL, '{}', now(), task_position_first(1)),
		($1, 2, '日本語 "quoted" \ é 🎉', 'tab	and
newline', true, 'high', '1969-07-20 20:17:40.5+00', 'instant', '{"a,b","c d","{e}","\"f\""}', '1999-12-31 23:59:59.999999+00', 'z'),
		($1, 9223372036854775807, 't', '', false, 'low', '9999-12-31 23:59:59.999999+00', 'local', '{x}', '0001-01-01 00:00:00+00', task_position_first(9223372036854775807))`, user)
	if err == nil { // a subtask, the last created: the list's first
		_, err = testDB.pool.Exec(ctx, `INSERT INTO tasks (user_id, version, title, parent_id, position) SELECT $1::text, 3, 'child', max(id), '0z' FROM tasks WHERE user_id = $1::text`, user)
	}
	if err != nil {
		t.Fatal(err)
	}
	simple := testStore(t, testURL+"&default_query_exec_mode=simple_protocol", 5*time.Second)
	q, _ := parseListQuery(httptest.NewRequest("GET", "/", nil))
	viaBinary, _, _, err := testDB.listTasks(ctx, user, q)
	if err != nil {
		t.Fatal(err)
	}
	viaPgx, _, _, err := simple.listTasks(ctx, user, q)
	if err != nil {
		t.Fatal(err)
	}
	if len(viaBinary) != 4 || !reflect.DeepEqual(viaBinary, viaPgx) || viaBinary[0].ParentID == nil || viaBinary[0].Position != "0z" {
		t.Fatalf("binary decoding:\n%+v\npgx's Scan:\n%+v", viaBinary, viaPgx)
	}
	// And unless the test database is read in a mode whose results are text (exec,
	// simple_protocol), the rows really were decoded by taskFromBinary.
	if strings.Contains(testURL, "exec_mode=exec") || strings.Contains(testURL, "exec_mode=simple_protocol") {
		return
	}
	rows, err := testDB.pool.Query(ctx, `SELECT `+taskColumns+` FROM tasks WHERE user_id = $1`, user)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		if _, ok := taskFromBinary(rows.FieldDescriptions(), rows.RawValues()); !ok {
			t.Fatalf("taskFromBinary refused a row of %v", rows.FieldDescriptions())
		}
	}
}

// FuzzTaskFromBinary holds taskFromBinary to pgx's own binary codecs on arbitrary
// tags and timestamps: whatever it accepts, pgx must read the same way.
func FuzzTaskFromBinary(f *testing.F) {
	m := pgtype.NewMap()
	encode := func(oid uint32, v any) []byte { return must(m.Encode(oid, pgtype.BinaryFormatCode, v, nil)) }
	f.Add(encode(pgtype.TextArrayOID, []string{"a", `b,"c"`, "日本"}), encode(pgtype.TimestamptzOID, time.Date(2026, 11, 26, 12, 0, 0, 123456000, time.UTC)))
	f.Add(encode(pgtype.TextArrayOID, []string{}), encode(pgtype.TimestamptzOID, time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)))
	fields := make([]pgconn.FieldDescription, len(taskColumnTypes))
	for i, oid := range taskColumnTypes {
		fields[i] = pgconn.FieldDescription{DataTypeOID: oid, Format: pgx.BinaryFormatCode}
	}
	id := encode(pgtype.Int8OID, int64(7))
	f.Fuzz(func(t *testing.T, tags, ts []byte) {
		got, ok := taskFromBinary(fields, [][]byte{id, []byte("u"), []byte("t"), nil, {1}, []byte("low"), ts, tags, ts, ts, []byte("local"), ts,
			id, nil, []byte("due"), nil, nil, nil, id, []byte("V")})
		if !ok {
			return
		}
		if *got.ParentID != 7 || got.Position != "V" || got.Version != 7 {
			t.Fatalf("parent_id, position, version decoded as %v %q %d", *got.ParentID, got.Position, got.Version)
		}
		var wantTags []string
		var wantTime time.Time
		if err := m.Scan(pgtype.TextArrayOID, pgtype.BinaryFormatCode, tags, &wantTags); err != nil {
			t.Fatalf("tags %x: decoded as %q, pgx: %v", tags, got.Tags, err)
		}
		if err := m.Scan(pgtype.TimestamptzOID, pgtype.BinaryFormatCode, ts, &wantTime); err != nil {
			t.Fatalf("timestamp %x: decoded as %v, pgx: %v", ts, got.CreatedAt, err)
		}
		if !slices.Equal(got.Tags, wantTags) && len(got.Tags)+len(wantTags) > 0 || !got.CreatedAt.Equal(wantTime) || !got.DueDate.At.Equal(wantTime) || got.DueDate.Kind != dueLocal || !got.CompletedAt.Equal(wantTime) {
			t.Fatalf("tags %x, timestamp %x: decoded %q %v, pgx %q %v", tags, ts, got.Tags, got.CreatedAt, wantTags, wantTime)
		}
	})
}
