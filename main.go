// main.go holds the configuration, the route table, the `token`, `version` and `vapid-keys` commands and the server's start and stop.
package main

import (
	"cmp"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// release is this build's version: the latest in CHANGELOG.md, and openapi.json's info.version.
const release = "1.0.0"

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
	DirectURL      string // DATABASE_DIRECT_URL: a session, not a pooler's, for LISTEN
	Auth           authConfig
	Port           string
	CORSOrigins    map[string]bool
	StartupTimeout time.Duration // how long to wait for the database at start
	DrainTimeout   time.Duration // how long requests in flight may take after SIGTERM
	QueryTimeout   time.Duration // bound on each statement, including the wait for a connection
	SyncRetention  time.Duration // how long the change feed keeps deletions; an older cursor gets 410
	MaxStreams     int           // open event streams this process serves at once
	MaxTasks       int           // tasks one user may hold
	RatePerSecond  int           // requests a user may make each second; 0: no limit
	RateBurst      int           // requests a user may make at once
	VAPID          *vapidKey     // Web Push's key and subject; nil: Web Push is off
	PushPrivate    bool          // WEB_PUSH_ALLOW_PRIVATE=1: push endpoints may be http, and private addresses (tests, development)
	MCPURL         string        // MCP_URL: /mcp as clients reach it, the audience of Better Auth's OAuth tokens for it; "": no OAuth tokens
	OAuthIssuer    string        // Better Auth's issuer of OAuth tokens: JWT_ISSUER, or its base URL; "" without BETTER_AUTH_URL
}

