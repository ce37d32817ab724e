// http.go holds what every request shares: the middleware, the response writer, the error types and writeError.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// fieldError is one entry of a 422 body, in the shape FastAPI frontends read.
type fieldError struct {
	Loc  []any  `json:"loc"`
	Msg  string `json:"msg"`
	Type string `json:"type"`
}

// validationError is a 422 listing every problem found.
type validationError []fieldError

func (e validationError) Error() string { return "validation failed: " + e[0].Msg }

// statusError is an error with its own status and detail, not about one field (401, 403, 413, 415, 429; 503 from /readyz).
type statusError struct {
	status int
	detail string
}

func (e *statusError) Error() string { return e.detail }

// writeError is the one place an error becomes a status and a JSON body {"detail": ...}.
// Internals never reach the client: a 5xx answers a generic message and logs the error.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, detail := http.StatusInternalServerError, any("Internal Server Error")
	var invalid validationError
	var client *statusError
	var stale *staleError
	switch {
	case errors.As(err, &invalid):
		status, detail = http.StatusUnprocessableEntity, invalid
	case errors.As(err, &client):
		status, detail = client.status, client.detail
		if status == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" { // /mcp sets its own challenge
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		}
	case errors.Is(err, errNotFound):
		status, detail = http.StatusNotFound, "Task not found"
	case errors.As(err, &stale):
		tag := etag(stale.Current.Version)
		w.Header().Set("ETag", tag)
		status, detail = http.StatusPreconditionFailed, "The task has changed since the version in If-Match; its current ETag is "+tag+". Reload it and apply your change again"
	case errors.Is(err, errKeyReused):
		status, detail = http.StatusUnprocessableEntity, validationError{{[]any{"header", "Idempotency-Key"}, "This Idempotency-Key was used with a different request (body, route or task)", "idempotency_key_reused"}}
	case errors.Is(err, errTaskLimit):
		status, detail = http.StatusConflict, "Task limit reached: delete some tasks before adding more"
	case errors.Is(err, errSubscriptionLimit):
		status, detail = http.StatusConflict, "Push subscription limit reached ("+strconv.Itoa(maxSubscriptions)+"): remove one before adding another"
	case errors.Is(err, errRejected):
		status, detail = http.StatusUnprocessableEntity, validationError{{[]any{"body"}, "Value rejected by a constraint", "value_error"}}
	case errors.Is(err, errUnavailable):
		w.Header().Set("Retry-After", "1")
		status, detail = http.StatusServiceUnavailable, "Service temporarily unavailable, try again shortly"
	}
	if refused, ok := errors.AsType[*tokenRefused](err); ok { // its line says why (jwks logs a failed fetch)
		logLine(w).tokenRefused = refused.reason
	} else if status >= 500 {
		noteError(w, err)
	}
	writeJSON(w, status, map[string]any{"detail": detail})
}

// writeJSON sends v as the JSON body of a response with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		noteError(w, err)
		status, body = http.StatusInternalServerError, []byte(`{"detail":"Internal Server Error"}`)
	}
	writeBody(w, status, append(body, '\n'))
}

