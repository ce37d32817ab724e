// mcp_test.go tests /mcp through the real handler: the handshake and transport, every tool, errors, isolation, auth, the metadata and the Origin check.
package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// rpcAnswer is a JSON-RPC response as a client reads it.
type rpcAnswer struct {
	JSONRPC string
	ID      json.RawMessage
	Result  json.RawMessage
	Error   *rpcError
}

// toolAnswer is a tools/call result as a client reads it.
type toolAnswer struct {
	Content []struct {
		Type, Text string
	}
	StructuredContent json.RawMessage
	IsError           bool
}

// call sends a JSON-RPC request for method with params to /mcp and returns its response, which must be a 200.
func (e *env) call(token, method string, params any, header ...string) rpcAnswer {
	e.t.Helper()
	msg := map[string]any{"jsonrpc": "2.0", "id": 7, "method": method}
	if params != nil {
		msg["params"] = params
	}
	r := e.do("POST", "/mcp", token, msg, header...)
	e.want(r, 200, "POST /mcp "+method)
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		e.t.Fatalf("POST /mcp %s: Content-Type %q", method, ct)
	}
	a := decode[rpcAnswer](e.t, r)
	if a.JSONRPC != "2.0" || string(a.ID) != "7" || (a.Result == nil) == (a.Error == nil) {
		e.t.Fatalf("POST /mcp %s = %s, not a response to id 7", method, r.body)
	}
	return a
}

// tool calls a tool with args and returns its result; isError says whether the tool must refuse the call.
func (e *env) tool(token, name string, args any, isError bool) toolAnswer {
	e.t.Helper()
	a := e.call(token, "tools/call", map[string]any{"name": name, "arguments": args})
	if a.Error != nil {
		e.t.Fatalf("%s(%v): JSON-RPC error %+v", name, args, a.Error)
	}
	var res toolAnswer
	if err := json.Unmarshal(a.Result, &res); err != nil || len(res.Content) != 1 || res.Content[0].Type != "text" || res.Content[0].Text == "" {
		e.t.Fatalf("%s(%v) = %s, want one text content (%v)", name, args, a.Result, err)
	}
	if res.IsError != isError || !isError && res.StructuredContent == nil || isError && res.StructuredContent != nil {
		e.t.Fatalf("%s(%v) = %s, want isError %v", name, args, a.Result, isError)
	}
	return res
}

