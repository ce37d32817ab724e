// main.go holds the configuration, the route table, the request middleware and the server's start and stop.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tasks:", err)
		os.Exit(1)
	}
}

// config is everything the service reads from its environment.
type config struct {
	DatabaseURL    string
	Auth           authConfig
	Port           string
	CORSOrigins    map[string]bool
	StartupTimeout time.Duration // how long to wait for the database at start
	DrainTimeout   time.Duration // how long requests in flight may take after SIGTERM
	QueryTimeout   time.Duration // bound on each statement, including the wait for a connection
	MaxTasks       int           // tasks one user may hold
	RatePerSecond  int           // requests a user may make each second; 0: no limit
	RateBurst      int           // requests a user may make at once
}

// loadConfig reads and checks the environment; each error is one line saying what to set.
func loadConfig(getenv func(string) string) (config, error) {
	c := config{
		DatabaseURL:    getenv("DATABASE_URL"),
		Port:           orDefault(getenv("PORT"), "8000"),
		CORSOrigins:    map[string]bool{},
		StartupTimeout: 30 * time.Second,
		DrainTimeout:   10 * time.Second,
		QueryTimeout:   5 * time.Second,
		MaxTasks:       10000,
		RatePerSecond:  50,
		RateBurst:      100,
	}
	if c.DatabaseURL == "" {
		c.DatabaseURL = getenv("NEON_DB_URL") // "" means libpq defaults (PG* variables)
	}
	if secret := getenv("BETTER_AUTH_SECRET"); secret != "" {
		if len(secret) < 32 {
			return c, errors.New("BETTER_AUTH_SECRET must be at least 32 bytes (try: openssl rand -base64 32)")
		}
		c.Auth.Secret = []byte(secret)
	}
	if previous := getenv("BETTER_AUTH_SECRET_PREVIOUS"); previous != "" {
		if len(previous) < 32 || c.Auth.Secret == nil {
			return c, errors.New("BETTER_AUTH_SECRET_PREVIOUS must be at least 32 bytes, next to a BETTER_AUTH_SECRET")
		}
		c.Auth.Previous = []byte(previous)
	}
	c.Auth.Issuer, c.Auth.Audience = getenv("JWT_ISSUER"), getenv("JWT_AUDIENCE")
	if base := getenv("BETTER_AUTH_URL"); base != "" {
		origin, err := parseOrigin(base, true)
		if err != nil {
			return c, fmt.Errorf("BETTER_AUTH_URL: %w", err)
		}
		c.Auth.JWKSURL = strings.TrimSuffix(base, "/") + "/api/auth/jwks"
		if c.Auth.Issuer == "" {
			c.Auth.JWKSIssuer = origin
		}
		if c.Auth.Audience == "" {
			c.Auth.JWKSAudience = origin
		}
	}
	if u := getenv("JWKS_URL"); u != "" {
		if _, err := parseOrigin(u, true); err != nil {
			return c, fmt.Errorf("JWKS_URL: %w", err)
		}
		c.Auth.JWKSURL = u
	}
	if c.Auth.Secret == nil && c.Auth.JWKSURL == "" {
		return c, errors.New("set BETTER_AUTH_SECRET (32+ bytes, shared with the frontend) or BETTER_AUTH_URL (Better Auth's base URL, for its JWKS)")
	}
	if p, err := strconv.Atoi(c.Port); err != nil || p < 0 || p > 65535 {
		return c, fmt.Errorf("PORT must be a port number, not %q", c.Port)
	}
	for _, o := range strings.Split(orDefault(getenv("CORS_ORIGINS"), "http://localhost:3000"), ",") {
		if o = strings.TrimSpace(o); o == "" {
			continue
		}
		origin, err := parseOrigin(o, false)
		if err != nil {
			return c, fmt.Errorf("CORS_ORIGINS: %q: %w", o, err)
		}
		c.CORSOrigins[origin] = true
	}
	for name, dst := range map[string]*time.Duration{"STARTUP_TIMEOUT": &c.StartupTimeout, "DRAIN_TIMEOUT": &c.DrainTimeout, "QUERY_TIMEOUT": &c.QueryTimeout} {
		if s := getenv(name); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 {
				return c, fmt.Errorf("%s must be a positive duration such as 30s, not %q", name, s)
			}
			*dst = d
		}
	}
	for name, dst := range map[string]*int{"MAX_TASKS_PER_USER": &c.MaxTasks, "RATE_LIMIT_PER_SECOND": &c.RatePerSecond, "RATE_LIMIT_BURST": &c.RateBurst} {
		if s := getenv(name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 || n == 0 && name != "RATE_LIMIT_PER_SECOND" {
				return c, fmt.Errorf("%s must be a whole number above 0, not %q", name, s)
			}
			*dst = n
		}
	}
	return c, nil
}

