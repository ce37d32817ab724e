// mcptools.go holds /mcp's tools: their schemas, made of openapi.json's, and their calls, which run the API's own handlers and store statements.
package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
)

// maxAddTasks is how many tasks one add_tasks call creates at most.
const maxAddTasks = 50

// apiDoc is what the tools' schemas are made of: openapi.json's schemas and parameters, so that a
// tool takes what the API takes, within the same limits (TestOpenAPILimits holds them to validate.go's).
type apiDoc struct {
	Components struct {
		Schemas    map[string]any
		Parameters map[string]struct {
			Description string
			Schema      map[string]any
		}
	}
}

// inline returns schema s with each $ref replaced by the schema it names, so that a tool's schema
// stands alone; arrays are kept, not copied, as openapi.json has no $ref in one.
func (d *apiDoc) inline(s any) any {
	if v, ok := s.(map[string]any); ok {
		if ref, ok := v["$ref"].(string); ok {
			return d.inline(d.Components.Schemas[path.Base(ref)])
		}
		out := map[string]any{}
		for k, x := range v {
			out[k] = d.inline(x)
		}
		return out
	}
	return s
}

// param is the schema of the API's parameter name, with its description.
func (d *apiDoc) param(name string) map[string]any {
	p := d.Components.Parameters[name]
	s := d.inline(p.Schema).(map[string]any)
	if p.Description != "" {
		s["description"] = p.Description
	}
	return s
}

// object is the schema of a JSON object with only the properties props, some required.
func object(props map[string]any, required ...string) map[string]any {
	return map[string]any{"type": "object", "additionalProperties": false, "properties": props, "required": append([]string{}, required...)}
}