func TestMCPHandshake(t *testing.T) {
	e := newEnv(t, hsAuth())
	tok := tokenFor(t, newUser(t))
	init := func(asked string) map[string]any {
		return map[string]any{"protocolVersion": asked, "capabilities": map[string]any{}, "clientInfo": map[string]any{"name": "test", "version": "1"}}
	}
	for asked, want := range map[string]string{"2025-11-25": "2025-11-25", "2025-06-18": "2025-06-18", "2025-03-26": "2025-11-25", "1999-01-01": "2025-11-25"} {
		var got struct {
			ProtocolVersion string
			Capabilities    struct{ Tools *struct{} }
			ServerInfo      struct{ Name, Version string }
		}
		json.Unmarshal(e.call(tok, "initialize", init(asked)).Result, &got)
		if got.ProtocolVersion != want || got.Capabilities.Tools == nil || got.ServerInfo.Name != "tasks" || got.ServerInfo.Version != release {
			t.Errorf("initialize asking for %s = %+v, want %s with tools", asked, got, want)
		}
	}
	if a := e.call(tok, "ping", nil, "MCP-Protocol-Version", "2025-06-18"); string(a.Result) != "{}" {
		t.Errorf("ping = %s, want {}", a.Result)
	}
	if a := e.call(tok, "resources/list", map[string]any{}); a.Error == nil || a.Error.Code != rpcMethodNotFound {
		t.Errorf("an unknown method = %+v, want %d", a, rpcMethodNotFound)
	}
	if a := e.call(tok, "initialize", map[string]any{"capabilities": map[string]any{}}); a.Error == nil || a.Error.Code != rpcInvalidParams {
		t.Errorf("initialize without protocolVersion = %+v, want %d", a, rpcInvalidParams)
	}
	// Notifications, known or not, and a client's response: 202, no body.
	for _, msg := range []string{`{"jsonrpc":"2.0","method":"notifications/initialized"}`, `{"jsonrpc":"2.0","method":"notifications/whatever","params":{}}`,
		`{"jsonrpc":"2.0","id":"s1","result":{}}`} {
		if r := e.do("POST", "/mcp", tok, msg, "Content-Type", "application/json"); r.status != 202 || len(r.body) != 0 {
			t.Errorf("POST %s = %s, want 202 and no body", msg, r)
		}
	}
	// What is no message: 400 with a JSON-RPC error, and the request's id where it can be read (JSON-RPC 2.0 §5),
	// else none (2025-11-25's schema has no null id).
	for _, c := range []struct {
		msg, version string
		code         int
		id           string
	}{
		{`{"jsonrpc":"2.0","id":1,"method":`, "", rpcParseError, ""}, {`[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, "", rpcInvalidRequest, ""},
		{`{"id":1,"method":"ping"}`, "", rpcInvalidRequest, "1"}, {`{"jsonrpc":"1.0","id":"a","method":"ping"}`, "", rpcInvalidRequest, `"a"`},
		{`{"jsonrpc":"2.0","id":null,"method":"ping"}`, "", rpcInvalidRequest, ""}, {`{"jsonrpc":"2.0","id":{},"method":"ping"}`, "", rpcInvalidRequest, ""},
		{`{"jsonrpc":"2.0","id":-1.5,"method":7}`, "", rpcInvalidRequest, "-1.5"}, {`{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}`, "", rpcParseError, ""},
		{`"ping"`, "", rpcInvalidRequest, ""}, {`{"jsonrpc":"2.0","id":3,"method":"ping"}`, "2024-11-05", rpcInvalidRequest, "3"},
		{`{"jsonrpc":"2.0","method":"notifications/initialized"}`, "2024-11-05", rpcInvalidRequest, ""},
	} {
		r := e.do("POST", "/mcp", tok, c.msg, "Content-Type", "application/json", "MCP-Protocol-Version", c.version)
		a := decode[rpcAnswer](t, r)
		if r.status != 400 || a.Error == nil || a.Error.Code != c.code || string(a.ID) != c.id || strings.Contains(string(r.body), `"id":null`) {
			t.Errorf("POST %s (MCP-Protocol-Version %q) = %s, want 400 with error %d and id %q", c.msg, c.version, r, c.code, c.id)
		}
	}
	if a := e.call(tok, "ping", []int{1}); a.Error == nil || a.Error.Code != rpcInvalidParams {
		t.Errorf("params as an array = %+v, want %d", a, rpcInvalidParams)
	}
	e.want(e.do("POST", "/mcp", tok, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, "Content-Type", "text/plain"), 415, "a body not application/json")
	e.want(e.do("GET", "/mcp", tok, nil), 405, "GET /mcp (no stream offered)")
	e.want(e.do("DELETE", "/mcp", tok, nil), 405, "DELETE /mcp (no sessions)")
}

func TestMCPTools(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	tok := tokenFor(t, user)

	var listed struct{ Tools []map[string]any }
	json.Unmarshal(e.call(tok, "tools/list", map[string]any{}).Result, &listed)
	var names []string
	for _, tool := range listed.Tools {
		names = append(names, tool["name"].(string))
		name, hints := tool["name"].(string), tool["annotations"].(map[string]any)
		in, out := tool["inputSchema"].(map[string]any), tool["outputSchema"].(map[string]any)
		readOnly, idempotent := name == "list_tasks" || name == "get_task", slices.Contains([]string{"list_tasks", "get_task", "reopen_task", "delete_task", "move_task"}, name)
		if in["type"] != "object" || out["type"] != "object" || strings.Contains(fmt.Sprint(in, out), "$ref") || tool["description"] == "" ||
			hints["readOnlyHint"] != readOnly || hints["destructiveHint"] != (name == "delete_task") || hints["idempotentHint"] != idempotent {
			t.Errorf("tool %v", tool)
		}
	}
	if want := []string{"list_tasks", "get_task", "add_tasks", "update_task", "complete_task", "reopen_task", "delete_task", "move_task"}; !slices.Equal(names, want) {
		t.Fatalf("tools/list names %v, want %v", names, want)
	}
	items := listed.Tools[2]["inputSchema"].(map[string]any)["properties"].(map[string]any)["tasks"].(map[string]any)
	if title := items["items"].(map[string]any)["properties"].(map[string]any)["title"].(map[string]any); items["maxItems"] != float64(maxAddTasks) || title["maxLength"] != float64(maxTitle) {
		t.Errorf("add_tasks's schema: %v", items)
	}

	var added struct{ Tasks []Task }
	json.Unmarshal(e.tool(tok, "add_tasks", map[string]any{"tasks": []any{
		map[string]any{"title": "Buy milk", "tags": []string{"home"}, "priority": "high"},
		map[string]any{"title": "Water plants", "due_date": "2026-12-07", "recurrence": "FREQ=WEEKLY"},
		map[string]any{"title": "File taxes", "description": "before April"}}}, false).StructuredContent, &added)
	if len(added.Tasks) != 3 || added.Tasks[0].Title != "Buy milk" || added.Tasks[0].UserID != user || *added.Tasks[1].Recurrence != "FREQ=WEEKLY" {
		t.Fatalf("add_tasks = %+v", added)
	}
	milk, plants, taxes := added.Tasks[0], added.Tasks[1], added.Tasks[2]
	if list, _ := e.list(user, ""); len(list) != 3 {
		t.Fatalf("the API lists %d tasks after add_tasks, want 3", len(list))
	}

	var got Task
	json.Unmarshal(e.tool(tok, "get_task", map[string]any{"id": milk.ID}, false).StructuredContent, &got)
	if got.ID != milk.ID || got.Title != "Buy milk" {
		t.Errorf("get_task = %+v", got)
	}
	res := e.tool(tok, "update_task", map[string]any{"id": taxes.ID, "title": "File taxes 2026", "description": nil, "tags": []string{"admin"}}, false)
	json.Unmarshal(res.StructuredContent, &got)
	if got.Title != "File taxes 2026" || got.Description != nil || !slices.Equal(got.Tags, []string{"admin"}) || !strings.Contains(res.Content[0].Text, "File taxes 2026") {
		t.Errorf("update_task = %+v, %q", got, res.Content[0].Text)
	}

	// complete_task and reopen_task set the state: twice is the same as once.
	for range 2 {
		json.Unmarshal(e.tool(tok, "complete_task", map[string]any{"id": milk.ID}, false).StructuredContent, &got)
		if !got.Completed || got.CompletedAt == nil {
			t.Fatalf("complete_task = %+v", got)
		}
	}
	for range 2 {
		json.Unmarshal(e.tool(tok, "reopen_task", map[string]any{"id": milk.ID}, false).StructuredContent, &got)
		if got.Completed || got.CompletedAt != nil {
			t.Fatalf("reopen_task = %+v", got)
		}
	}
	// move_task nests a task as the move route does; list_tasks takes parent_id; a recurring parent is the API's 422.
	json.Unmarshal(e.tool(tok, "move_task", map[string]any{"id": taxes.ID, "parent_id": milk.ID, "idempotency_key": "nest"}, false).StructuredContent, &got)
	var children struct{ Tasks []Task }
	json.Unmarshal(e.tool(tok, "list_tasks", map[string]any{"parent_id": milk.ID}, false).StructuredContent, &children)
	if got.ParentID == nil || *got.ParentID != milk.ID || len(children.Tasks) != 1 || children.Tasks[0].ID != taxes.ID {
		t.Fatalf("move_task under %d = %+v, list_tasks parent_id = %+v", milk.ID, got, children)
	}
	if res := e.tool(tok, "move_task", map[string]any{"id": taxes.ID, "parent_id": plants.ID}, true); !strings.Contains(res.Content[0].Text, "parent_id") {
		t.Errorf("move_task under a recurring task = %q, want the API's 422 on parent_id", res.Content[0].Text)
	}
	// A recurring task completes as through the API: it moves to its next occurrence, the one done is kept.
	json.Unmarshal(e.tool(tok, "complete_task", map[string]any{"id": plants.ID, "idempotency_key": "plants-1"}, false).StructuredContent, &got)
	if got.Completed || got.DueDate == nil || got.DueDate.At.Format(time.DateOnly) != "2026-12-14" {
		t.Fatalf("complete_task of a weekly task = %+v, want it open, due 2026-12-14", got)
	}
	json.Unmarshal(e.tool(tok, "complete_task", map[string]any{"id": plants.ID, "idempotency_key": "plants-1"}, false).StructuredContent, &got)
	if got.DueDate.At.Format(time.DateOnly) != "2026-12-14" {
		t.Fatalf("complete_task retried with its key = %+v, want the first answer", got)
	}
	if done, _ := e.list(user, "?status=completed"); len(done) != 1 || done[0].Title != "Water plants" {
		t.Fatalf("completed tasks after completing a series: %+v", done)
	}

	// list_tasks: the list route's filters, and next_cursor through a list cut short.
	var page struct {
		Tasks      []Task
		NextCursor *string `json:"next_cursor"`
		Total      *int
	}
	json.Unmarshal(e.tool(tok, "list_tasks", map[string]any{"status": "pending", "tag": []string{"home"}, "q": "MILK"}, false).StructuredContent, &page)
	if len(page.Tasks) != 1 || page.Tasks[0].ID != milk.ID || page.NextCursor != nil {
		t.Fatalf("list_tasks pending, tag home, q MILK = %+v", page)
	}
	var seen []int64
	args := map[string]any{"sort": "title", "order": "asc", "limit": json.RawMessage("2.0")} // 2.0 and 2e0 are JSON Schema integers
	for {
		res := e.tool(tok, "list_tasks", args, false)
		page.NextCursor = nil
		json.Unmarshal(res.StructuredContent, &page)
		for _, t := range page.Tasks {
			seen = append(seen, t.ID)
		}
		if page.NextCursor == nil {
			break
		}
		args["cursor"] = *page.NextCursor
		if !strings.Contains(res.Content[0].Text, *page.NextCursor) {
			t.Errorf("list_tasks's text does not give its next_cursor: %q", res.Content[0].Text)
		}
	}
	if len(seen) != 4 { // three, and the occurrence done
		t.Fatalf("list_tasks by pages of 2 saw %v, want 4 tasks", seen)
	}

	// The writes reached the change feed, as the API's do.
	var feed struct{ Tasks []Task }
	json.Unmarshal(e.do("GET", "/api/"+user+"/changes", tok, nil).body, &feed)
	if len(feed.Tasks) != 4 {
		t.Errorf("the feed holds %d tasks, want 4", len(feed.Tasks))
	}

	res = e.tool(tok, "delete_task", map[string]any{"id": json.RawMessage(fmt.Sprintf("%de0", taxes.ID))}, false)
	if string(res.StructuredContent) != fmt.Sprintf(`{"deleted":%d}`, taxes.ID) {
		t.Errorf("delete_task = %s", res.StructuredContent)
	}
	if res := e.tool(tok, "get_task", map[string]any{"id": taxes.ID}, true); !strings.Contains(res.Content[0].Text, "Task not found") {
		t.Errorf("get_task of a deleted task = %q", res.Content[0].Text)
	}

	// add_tasks with an idempotency_key: a retry creates nothing more; the key with other tasks is refused.
	once := map[string]any{"tasks": []any{map[string]any{"title": "Once"}}, "idempotency_key": "add-1"}
	first, again := e.tool(tok, "add_tasks", once, false), e.tool(tok, "add_tasks", once, false)
	if string(first.StructuredContent) != string(again.StructuredContent) {
		t.Errorf("add_tasks retried: %s, then %s", first.StructuredContent, again.StructuredContent)
	}
	once["tasks"] = []any{map[string]any{"title": "Twice"}}
	if res := e.tool(tok, "add_tasks", once, true); !strings.Contains(res.Content[0].Text, "idempotency_key_reused") {
		t.Errorf("add_tasks with a used key and other tasks: %q", res.Content[0].Text)
	}
	if list, _ := e.list(user, "?q=Once"); len(list) != 1 {
		t.Errorf("%d tasks Once after a retried add_tasks, want 1", len(list))
	}
}

func TestMCPErrors(t *testing.T) {
	e := newEnv(t, hsAuth(), func(c *config) { c.MaxTasks = 3 })
	user := newUser(t)
	tok := tokenFor(t, user)
	refused := func(name string, args map[string]any, want ...string) {
		t.Helper()
		res := e.tool(tok, name, args, true)
		for _, w := range want {
			if !strings.Contains(res.Content[0].Text, w) {
				t.Errorf("%s(%v) = %q, want it to say %s", name, args, res.Content[0].Text, w)
			}
		}
	}
	// The API's own messages, at the fields they are about.
	refused("add_tasks", map[string]any{"tasks": []any{map[string]any{"title": ""}, map[string]any{"title": "ok", "priority": "urgent", "colour": "red"}}},
		`"loc":["tasks",0,"title"],"msg":"String should have at least 1 character"`, `"loc":["tasks",1,"priority"]`, `"loc":["tasks",1,"colour"],"msg":"Extra inputs are not permitted"`)
	refused("add_tasks", map[string]any{"tasks": []any{}}, `"loc":["arguments","tasks"]`)
	refused("add_tasks", map[string]any{"tasks": slices.Repeat([]any{map[string]any{"title": "x"}}, maxAddTasks+1)}, "1 to 50 tasks")
	refused("add_tasks", map[string]any{"tasks": []any{map[string]any{"title": "x"}}, "idempotency_key": "bad key"}, `"loc":["header","Idempotency-Key"]`)
	refused("add_tasks", map[string]any{"tasks": []any{map[string]any{"title": "x", "recurrence": "FREQ=DAILY"}}}, "A recurring task needs a due date")
	refused("update_task", map[string]any{"id": 1, "title": strings.Repeat("x", maxTitle+1)}, "String should have at most 200 characters")
	refused("get_task", map[string]any{"id": "abc"}, `"loc":["path","id"],"msg":"Input should be a positive integer"`)
	refused("get_task", map[string]any{}, `"loc":["path","id"]`)
	refused("complete_task", map[string]any{"id": 1.5}, `"loc":["path","id"]`)
	refused("reopen_task", map[string]any{"id": json.RawMessage("9007199254740993.0")}, `"loc":["path","id"]`) // not rounded to a whole number
	refused("delete_task", map[string]any{"id": 999999999}, "Task not found")
	refused("list_tasks", map[string]any{"status": "done", "limit": 0, "sort": true}, `"loc":["query","status"]`, `"loc":["query","limit"]`, `"loc":["query","sort"]`)
	// An argument the tool's inputSchema does not list is refused, by every tool, before anything is done.
	extra := func(name string) string {
		return `{"loc":["arguments","` + name + `"],"msg":"Extra inputs are not permitted","type":"extra_forbidden"}`
	}
	task := e.create(user, map[string]any{"title": "kept"})
	refused("list_tasks", map[string]any{"stauts": "completed"}, extra("stauts"))
	refused("list_tasks", map[string]any{"offset": 5, "tz": "UTC", "limit": 1}, extra("offset")+","+extra("tz")+"]")
	refused("get_task", map[string]any{"id": task.ID, "user_id": "someone"}, extra("user_id"))
	refused("add_tasks", map[string]any{"tasks": []any{map[string]any{"title": "x"}}, "bogus": 1}, extra("bogus"))
	refused("add_tasks", map[string]any{"tasks": []any{map[string]any{"title": "x"}}, "idempotencyKey": "k1"}, extra("idempotencyKey"))
	refused("update_task", map[string]any{"id": task.ID, "title": "y", "colour": "red"}, extra("colour"))
	refused("complete_task", map[string]any{"id": task.ID, "title": "x"}, extra("title"))
	refused("reopen_task", map[string]any{"id": task.ID, "completed": true}, extra("completed"))
	refused("delete_task", map[string]any{"id": task.ID, "force": true}, extra("force"))
	if list, _ := e.list(user, ""); len(list) != 1 || list[0].Title != "kept" || list[0].Completed || !list[0].UpdatedAt.Equal(task.UpdatedAt) {
		t.Fatalf("refused calls changed the tasks: %+v", list)
	}
	e.tool(tok, "delete_task", map[string]any{"id": task.ID}, false)
	// All of add_tasks or none: past the task limit, none is created.
	refused("add_tasks", map[string]any{"tasks": slices.Repeat([]any{map[string]any{"title": "x"}}, 4)}, "409", "Task limit reached")
	if list, _ := e.list(user, ""); len(list) != 0 {
		t.Fatalf("a refused add_tasks left %d tasks", len(list))
	}
	// A call that is no tool call is a protocol error.
	for _, params := range []map[string]any{{"name": "drop_tables"}, {"name": "list_tasks", "arguments": []int{}}, {"arguments": map[string]any{}}} {
		if a := e.call(tok, "tools/call", params); a.Error == nil || a.Error.Code != rpcInvalidParams {
			t.Errorf("tools/call %v = %+v, want error %d", params, a, rpcInvalidParams)
		}
	}

	// A failure of the server's is a JSON-RPC error that says nothing of its cause, whose log line does.
	down := testStore(t, "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1", time.Second)
	logs := &syncBuffer{}
	m := &middleware{mux: http.NewServeMux(), log: slog.New(slog.NewJSONHandler(logs, nil))}
	m.mux.HandleFunc("POST /mcp", newMCPServer(newVerifier(hsAuth(), nil, nil), nil, down, testConfig(hsAuth())).handle)
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	r, err := send(srv.Client(), srv.URL, "POST", "/mcp", tok, map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": map[string]any{"name": "list_tasks"}})
	if a := decode[rpcAnswer](t, r); err != nil || r.status != 200 || a.Error == nil || a.Error.Code != rpcInternalError || strings.Contains(string(r.body), "127.0.0.1") {
		t.Errorf("a tool call with the database down = %s, %v; want JSON-RPC error %d", r, err, rpcInternalError)
	}
	if !strings.Contains(logs.String(), `"level":"ERROR"`) || !strings.Contains(logs.String(), "database unavailable") {
		t.Errorf("the call's log line: %s", logs)
	}
}

func TestMCPIsolation(t *testing.T) {
	e := newEnv(t, hsAuth())
	alice, bob := newUser(t), newUser(t)
	mine := e.create(alice, map[string]any{"title": "Alice's"})
	tb := tokenFor(t, bob)
	e.tool(tb, "add_tasks", map[string]any{"tasks": []any{map[string]any{"title": "Bob's"}}}, false)
	for _, name := range []string{"get_task", "update_task", "complete_task", "reopen_task", "delete_task"} {
		if res := e.tool(tb, name, map[string]any{"id": mine.ID}, true); !strings.Contains(res.Content[0].Text, "Task not found") {
			t.Errorf("%s of another user's task as Bob = %q, want Task not found", name, res.Content[0].Text)
		}
	}
	var page struct{ Tasks []Task }
	json.Unmarshal(e.tool(tb, "list_tasks", map[string]any{}, false).StructuredContent, &page)
	if len(page.Tasks) != 1 || page.Tasks[0].UserID != bob {
		t.Errorf("Bob's list_tasks = %+v", page.Tasks)
	}
	if list, _ := e.list(alice, ""); len(list) != 1 || list[0].Title != "Alice's" || list[0].Completed || !list[0].UpdatedAt.Equal(mine.UpdatedAt) {
		t.Errorf("Alice's tasks after Bob's calls: %+v", list)
	}
}

func TestMCPAuth(t *testing.T) {
	// Better Auth with its OAuth provider: JWT access tokens from its JWKS, for the resource MCP_URL.
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	keys := newKeyServer(t)
	keys.add(jwkOf(t, "ed", key.Public()))
	auth := keys.srv
	env := map[string]string{"BETTER_AUTH_URL": auth.URL, "BETTER_AUTH_SECRET": testSecret, "MCP_URL": "https://tasks.example/mcp"}
	cfg, err := loadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	cfg.DirectURL, cfg.RateBurst, cfg.RatePerSecond = testDirectURL, 1000, 1000
	e := newEnvDB(t, testDB, cfg)
	user := newUser(t)
	ping := map[string]any{"jsonrpc": "2.0", "id": 1, "method": "ping"}
	// oauthTyped is an access token as Better Auth's OAuth provider signs it, with typ in its header ("": none) and claims changed.
	oauthTyped := func(typ string, claims jwt.MapClaims) string {
		c := jwt.MapClaims{"sub": user, "iss": auth.URL + "/api/auth", "aud": "https://tasks.example/mcp", "azp": "client", "scope": "openid",
			"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}
		for k, v := range claims {
			c[k] = v
		}
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
		if tok.Header["kid"], tok.Header["typ"] = "ed", typ; typ == "" {
			delete(tok.Header, "typ")
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	oauth := func(claims jwt.MapClaims) string { return oauthTyped("at+jwt", claims) }

	// Without a valid token: 401, and the challenge that names the metadata.
	for token, challenge := range map[string]string{"": `Bearer resource_metadata="https://tasks.example/.well-known/oauth-protected-resource"`,
		"not-a-jwt": `Bearer resource_metadata="https://tasks.example/.well-known/oauth-protected-resource", error="invalid_token"`,
		oauth(jwt.MapClaims{"aud": "https://other.example/mcp"}):       `Bearer resource_metadata="https://tasks.example/.well-known/oauth-protected-resource", error="invalid_token"`,
		oauth(jwt.MapClaims{"iss": "https://impostor.example"}):        `Bearer resource_metadata="https://tasks.example/.well-known/oauth-protected-resource", error="invalid_token"`,
		oauth(jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()}): `Bearer resource_metadata="https://tasks.example/.well-known/oauth-protected-resource", error="invalid_token"`,
		// Not an access token (RFC 9068 §4): an ID token, or one without typ, signed with the same key for the same audience.
		oauthTyped("JWT", nil): `Bearer resource_metadata="https://tasks.example/.well-known/oauth-protected-resource", error="invalid_token"`,
		oauthTyped("", nil):    `Bearer resource_metadata="https://tasks.example/.well-known/oauth-protected-resource", error="invalid_token"`,
		// An HS256 token whose aud names another service: the API does not check HS256 tokens' aud without JWT_AUDIENCE, /mcp does.
		hsToken(t, jwt.MapClaims{"sub": user, "aud": "https://other.example.com", "exp": time.Now().Add(time.Hour).Unix()}):       `Bearer resource_metadata="https://tasks.example/.well-known/oauth-protected-resource", error="invalid_token"`,
		hsToken(t, jwt.MapClaims{"sub": user, "aud": []string{"", "https://x.example"}, "exp": time.Now().Add(time.Hour).Unix()}): `Bearer resource_metadata="https://tasks.example/.well-known/oauth-protected-resource", error="invalid_token"`,
	} {
		r := e.do("POST", "/mcp", token, ping)
		if r.status != 401 || r.header.Get("WWW-Authenticate") != challenge {
			t.Errorf("POST /mcp with token %.20q = %s, WWW-Authenticate %q; want 401 and %q", token, r, r.header.Get("WWW-Authenticate"), challenge)
		}
	}
	if logs := e.logs.String(); !strings.Contains(logs, `"token_refused":"no token"`) || !strings.Contains(logs, `"token_refused":"wrong issuer or audience"`) {
		t.Errorf("the 401s' log lines do not say why: %s", logs)
	}
	// Accepted: an OAuth access token for MCP_URL, and the API's own tokens; the OAuth one only here.
	e.want(e.do("POST", "/mcp", oauth(nil), ping), 200, "an OAuth access token for MCP_URL")
	e.want(e.do("POST", "/mcp", oauthTyped("application/AT+JWT", nil), ping), 200, "an OAuth access token typed application/AT+JWT (case-insensitive)")
	e.want(e.do("POST", "/mcp", oauth(jwt.MapClaims{"aud": []string{"https://tasks.example/mcp", auth.URL + "/api/auth/oauth2/userinfo"}}), ping), 200, "an OAuth access token for MCP_URL and userinfo")
	e.want(e.do("GET", "/api/"+user+"/tasks", oauth(nil), nil), 401, "an OAuth access token for MCP_URL at the API")
	apiToken := signed(t, jwt.SigningMethodEdDSA, key, "ed", jwt.MapClaims{"sub": user, "iss": auth.URL, "aud": auth.URL, "exp": time.Now().Add(time.Hour).Unix()})
	e.want(e.do("POST", "/mcp", apiToken, ping), 200, "the jwt plugin's token, as the API takes it")
	e.want(e.do("POST", "/mcp", tokenFor(t, user), ping), 200, "an HS256 token")
	for _, aud := range []any{"https://tasks.example/mcp", auth.URL, []string{"https://other.example.com", auth.URL}} {
		hs := hsToken(t, jwt.MapClaims{"sub": user, "aud": aud, "exp": time.Now().Add(time.Hour).Unix()})
		e.want(e.do("POST", "/mcp", hs, ping), 200, fmt.Sprintf("an HS256 token for %v (MCP_URL, or the API's audience)", aud))
	}

	// The metadata (RFC 9728): the resource, and Better Auth as its authorization server.
	var doc struct {
		Resource             string
		AuthorizationServers []string `json:"authorization_servers"`
		BearerMethods        []string `json:"bearer_methods_supported"`
	}
	r := e.do("GET", "/.well-known/oauth-protected-resource", "", nil)
	if json.Unmarshal(r.body, &doc); r.status != 200 || doc.Resource != "https://tasks.example/mcp" ||
		!slices.Equal(doc.AuthorizationServers, []string{auth.URL + "/api/auth"}) || !slices.Equal(doc.BearerMethods, []string{"header"}) {
		t.Errorf("GET /.well-known/oauth-protected-resource = %s", r)
	}
	// Without MCP_URL and BETTER_AUTH_URL: the URL the request reached, and no authorization server.
	plain := newEnv(t, hsAuth())
	r = plain.do("GET", "/.well-known/oauth-protected-resource", "", nil)
	if json.Unmarshal(r.body, &doc); doc.Resource != plain.srv.URL+"/mcp" || strings.Contains(string(r.body), "authorization_servers") {
		t.Errorf("the metadata without MCP_URL = %s", r)
	}
	if r = plain.do("POST", "/mcp", "", ping); r.header.Get("WWW-Authenticate") != `Bearer resource_metadata="`+plain.srv.URL+`/.well-known/oauth-protected-resource"` {
		t.Errorf("the challenge without MCP_URL: %q", r.header.Get("WWW-Authenticate"))
	}

	// The rate limit applies as on the API.
	limited := newEnv(t, hsAuth(), func(c *config) { c.RatePerSecond, c.RateBurst = 1, 1 })
	tok := tokenFor(t, user)
	limited.want(limited.do("POST", "/mcp", tok, ping), 200, "a first request")
	if r := limited.do("POST", "/mcp", tok, ping); r.status != 429 || r.header.Get("Retry-After") == "" {
		t.Errorf("a second request at once = %s, want 429 with Retry-After", r)
	}
}

func TestMCPOrigin(t *testing.T) {
	e := newEnv(t, hsAuth())
	tok := tokenFor(t, newUser(t))
	ping := map[string]any{"jsonrpc": "2.0", "id": 1, "method": "ping"}
	for origin, want := range map[string]int{"": 200, "http://localhost:3000": 200, "http://evil.example": 403, "http://localhost:3001": 403, "null": 403} {
		var header []string
		if origin != "" {
			header = []string{"Origin", origin}
		}
		if r := e.do("POST", "/mcp", tok, ping, header...); r.status != want {
			t.Errorf("POST /mcp from Origin %q = %s, want %d", origin, r, want)
		}
	}
	if r := e.do("POST", "/mcp", "", ping, "Origin", "http://evil.example"); r.status != 403 {
		t.Errorf("POST /mcp without a token from a foreign Origin = %s, want 403 before the 401", r)
	}
	// A page of an allowed origin may send what the SDK's transport sends, and read the challenge.
	r := e.do("OPTIONS", "/mcp", "", nil, "Origin", "http://localhost:3000", "Access-Control-Request-Method", "POST",
		"Access-Control-Request-Headers", "authorization,content-type,mcp-protocol-version")
	if r.status != 204 || !strings.Contains(r.header.Get("Access-Control-Allow-Headers"), "MCP-Protocol-Version") {
		t.Errorf("OPTIONS /mcp from an allowed origin = %s, Access-Control-Allow-Headers %q", r, r.header.Get("Access-Control-Allow-Headers"))
	}
	if r := e.do("POST", "/mcp", "", ping, "Origin", "http://localhost:3000"); !strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") {
		t.Errorf("a 401 from /mcp to an allowed origin does not expose WWW-Authenticate: %v", r.header)
	}
}

// TestOpenAPILimits holds the limits in openapi.json, of which the MCP tools' schemas are made, to those the API checks.
func TestOpenAPILimits(t *testing.T) {
	var d apiDoc
	if err := json.Unmarshal(openAPI, &d); err != nil {
		t.Fatal(err)
	}
	at := func(s any, path ...string) any {
		for _, p := range path {
			s = d.inline(s).(map[string]any)[p]
		}
		return s
	}
	schemas, params := d.Components.Schemas, d.Components.Parameters
	for _, c := range []struct {
		got  any
		want any
	}{
		{at(schemas["TaskCreate"], "properties", "title", "maxLength"), maxTitle},
		{at(schemas["TaskUpdate"], "properties", "title", "maxLength"), maxTitle},
		{at(schemas["TaskCreate"], "properties", "description", "maxLength"), maxDescription},
		{at(schemas["TaskUpdate"], "properties", "description", "maxLength"), maxDescription},
		{at(schemas["TaskCreate"], "properties", "tags", "items", "maxLength"), maxTag},
		{at(schemas["Tags"], "maxItems"), maxTags},
		{at(params["Tag"].Schema, "maxItems"), maxTags},
		{at(schemas["Priority"], "enum"), priorities},
		{at(schemas["Recurrence"], "maxLength"), maxRecurrence},
		{at(schemas["RecurFrom"], "enum"), recurFroms},
		{at(schemas["Timezone"], "maxLength"), maxTimezone},
		{at(schemas["Reminders"], "maxItems"), maxReminders},
		{at(params["Limit"].Schema, "maximum"), maxLimit},
		{at(params["Q"].Schema, "maxLength"), maxQuery},
		{at(params["IdempotencyKey"].Schema, "pattern"), fmt.Sprintf("^[!-~]{1,%d}$", maxIdempotencyKey)},
	} {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("openapi.json says %v where the API checks %v", c.got, c.want)
		}
	}
}