// parseOrigin checks an http(s) URL and returns its origin (scheme://host[:port]);
// unless withPath, the URL must be an origin already.
func parseOrigin(s string, withPath bool) (string, error) {
	u, err := url.Parse(strings.TrimSuffix(s, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return "", errors.New("must be an http:// or https:// URL")
	}
	if !withPath && (u.Path != "" || u.RawQuery != "" || u.Fragment != "") {
		return "", errors.New("must be an origin such as https://app.example.com, without a path")
	}
	return u.Scheme + "://" + u.Host, nil
}

// orDefault returns s, or def when s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// run is the whole program: `tasks` serves the API, `tasks token USER_ID` prints a token.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	log := slog.New(slog.NewJSONHandler(stdout, nil))
	cfg, err := loadConfig(getenv)
	if len(args) > 1 && args[1] == "token" {
		return printToken(cfg, err, args[2:], stdout)
	}
	if len(args) > 1 {
		return fmt.Errorf("unknown command %q (commands: token USER_ID)", args[1])
	}
	if err != nil {
		return err
	}

	db, err := openStore(cfg.DatabaseURL, cfg.QueryTimeout)
	if err != nil {
		return err
	}
	defer db.pool.Close()
	startCtx, cancel := context.WithTimeout(ctx, cfg.StartupTimeout)
	defer cancel()
	err = db.migrate(startCtx, func(attempt int, err error) {
		log.Warn("waiting for the database", "attempt", attempt, "err", err.Error())
	})
	if err != nil {
		return fmt.Errorf("after %s: %w (check DATABASE_URL)", cfg.StartupTimeout, err)
	}

	go forgetOldKeys(ctx, db, log)

	ln, err := net.Listen("tcp", ":"+cfg.Port)
	if err != nil {
		return err
	}
	srv := newHTTPServer(newServer(log, db, cfg), log)
	log.Info("listening", "addr", ln.Addr().String())
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "drain", cfg.DrainTimeout.String())
	drainCtx, cancelDrain := context.WithTimeout(context.WithoutCancel(ctx), cfg.DrainTimeout)
	defer cancelDrain()
	if err := srv.Shutdown(drainCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// forgetOldKeys deletes expired Idempotency-Keys now and every hour until ctx ends.
func forgetOldKeys(ctx context.Context, db *store, log *slog.Logger) {
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		if _, err := db.deleteOldKeys(ctx); err != nil && ctx.Err() == nil {
			log.Warn("deleting old idempotency keys", "err", err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// printToken prints an HS256 token for args[0], valid for an hour, for trying the API with curl.
func printToken(cfg config, cfgErr error, args []string, stdout io.Writer) error {
	if len(args) != 1 || !validUserID(args[0]) {
		return errors.New("usage: tasks token USER_ID")
	}
	if cfg.Auth.Secret == nil {
		if cfgErr != nil {
			return cfgErr
		}
		return errors.New("token needs BETTER_AUTH_SECRET (32+ bytes)")
	}
	token, err := mintToken(cfg.Auth.Secret, args[0], time.Hour)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, token)
	return err
}

// newHTTPServer wraps h in a server whose timeouts and header limit bound every client.
func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// newServer builds the service's handler: the one route table inside the shared middleware.
func newServer(log *slog.Logger, db *store, cfg config) http.Handler {
	v := newVerifier(cfg.Auth, &http.Client{Timeout: 5 * time.Second}, log)
	limit := newRateLimiter(cfg.RatePerSecond, cfg.RateBurst)
	auth := func(h userHandler) http.Handler { return authenticate(v, limit, h) }

	m := &middleware{mux: http.NewServeMux(), log: log, cors: cfg.CORSOrigins}
	handle := func(pattern string, h http.Handler) {
		m.mux.Handle(pattern, h)
		m.routes = append(m.routes, pattern)
	}
	handle("GET /healthz", http.HandlerFunc(handleHealth))
	handle("GET /readyz", handleReady(db))
	handle("GET /openapi.json", http.HandlerFunc(handleOpenAPI))
	handle("GET /docs", http.HandlerFunc(handleDocs))
	handle("GET /api/{user_id}/tasks", auth(handleListTasks(db)))
	handle("POST /api/{user_id}/tasks", auth(handleCreateTask(db, cfg.MaxTasks)))
	handle("GET /api/{user_id}/tasks/{id}", auth(handleGetTask(db)))
	handle("PUT /api/{user_id}/tasks/{id}", auth(handleUpdateTask(db)))
	handle("PATCH /api/{user_id}/tasks/{id}", auth(handleUpdateTask(db)))
	handle("DELETE /api/{user_id}/tasks/{id}", auth(handleDeleteTask(db)))
	handle("PATCH /api/{user_id}/tasks/{id}/complete", auth(handleToggleTask(db)))
	return m
}

// middleware does what every request needs: security headers, CORS, the
// trailing slash, JSON for the mux's own 404 and 405, and one log line.
type middleware struct {
	mux    *http.ServeMux
	routes []string // the patterns registered, for the test that holds openapi.json to them
	log    *slog.Logger
	cors   map[string]bool
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
			h.Set("Access-Control-Expose-Headers", "X-Total-Count, Location, ETag, Retry-After, Idempotent-Replayed")
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			if !allowed {
				writeJSON(w, http.StatusForbidden, map[string]string{"detail": "Origin not allowed by CORS_ORIGINS"})
				return
			}
			h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match, If-None-Match, Idempotency-Key")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	// FastAPI redirected /tasks/ to /tasks, and a cross-origin redirect drops
	// Authorization in browsers: serve both spellings instead.
	if p := r.URL.Path; len(p) > 1 && strings.HasSuffix(p, "/") {
		r2 := *r
		u := *r.URL
		u.Path, u.RawPath = strings.TrimRight(p, "/"), ""
		r2.URL = &u
		r = &r2
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
		m.logRequest(r, rw, time.Since(start))
	}()
	m.mux.ServeHTTP(rw, r)
}

// logRequest writes the request's one log line; never a token, a secret or a body.
func (m *middleware) logRequest(r *http.Request, rw *responseWriter, d time.Duration) {
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("route", r.Pattern),
		slog.Int("status", rw.status),
		slog.Float64("ms", float64(d.Microseconds())/1000),
	}
	if rw.userID != "" {
		attrs = append(attrs, slog.String("user_id", rw.userID))
	}
	level := slog.LevelInfo
	if rw.err != nil {
		level = slog.LevelError
		attrs = append(attrs, slog.String("err", rw.err.Error()))
	}
	m.log.LogAttrs(r.Context(), level, "request", attrs...)
}

// responseWriter records what the request's log line needs, and turns the
// mux's own plain-text answers (404, 405 with Allow, redirects) into JSON.
type responseWriter struct {
	http.ResponseWriter
	status  int
	wrote   bool
	userID  string
	err     error
	swallow bool // the mux's own text body is being replaced
}

func (rw *responseWriter) WriteHeader(status int) {
	rw.status, rw.wrote = status, true
	// Every error or redirect here answers JSON; one that does not is net/http's
	// own text (404, 405, a redirect to a cleaned path), so it becomes JSON too.
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

// noteUser puts the authenticated user id on the request's log line.
func noteUser(w http.ResponseWriter, userID string) {
	if rw, ok := w.(*responseWriter); ok {
		rw.userID = userID
	}
}

// noteError puts a server-side error on the request's log line; the client never sees it.
func noteError(w http.ResponseWriter, err error) {
	if rw, ok := w.(*responseWriter); ok {
		rw.err = err
	}
}
