// mcp.go serves /mcp, MCP's Streamable HTTP transport (JSON-RPC 2.0 over POST, answered as JSON), its admission, and its metadata (RFC 9728).
package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// mcpVersions are the MCP revisions served, newest first (the answer to a client asking for another); neither has batches.
var mcpVersions = []string{"2025-11-25", "2025-06-18"}

// JSON-RPC 2.0's error codes (§5.1).
const rpcParseError, rpcInvalidRequest, rpcMethodNotFound, rpcInvalidParams, rpcInternalError = -32700, -32600, -32601, -32602, -32603

// rpcError is a JSON-RPC error object.
type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// rpcResponse is a JSON-RPC response; ID is the request's, absent (2025-11-25's schema has no null id) when unreadable.
type rpcResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Result  any             `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
}

// rpcFailure is a response carrying an error, for id (nil: none).
func rpcFailure(id json.RawMessage, code int, msg string) *rpcResponse {
	return &rpcResponse{JSONRPC: "2.0", ID: id, Error: &rpcError{code, msg}}
}

// mcpServer serves /mcp for the users its tokens name.
type mcpServer struct {
	list             []map[string]any                            // the tools, as tools/list sends them
	tools            map[string]func(*toolCall) (any, *rpcError) // what a call of each does, by name
	args             map[string]map[string]any                   // the arguments each takes, by name: its inputSchema's properties
	db               *store
	maxTasks         int
	api              *verifier    // the API's tokens, whose aud must name this service (newMCPServer)
	oauth            *verifier    // Better Auth's OAuth access tokens for MCP_URL; nil without BETTER_AUTH_URL and MCP_URL
	limit            *rateLimiter // nil: no limit
	cors             map[string]bool
	resource, issuer string // MCP_URL ("": each request's own URL), and Better Auth's issuer ("": none)
}

// handle serves POST /mcp: 403 to an Origin outside CORS_ORIGINS (DNS rebinding), admit's 401 or 429, 400 to a body that is no
// message (a batch too) or to another MCP-Protocol-Version, 202 to a notification or a client's response, else 200 and the response.
func (s *mcpServer) handle(w http.ResponseWriter, r *http.Request) {
	if origin := r.Header.Get("Origin"); origin != "" && !s.cors[origin] {
		writeJSON(w, http.StatusForbidden, rpcFailure(nil, rpcInvalidRequest, "Origin not allowed by CORS_ORIGINS"))
		return
	}
	userID, _, err := admit(s.verify, s.limit, w, r)
	if status, _ := errors.AsType[*statusError](err); status != nil && status.status == http.StatusUnauthorized {
		// the challenge that leads an MCP client to the metadata (MCP authorization, RFC 9728 §5.1)
		challenge := `Bearer resource_metadata="` + strings.TrimSuffix(s.resourceURL(r), "mcp") + `.well-known/oauth-protected-resource"`
		if !errors.Is(err, errNoToken) {
			challenge += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	raw, err := readObject(w, r)                                // Content-Type, size, UTF-8, one object naming each member once
	if invalid, ok := errors.AsType[validationError](err); ok { // not JSON (a parse error), or not one message: MCP has no batches since 2025-06-18
		code := map[bool]int{true: rpcParseError, false: rpcInvalidRequest}[invalid[0].Type == "json_invalid"]
		writeJSON(w, http.StatusBadRequest, rpcFailure(nil, code, invalid[0].Msg+": a body is one JSON-RPC message, an object"))
		return
	} else if err != nil {
		writeError(w, r, err)
		return
	}
	switch resp := s.answer(w, r, userID, raw); {
	case resp == nil:
		w.WriteHeader(http.StatusAccepted)
	case resp.Error != nil && resp.Error.Code == rpcInvalidRequest:
		writeJSON(w, http.StatusBadRequest, resp)
	default:
		writeJSON(w, http.StatusOK, resp)
	}
}

// answer is the response to a message: nil for a notification (any method) or a client's response, an error
// for a message that is neither, with its id if it has one. The server keeps no session: each request stands on its own.
func (s *mcpServer) answer(w http.ResponseWriter, r *http.Request, userID string, raw map[string]json.RawMessage) *rpcResponse {
	var method string
	id, hasID := raw["id"]
	if hasID && id[0] != '"' && id[0] != '-' && (id[0] < '0' || id[0] > '9') {
		id = nil // neither a string nor a number: no id to answer
	}
	params, errParams := decodeObject([]byte(cmp.Or(string(raw["params"]), "{}")))
	switch version := r.Header.Get("MCP-Protocol-Version"); {
	case version != "" && !slices.Contains(mcpVersions, version):
		return rpcFailure(id, rpcInvalidRequest, "Unsupported MCP-Protocol-Version "+strconv.Quote(version)+": this server speaks "+strings.Join(mcpVersions, " and "))
	case string(raw["jsonrpc"]) != `"2.0"`:
		return rpcFailure(id, rpcInvalidRequest, `Invalid Request: "jsonrpc" must be "2.0"`)
	case raw["method"] == nil && hasID && (raw["result"] != nil || raw["error"] != nil):
		return nil // a response: this server sends no request it would wait for
	case json.Unmarshal(raw["method"], &method) != nil:
		return rpcFailure(id, rpcInvalidRequest, "Invalid Request: method must be a string")
	case !hasID:
		return nil // a notification: initialized, cancelled, or one this server does not know
	case id == nil:
		return rpcFailure(nil, rpcInvalidRequest, "Invalid Request: id must be a string or a number")
	case errParams != nil:
		return rpcFailure(id, rpcInvalidParams, "Invalid params: params must be an object")
	}
	resp := &rpcResponse{JSONRPC: "2.0", ID: id}
	switch method {
	case "initialize":
		var asked string
		if json.Unmarshal(params["protocolVersion"], &asked) != nil {
			return rpcFailure(id, rpcInvalidParams, "Invalid params: protocolVersion must be a string")
		} else if !slices.Contains(mcpVersions, asked) {
			asked = mcpVersions[0]
		}
		resp.Result = map[string]any{"protocolVersion": asked, "capabilities": map[string]any{"tools": map[string]any{}},
			"serverInfo": map[string]string{"name": "tasks", "title": "Tasks", "version": release}, "instructions": "The signed-in user's own to-do list. complete_task and reopen_task set a task's state, so a retry never flips it back; " +
				"give a write you may retry an idempotency_key (a unique string, the same on the retry)."}
	case "ping":
		resp.Result = map[string]any{}
	case "tools/list":
		resp.Result = map[string]any{"tools": s.list}
	case "tools/call":
		resp.Result, resp.Error = s.call(w, r, userID, params)
	default:
		resp.Error = &rpcError{rpcMethodNotFound, "Method not found: " + method}
	}
	return resp
}

// verify checks a token as the API does, but one whose aud names none of MCP_URL, JWT_AUDIENCE and the
// app's origin (a token for another service) is refused (newMCPServer's api); if that refuses it, it checks
// it as Better Auth's OAuth access token for MCP_URL. No token is ever passed on.
func (s *mcpServer) verify(token string) (string, time.Time, error) {
	sub, until, err := s.api.verify(token)
	if err != nil && s.oauth != nil {
		if sub, until, errOAuth := s.oauth.verify(token); errOAuth == nil {
			return sub, until, nil
		}
	}
	return sub, until, err
}

// handleMetadata serves GET /.well-known/oauth-protected-resource: /mcp, and Better Auth as its authorization server.
func (s *mcpServer) handleMetadata(w http.ResponseWriter, r *http.Request) {
	doc := map[string]any{"resource": s.resourceURL(r), "bearer_methods_supported": []string{"header"}, "resource_name": "tasks"}
	if s.issuer != "" {
		doc["authorization_servers"] = []string{s.issuer}
	}
	writeJSON(w, http.StatusOK, doc)
}

// resourceURL is /mcp's URL: MCP_URL, or without it the one this request reached, for trying the
// service out (a token for a URL read off a request's Host is never accepted).
func (s *mcpServer) resourceURL(r *http.Request) string {
	return cmp.Or(s.resource, map[bool]string{false: "http://", true: "https://"}[r.TLS != nil]+r.Host+"/mcp")
}