// writeBody sends a JSON body; its length is set, so it goes out in one piece, not chunked.
func writeBody(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// middleware does what every request needs: security headers, CORS, the
// trailing slash, JSON for the mux's own 404 and 405, and one log line.
type middleware struct {
	mux    *http.ServeMux
	routes []string // the patterns registered, for the test that holds openapi.json to them
	log    *slog.Logger
	cors   map[string]bool
	live   *streams // the open event streams
}

func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if origin := r.Header.Get("Origin"); origin != "" {
		h.Add("Vary", "Origin")
		allowed := m.cors[origin]
		if allowed {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Set("Access-Control-Expose-Headers", "X-Total-Count, Link, Location, ETag, Retry-After, Idempotent-Replayed, WWW-Authenticate")
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			if !allowed {
				writeJSON(w, http.StatusForbidden, map[string]string{"detail": "Origin not allowed by CORS_ORIGINS"})
				return
			}
			h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match, If-None-Match, Idempotency-Key, Last-Event-ID, MCP-Protocol-Version")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	rw := &responseWriter{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			// A panic is a bug: answer a generic 500 and keep its cause for the log line.
			rw.err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
			if !rw.wrote {
				writeJSON(rw, http.StatusInternalServerError, map[string]string{"detail": "Internal Server Error"})
			}
		}
		m.logRequest(r, rw, start) // r as the mux saw it
	}()
	// ServeMux would redirect a path with an empty segment, . or .. to its clean
	// form, escaped again (a space in a user id as %2520) and read anew
	// (/tasks/1/complete/.. as an update of task 1): it is not found instead.
	// Paths start with / (else net/http answers 400), or are *.
	if path := strings.TrimSuffix(r.URL.Path, "/") + "/"; strings.Contains(path, "//") ||
		strings.Contains(path, "/./") || strings.Contains(path, "/../") {
		writeJSON(rw, http.StatusNotFound, map[string]string{"detail": "Not Found"})
		return
	}
	// A redirect of /tasks/ to /tasks would lose Authorization in browsers (across
	// origins): both spellings are served instead. An escaped %2F belongs to its segment.
	if p := r.URL.EscapedPath(); len(p) > 1 && strings.HasSuffix(p, "/") {
		r = r.Clone(r.Context())
		r.URL.Path, r.URL.RawPath = strings.TrimSuffix(r.URL.Path, "/"), strings.TrimSuffix(r.URL.RawPath, "/")
	}
	m.mux.ServeHTTP(rw, r)
}

// logRequest writes the request's one log line; never a token, a secret or a body.
func (m *middleware) logRequest(r *http.Request, rw *responseWriter, start time.Time) {
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("route", r.Pattern),
		slog.Int("status", rw.status),
		slog.Float64("ms", float64(time.Since(start).Microseconds())/1000),
	}
	if rw.userID != "" {
		attrs = append(attrs, slog.String("user_id", rw.userID))
	}
	if rw.tokenRefused != "" {
		attrs = append(attrs, slog.String("token_refused", rw.tokenRefused))
	}
	if r.Context().Err() != nil { // the client hung up before its answer
		attrs = append(attrs, slog.Bool("client_gone", true))
	}
	level := slog.LevelInfo
	if rw.err != nil {
		level = slog.LevelError
		attrs = append(attrs, slog.String("err", rw.err.Error()))
	}
	m.log.LogAttrs(r.Context(), level, "request", attrs...)
}

// responseWriter records what the request's log line needs, and turns the mux's own
// plain-text answers (404, 405 with Allow) into JSON, and its redirects into 404s.
type responseWriter struct {
	http.ResponseWriter
	status       int
	wrote        bool
	userID       string // the authenticated user
	tokenRefused string // why, when the token was refused; never the token
	err          error  // a server-side error; the client never sees it
	swallow      bool   // the mux's own text body is being replaced
}

func (rw *responseWriter) WriteHeader(status int) {
	if status >= 300 && status < 400 && status != http.StatusNotModified {
		// Only the mux redirects, to clean a path, which ServeHTTP refuses first: any other is not followed either.
		rw.Header().Del("Location")
		status = http.StatusNotFound
	}
	rw.status, rw.wrote = status, true
	if status >= 300 && status != http.StatusNotModified && rw.Header().Get("Content-Type") != "application/json" {
		rw.swallow = true
		rw.Header().Set("Content-Type", "application/json")
		rw.ResponseWriter.WriteHeader(status)
		rw.ResponseWriter.Write([]byte(`{"detail":"` + http.StatusText(status) + `"}` + "\n"))
		return
	}
	rw.ResponseWriter.WriteHeader(status)
}

func (rw *responseWriter) Write(b []byte) (int, error) {
	if rw.swallow {
		return len(b), nil
	}
	if !rw.wrote {
		rw.WriteHeader(http.StatusOK)
	}
	return rw.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection beneath (flushes, deadlines).
func (rw *responseWriter) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

// logLine is the request's responseWriter, which holds what its log line says
// beyond the request itself; a scratch one where no middleware wraps w.
func logLine(w http.ResponseWriter) *responseWriter {
	if rw, ok := w.(*responseWriter); ok {
		return rw
	}
	return &responseWriter{}
}

// noteError puts a server-side error on the request's log line; the client never sees it.
func noteError(w http.ResponseWriter, err error) { logLine(w).err = err }