// newMCPServer builds /mcp's server, its tools, and with BETTER_AUTH_URL and MCP_URL a verifier of
// Better Auth's OAuth access tokens for MCP_URL, on the key set of v, the API's verifier.
func newMCPServer(v *verifier, limit *rateLimiter, db *store, cfg config) *mcpServer {
	s := &mcpServer{tools: map[string]func(*toolCall) (any, *rpcError){}, args: map[string]map[string]any{}, db: db, maxTasks: cfg.MaxTasks,
		limit: limit, cors: cfg.CORSOrigins, resource: cfg.MCPURL, issuer: cfg.OAuthIssuer}
	api := v.cfg // the API's tokens, but an aud must name MCP_URL, JWT_AUDIENCE or the app's origin ("": unset)
	api.Audiences = []string{cfg.MCPURL, v.cfg.Audience, v.cfg.BetterAuthOrigin}
	s.api = newVerifier(api, nil, nil)
	s.api.jwks = v.jwks // one key set, fetched once
	if v.jwks != nil && cfg.MCPURL != "" && cfg.OAuthIssuer != "" {
		s.oauth = newVerifier(authConfig{JWKSURL: cfg.Auth.JWKSURL, Issuer: cfg.OAuthIssuer, Audience: cfg.MCPURL, AccessToken: true}, nil, nil)
		s.oauth.jwks = v.jwks // one key set, fetched once
	}
	var d apiDoc
	json.Unmarshal(openAPI, &d) // embedded, and read by TestOpenAPILimits: a valid document
	add := func(name, title, about string, in, out map[string]any, readOnly, destructive, idempotent bool, call func(*toolCall) (any, *rpcError)) {
		s.list = append(s.list, map[string]any{"name": name, "title": title, "description": about, "inputSchema": in, "outputSchema": out,
			"annotations": map[string]any{"readOnlyHint": readOnly, "destructiveHint": destructive, "idempotentHint": idempotent, "openWorldHint": false}})
		s.tools[name], s.args[name] = call, in["properties"].(map[string]any)
	}
	task, id, key := d.inline(d.Components.Schemas["Task"]).(map[string]any), d.param("TaskID"), d.param("IdempotencyKey")
	key["description"] = "Any unique string: a retry with the same key and arguments answers as the first call did and changes nothing"
	tasks, byID := map[string]any{"type": "array", "items": task}, object(map[string]any{"id": id, "idempotency_key": key}, "id")
	list := map[string]any{}
	for _, name := range []string{"Status", "Q", "Tag", "Sort", "Order", "Limit", "Cursor"} {
		list[strings.ToLower(name)] = d.param(name)
	}
	list["cursor"].(map[string]any)["description"], list["parent_id"] = "next_cursor of the page before", d.param("ParentID")
	add("list_tasks", "List tasks", "List the user's tasks, filtered and sorted as asked (newest first by default); next_cursor continues a list cut at limit.",
		object(list), object(map[string]any{"tasks": tasks, "next_cursor": map[string]any{"type": []string{"string", "null"}},
			"total": map[string]any{"type": []string{"integer", "null"}, "description": "How many tasks match in all, when known"}}, "tasks", "next_cursor", "total"),
		true, false, true, s.listTasks)
	add("get_task", "Get a task", "Read one of the user's tasks.", object(map[string]any{"id": id}, "id"), task, true, false, true,
		s.route(handleGetTask(s.db), "GET /api/{user_id}/tasks/{id}", ""))
	add("add_tasks", "Add tasks", "Create 1 to "+strconv.Itoa(maxAddTasks)+" tasks, each with a title at least: all of them or, if one is refused, none.",
		object(map[string]any{"tasks": map[string]any{"type": "array", "minItems": 1, "maxItems": maxAddTasks, "items": d.inline(d.Components.Schemas["TaskCreate"])},
			"idempotency_key": key}, "tasks"), object(map[string]any{"tasks": tasks}, "tasks"), false, false, false, s.addTasks)
	update := d.inline(d.Components.Schemas["TaskUpdate"]).(map[string]any)
	update["properties"].(map[string]any)["id"], update["properties"].(map[string]any)["idempotency_key"], update["required"] = id, key, []string{"id"}
	add("update_task", "Update a task", "Change the fields given of one task; the others stay. null clears description, due_date, recurrence, timezone, reminders or tags.",
		update, task, false, false, false, s.route(handleUpdateTask(s.db, s.maxTasks), "PATCH /api/{user_id}/tasks/{id}", ""))
	add("complete_task", "Complete a task", "Mark a task completed; one that is stays so. A recurring task moves to its next occurrence instead, "+
		"each time it is completed: give an idempotency_key when you may retry.", byID, task, false, false, false,
		s.route(handleUpdateTask(s.db, s.maxTasks), "PATCH /api/{user_id}/tasks/{id}", `{"completed":true}`))
	add("reopen_task", "Reopen a task", "Mark a task open (not completed); one that is stays so.", byID, task, false, false, true,
		s.route(handleUpdateTask(s.db, s.maxTasks), "PATCH /api/{user_id}/tasks/{id}", `{"completed":false}`))
	add("delete_task", "Delete a task", "Delete one task, with its subtasks, for good.", byID, object(map[string]any{"deleted": id}, "deleted"), false, true, true,
		s.route(handleDeleteTask(s.db), "DELETE /api/{user_id}/tasks/{id}", ""))
	move := d.inline(d.Components.Schemas["TaskMove"]).(map[string]any)
	move["properties"].(map[string]any)["id"], move["properties"].(map[string]any)["idempotency_key"], move["required"] = id, key, []string{"id"}
	add("move_task", "Move a task", "Put a task, with its subtasks, under parent_id (null: the top level), right after its child after (null: first).",
		move, task, false, false, true, s.route(handleMoveTask(s.db), "POST /api/{user_id}/tasks/{id}/move", ""))
	return s
}

// toolCall is one tools/call: its user and arguments, and the request it came in, whose log line it shares.
type toolCall struct {
	w      http.ResponseWriter
	r      *http.Request
	userID string
	args   map[string]json.RawMessage
}

// call runs tools/call's tool: a JSON-RPC error for a call that names no tool, a tool result otherwise, with isError:
// true when the API refuses its arguments or one is not in the tool's inputSchema (whose additionalProperties is false).
func (s *mcpServer) call(w http.ResponseWriter, r *http.Request, userID string, params map[string]json.RawMessage) (any, *rpcError) {
	c, name, err := &toolCall{w: w, r: r, userID: userID}, text(params["name"]), error(nil)
	if c.args, err = decodeObject([]byte(cmp.Or(string(params["arguments"]), "{}"))); s.tools[name] == nil || err != nil { // an object, naming each argument once
		return nil, &rpcError{rpcInvalidParams, "Invalid params: name must be one of tools/list's, and arguments an object"}
	}
	var extra validationError
	for _, arg := range slices.Sorted(maps.Keys(c.args)) {
		if s.args[name][arg] == nil {
			extra = append(extra, fieldError{[]any{"arguments", arg}, "Extra inputs are not permitted", "extra_forbidden"})
		} else if f, err := strconv.ParseFloat(string(c.args[arg]), 64); err == nil && -1<<53 < f && f < 1<<53 && f == float64(int64(f)) {
			c.args[arg] = strconv.AppendInt(nil, int64(f), 10) // 1.0 or 1e3, a JSON Schema integer, as the API's 1 or 1000 (exact within ±2^53)
		}
	}
	if extra != nil {
		return c.failed(extra)
	}
	return s.tools[name](c)
}