// loadConfig reads and checks the environment; each error is one line saying what to set.
func loadConfig(getenv func(string) string) (config, error) {
	c := config{
		DatabaseURL:    cmp.Or(getenv("DATABASE_URL"), getenv("NEON_DB_URL")), // "": libpq's defaults (PG* variables)
		DirectURL:      getenv("DATABASE_DIRECT_URL"),
		Port:           cmp.Or(getenv("PORT"), "8000"),
		CORSOrigins:    map[string]bool{},
		StartupTimeout: 30 * time.Second,
		DrainTimeout:   10 * time.Second,
		QueryTimeout:   5 * time.Second,
		SyncRetention:  30 * 24 * time.Hour,
		MaxStreams:     2000,
		MaxTasks:       10000,
		RatePerSecond:  50,
		RateBurst:      100,
	}
	var err error
	if c.Auth.Secret, err = readSecret(getenv); err != nil {
		return c, err
	}
	if previous := getenv("BETTER_AUTH_SECRET_PREVIOUS"); previous != "" {
		if len(previous) < minSecret || c.Auth.Secret == nil {
			return c, fmt.Errorf("BETTER_AUTH_SECRET_PREVIOUS must be at least %d bytes, next to a BETTER_AUTH_SECRET", minSecret)
		}
		c.Auth.Previous = []byte(previous)
	}
	c.Auth.Issuer, c.Auth.Audience = getenv("JWT_ISSUER"), getenv("JWT_AUDIENCE")
	if base := getenv("BETTER_AUTH_URL"); base != "" {
		origin, err := parseOrigin(base, true)
		if err != nil {
			return c, fmt.Errorf("BETTER_AUTH_URL: %w", err)
		}
		c.OAuthIssuer = cmp.Or(c.Auth.Issuer, betterAuthBase(base))
		c.Auth.JWKSURL = betterAuthBase(base) + "/jwks"
		c.Auth.BetterAuthOrigin = origin
	}
	if c.MCPURL = getenv("MCP_URL"); c.MCPURL != "" {
		if _, err := parseOrigin(c.MCPURL, true); err != nil || !strings.HasSuffix(c.MCPURL, "/mcp") {
			return c, errors.New("MCP_URL must be the http:// or https:// URL of /mcp as clients reach it, such as https://api.example.com/mcp")
		}
	}
	if u := getenv("JWKS_URL"); u != "" {
		if _, err := parseOrigin(u, true); err != nil {
			return c, fmt.Errorf("JWKS_URL: %w", err)
		}
		c.Auth.JWKSURL = u
	}
	if c.Auth.Secret == nil && c.Auth.JWKSURL == "" {
		return c, fmt.Errorf("set BETTER_AUTH_SECRET (%d+ bytes, shared with the frontend) or BETTER_AUTH_URL (Better Auth's base URL, for its JWKS)", minSecret)
	}
	if key := getenv("VAPID_PRIVATE_KEY"); key != "" {
		if c.VAPID, err = parseVAPIDKey(key, getenv("VAPID_SUBJECT")); err != nil {
			return c, fmt.Errorf("VAPID_PRIVATE_KEY and VAPID_SUBJECT (try: tasks vapid-keys): %w", err)
		}
	}
	if allow := getenv("WEB_PUSH_ALLOW_PRIVATE"); allow != "" && allow != "1" {
		return c, fmt.Errorf("WEB_PUSH_ALLOW_PRIVATE must be 1 (for tests and development only) or unset, not %q", allow)
	}
	c.PushPrivate = getenv("WEB_PUSH_ALLOW_PRIVATE") == "1"
	if p, err := strconv.Atoi(c.Port); err != nil || p < 0 || p > 65535 {
		return c, fmt.Errorf("PORT must be a port number, not %q", c.Port)
	}
	for _, o := range strings.Split(cmp.Or(getenv("CORS_ORIGINS"), "http://localhost:3000"), ",") {
		if o = strings.TrimSpace(o); o == "" {
			continue
		}
		origin, err := parseOrigin(o, false)
		if err != nil {
			return c, fmt.Errorf("CORS_ORIGINS: %q: %w", o, err)
		}
		c.CORSOrigins[origin] = true
	}
	// Slices, not maps: of two bad settings, the first in this order is the one reported.
	for _, d := range []struct {
		name, example string
		dst           *time.Duration
	}{{"STARTUP_TIMEOUT", "30s", &c.StartupTimeout}, {"DRAIN_TIMEOUT", "10s", &c.DrainTimeout},
		{"QUERY_TIMEOUT", "5s", &c.QueryTimeout}, {"SYNC_RETENTION", "720h (30 days)", &c.SyncRetention}} {
		if s := getenv(d.name); s != "" {
			v, err := time.ParseDuration(s)
			if err != nil || v <= 0 {
				return c, fmt.Errorf("%s must be a positive duration such as %s, not %q", d.name, d.example, s)
			}
			*d.dst = v
		}
	}
	for _, n := range []struct {
		name string
		dst  *int
		min  int
	}{{"MAX_TASKS_PER_USER", &c.MaxTasks, 1}, {"RATE_LIMIT_PER_SECOND", &c.RatePerSecond, 0}, {"RATE_LIMIT_BURST", &c.RateBurst, 1}, {"MAX_STREAMS", &c.MaxStreams, 1}} {
		if s := getenv(n.name); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil || v < n.min {
				return c, fmt.Errorf("%s must be a whole number of at least %d, not %q", n.name, n.min, s)
			}
			*n.dst = v
		}
	}
	return c, nil
}

// minSecret is the least length of an HS256 secret, in bytes: RFC 7518 §3.2
// asks for a key at least as long as the hash output (256 bits).
const minSecret = 32

// readSecret reads BETTER_AUTH_SECRET: nil when unset, else at least minSecret bytes.
func readSecret(getenv func(string) string) ([]byte, error) {
	secret := getenv("BETTER_AUTH_SECRET")
	if secret == "" {
		return nil, nil
	}
	if len(secret) < minSecret {
		return nil, fmt.Errorf("BETTER_AUTH_SECRET must be at least %d bytes (try: openssl rand -base64 %d)", minSecret, minSecret)
	}
	return []byte(secret), nil
}