// text is a JSON value's text: a string's, or the value as written; the API checks it as it checks a path's or a header's.
func text(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) != nil {
		return string(v)
	}
	return s
}

// request is the API request a call makes: its id argument as the path's task id, its idempotency_key as the Idempotency-Key.
func (c *toolCall) request(method, pattern string, query url.Values, body []byte) *http.Request {
	r, _ := http.NewRequestWithContext(c.r.Context(), method, "/?"+query.Encode(), bytes.NewReader(body))
	r.Pattern, r.Header["Content-Type"] = pattern, []string{"application/json"}
	r.SetPathValue("id", cmp.Or(string(c.args["id"]), "null")) // a number's text, or taskID refuses it
	if key, ok := c.args["idempotency_key"]; ok {
		r.Header.Set("Idempotency-Key", text(key))
	}
	return r
}

// run is the tool's answer to what serve, an API handler, writes: to a 2xx structured content and brief's text; to a 4xx
// an error result carrying it, for the model to correct its call; to a 5xx a JSON-RPC error, as the server failed.
func (c *toolCall) run(serve func(w http.ResponseWriter), brief func(*recorder) (any, string)) (any, *rpcError) {
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	rw := &responseWriter{ResponseWriter: rec, status: http.StatusOK}
	if serve(rw); rw.err != nil {
		noteError(c.w, rw.err)
	}
	var failure struct{ Detail string }
	switch {
	case rec.status < 300:
		structured, text := brief(rec)
		return map[string]any{"content": []map[string]string{{"type": "text", "text": text}}, "structuredContent": structured}, nil
	case rec.status < 500:
		text := "Refused (" + strconv.Itoa(rec.status) + "): " + strings.TrimSpace(rec.String())
		return map[string]any{"content": []map[string]string{{"type": "text", "text": text}}, "isError": true}, nil
	}
	json.Unmarshal(rec.Bytes(), &failure)
	return nil, &rpcError{rpcInternalError, failure.Detail}
}

// failed is the tool's answer to err, made of the API's answer to it.
func (c *toolCall) failed(err error) (any, *rpcError) {
	return c.run(func(w http.ResponseWriter) { writeError(w, c.r, err) }, nil)
}

// route is a tool that runs the API's handler h for pattern on body ("": the arguments but idempotency_key).
func (s *mcpServer) route(h userHandler, pattern, body string) func(*toolCall) (any, *rpcError) {
	method, _, _ := strings.Cut(pattern, " ")
	return func(c *toolCall) (any, *rpcError) {
		rest := maps.Clone(c.args) // the path's id and the header's key are not the body's
		delete(rest, "id")
		delete(rest, "idempotency_key")
		send, _ := json.Marshal(rest) // read by PATCH and POST alone: GET and DELETE take no body
		r := c.request(method, pattern, nil, []byte(cmp.Or(body, string(send))))
		return c.run(func(w http.ResponseWriter) { h(w, r, c.userID) }, func(rec *recorder) (any, string) {
			if method == http.MethodDelete {
				return map[string]json.RawMessage{"deleted": c.args["id"]}, "Deleted task " + string(c.args["id"])
			}
			return json.RawMessage(rec.Bytes()), briefs(rec.Bytes())
		})
	}
}