// parseOrigin checks an http(s) URL and returns its origin (scheme://host[:port])
// as browsers spell it; unless withPath, the URL must be an origin already.
func parseOrigin(s string, withPath bool) (string, error) {
	u, err := url.Parse(strings.TrimSuffix(s, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return "", errors.New("must be an http:// or https:// URL")
	}
	if !withPath && (u.Path != "" || u.RawQuery != "" || u.Fragment != "") {
		return "", errors.New("must be an origin such as https://app.example.com, without a path")
	}
	// As a browser's URL parser spells it, in Origin headers and in Better Auth's
	// default iss and aud: the host in lower case, without the scheme's default port.
	host := strings.TrimSuffix(strings.ToLower(u.Host), map[string]string{"http": ":80", "https": ":443"}[u.Scheme])
	return u.Scheme + "://" + host, nil
}

// betterAuthBase is Better Auth's base URL (the issuer of its OAuth tokens, and where its JWKS is) for base, a valid
// http(s) URL read as better-auth's withPath reads it: a path in it is the base path, /api/auth without one.
func betterAuthBase(base string) string {
	u, _ := url.Parse(base)
	return u.Scheme + "://" + u.Host + cmp.Or(strings.TrimRight(u.Path, "/"), "/api/auth")
}

// run is the whole program: `tasks` serves the API, `tasks token USER_ID` prints a token,
// `tasks version` the version, and `tasks vapid-keys` a new VAPID key pair.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	log := slog.New(slog.NewJSONHandler(stdout, nil))
	switch {
	case len(args) > 1 && args[1] == "token":
		return printToken(getenv, args[2:], stdout)
	case len(args) == 2 && args[1] == "version":
		_, err := fmt.Fprintln(stdout, release)
		return err
	case len(args) == 2 && args[1] == "vapid-keys":
		key, err := ecdh.P256().GenerateKey(rand.Reader) // as web-push generate-vapid-keys makes them
		if err == nil {
			b64 := base64.RawURLEncoding.EncodeToString
			_, err = fmt.Fprintf(stdout, "VAPID_PRIVATE_KEY=%s\nVAPID_PUBLIC_KEY=%s\n", b64(key.Bytes()), b64(key.PublicKey().Bytes()))
		}
		return err
	case len(args) > 1:
		return fmt.Errorf("unknown command %q (commands: token USER_ID, version, vapid-keys)", strings.Join(args[1:], " "))
	}
	cfg, err := loadConfig(getenv)
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
	if err := db.migrate(startCtx, log); err != nil {
		return err
	}
	m := newServer(log, db, cfg)
	if err := m.live.checkNotify(startCtx, cfg.DirectURL, log); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", ":"+cfg.Port)
	if err != nil {
		return err
	}
	background, stopBackground := context.WithCancel(ctx) // ends with run, whichever way it returns
	defer stopBackground()
	go forgetOld(background, db, cfg.SyncRetention, log)
	var p *pusher
	if cfg.VAPID != nil {
		p = &pusher{db: db, log: log, key: cfg.VAPID, client: newPushClient(cfg.PushPrivate)}
	} else {
		log.Info("Web Push is off: reminders reach the feed and event streams only (set VAPID_PRIVATE_KEY and VAPID_SUBJECT)")
	}
	if cfg.PushPrivate {
		log.Warn("WEB_PUSH_ALLOW_PRIVATE=1: pushes may go to http and private addresses; for tests and development only")
	}
	reminding := make(chan struct{})
	go func() { remind(background, db, p, log); close(reminding) }()
	defer func() { stopBackground(); <-reminding }() // before the pool closes
	srv := newHTTPServer(m, log)
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

// forgetOld deletes expired Idempotency-Keys, tombstones and fired reminders now and every hour
// until ctx ends, a batch at a time until none is left (store.deleteOld).
func forgetOld(ctx context.Context, db *store, retention time.Duration, log *slog.Logger) {
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		n, err := db.deleteOld(ctx, retention, forgetBatch)
		if err != nil && ctx.Err() == nil {
			log.Warn("deleting expired idempotency keys, tombstones and fired reminders", "err", err.Error())
		}
		if err == nil && n == forgetBatch && ctx.Err() == nil { // a full batch: more may be left
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// printToken prints an HS256 token for args[0], valid for an hour, for trying
// the API with curl; it needs only BETTER_AUTH_SECRET.
func printToken(getenv func(string) string, args []string, stdout io.Writer) error {
	if len(args) != 1 || !validUserID(args[0]) {
		return errors.New("usage: tasks token USER_ID")
	}
	secret, err := readSecret(getenv)
	if err != nil {
		return err
	}
	if secret == nil {
		return fmt.Errorf("token needs BETTER_AUTH_SECRET (%d+ bytes)", minSecret)
	}
	token, err := mintToken(secret, args[0], time.Hour)
	if err == nil {
		_, err = fmt.Fprintln(stdout, token)
	}
	return err
}

// maxHeaderBytes bounds a request's headers, a bearer token included (431 beyond).
const maxHeaderBytes = 32 << 10

// newHTTPServer wraps m in a server whose timeouts and header limit bound every
// client; event streams, which outlive them, end when it shuts down.
func newHTTPServer(m *middleware, log *slog.Logger) *http.Server {
	srv := &http.Server{
		Handler:           m,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(m.live.close)
	return srv
}

// newServer builds the service's handler: the one route table inside the shared middleware.
func newServer(log *slog.Logger, db *store, cfg config) *middleware {
	v := newVerifier(cfg.Auth, &http.Client{Timeout: 5 * time.Second}, log)
	limit := newRateLimiter(cfg.RatePerSecond, cfg.RateBurst)
	auth := func(h userHandler) http.Handler { return authenticate(v, limit, h) }

	m := &middleware{mux: http.NewServeMux(), log: log, cors: cfg.CORSOrigins, live: newStreams(db, log, cfg.MaxStreams, cfg.SyncRetention)}
	handle := func(pattern string, h http.Handler) {
		m.mux.Handle(pattern, h)
		m.routes = append(m.routes, pattern)
	}
	handle("GET /healthz", http.HandlerFunc(handleHealth))
	handle("GET /readyz", handleReady(db, v))
	handle("GET /openapi.json", http.HandlerFunc(handleOpenAPI))
	handle("GET /docs", http.HandlerFunc(handleDocs))
	handle("GET /api/{user_id}/tasks", auth(handleListTasks(db)))
	handle("POST /api/{user_id}/tasks", auth(handleCreateTask(db, cfg.MaxTasks)))
	handle("GET /api/{user_id}/tasks/{id}", auth(handleGetTask(db)))
	handle("PUT /api/{user_id}/tasks/{id}", auth(handleUpdateTask(db, cfg.MaxTasks)))
	handle("PATCH /api/{user_id}/tasks/{id}", auth(handleUpdateTask(db, cfg.MaxTasks)))
	handle("DELETE /api/{user_id}/tasks/{id}", auth(handleDeleteTask(db)))
	handle("PATCH /api/{user_id}/tasks/{id}/complete", auth(handleToggleTask(db, cfg.MaxTasks)))
	handle("POST /api/{user_id}/tasks/{id}/move", auth(handleMoveTask(db)))
	handle("GET /api/{user_id}/changes", auth(handleChanges(db, cfg.SyncRetention)))
	handle("GET /api/{user_id}/events", authenticateStream(v, limit, handleEvents(db, m.live)))
	handle("GET /api/vapid-public-key", handleVAPIDKey(cfg.VAPID))
	handle("POST /api/{user_id}/push-subscriptions", auth(handleSubscription(db, cfg.VAPID, cfg.PushPrivate, true)))
	handle("DELETE /api/{user_id}/push-subscriptions", auth(handleSubscription(db, cfg.VAPID, cfg.PushPrivate, false)))
	mcp := newMCPServer(v, limit, db, cfg)
	handle("POST /mcp", http.HandlerFunc(mcp.handle))
	handle("GET /.well-known/oauth-protected-resource", http.HandlerFunc(mcp.handleMetadata))
	return m
}