// listTasks is list_tasks: the list route's handler, with the arguments as its query.
func (s *mcpServer) listTasks(c *toolCall) (any, *rpcError) {
	query := url.Values{}
	for name, v := range c.args {
		var values []string
		if json.Unmarshal(v, &values) != nil { // tag's list, or else one value's text
			values = []string{text(v)}
		}
		query[name] = values
	}
	r := c.request(http.MethodGet, "GET /api/{user_id}/tasks", query, nil)
	return c.run(func(w http.ResponseWriter) { handleListTasks(s.db)(w, r, c.userID) }, func(rec *recorder) (any, string) {
		var cursor any
		text := briefs(rec.Bytes())
		if link := rec.header.Get("Link"); link != "" { // </api/…/tasks?…&cursor=…>; rel="next"
			u, _ := url.Parse(link[1:strings.IndexByte(link, '>')])
			cursor, text = u.Query().Get("cursor"), text+"\nMore follow: call list_tasks again with cursor "+u.Query().Get("cursor")
		}
		total := json.RawMessage(cmp.Or(rec.header.Get("X-Total-Count"), "null")) // the API's count of all, when it sends one
		return map[string]any{"tasks": json.RawMessage(rec.Bytes()), "next_cursor": cursor, "total": total}, text
	})
}

// addTasks is add_tasks: each create body checked as the API checks one, then all of them created
// by the API's statement in one transaction, once per idempotency_key, as the API's writes are (keyedWrite).
func (s *mcpServer) addTasks(c *toolCall) (any, *rpcError) {
	var items []json.RawMessage
	var errs validationError
	if json.Unmarshal(c.args["tasks"], &items); len(items) < 1 || len(items) > maxAddTasks {
		errs = validationError{{[]any{"arguments", "tasks"}, "Input should be a list of 1 to " + strconv.Itoa(maxAddTasks) + " tasks", "list_type"}}
	}
	changes, hash := make([]taskChange, len(items)), sha256.New()
	for i, item := range items {
		var err error
		changes[i], err = decodeTask(&recorder{header: http.Header{}}, c.request(http.MethodPost, "", nil, item), true)
		invalid, ok := err.(validationError)
		if err != nil && !ok {
			return c.failed(err) // a body too large
		}
		for _, e := range invalid { // at ["tasks", i, field] rather than ["body", field]
			errs = append(errs, fieldError{append([]any{"tasks", i}, e.Loc[1:]...), e.Msg, e.Type})
		}
		hash.Write(writeHash("add_tasks", 0, changes[i]))
	}
	if errs != nil {
		return c.failed(errs)
	}
	r := c.request(http.MethodPost, "add_tasks", nil, nil)
	return c.run(func(w http.ResponseWriter) {
		keyedWrite(w, r, s.db, c.userID, nil, func() []byte { return hash.Sum(nil) }, func(ctx context.Context, q querier) (answer, error) {
			b := []byte{'['}
			err := s.db.inTransaction(ctx, q, func(ctx context.Context, tx querier) error {
				for _, change := range changes {
					task, err := s.db.createTask(ctx, tx, c.userID, change, s.maxTasks)
					if err != nil {
						return err
					}
					b = append(appendTask(b, &task), ',')
				}
				return nil
			})
			return answer{Status: http.StatusCreated, Body: append(bytes.TrimSuffix(b, []byte{','}), ']')}, err
		})
	}, func(rec *recorder) (any, string) {
		return map[string]json.RawMessage{"tasks": rec.Bytes()}, "Added " + briefs(rec.Bytes())
	})
}

// recorder keeps a handler's answer: its status, header and body (the Buffer, whose Write it is).
type recorder struct {
	header http.Header
	status int
	bytes.Buffer
}

func (rec *recorder) Header() http.Header    { return rec.header }
func (rec *recorder) WriteHeader(status int) { rec.status = status }

// briefs is the text of a task, or of a list of tasks, as the API sent it: a line for each.
func briefs(body []byte) string {
	var tasks []map[string]json.RawMessage
	if body[0] == '{' {
		body = append(append([]byte{'['}, body...), ']')
	}
	json.Unmarshal(body, &tasks)
	var b strings.Builder
	fmt.Fprintf(&b, "%d task(s):", len(tasks))
	for _, t := range tasks {
		state := map[string]string{"false": "open", "true": "completed"}[string(t["completed"])]
		fmt.Fprintf(&b, "\n#%s %q: %s, priority %s, due %s, recurrence %s, tags %s, parent %s", t["id"], text(t["title"]),
			state, t["priority"], t["due_date"], t["recurrence"], t["tags"], t["parent_id"])
	}
	return b.String()
}
