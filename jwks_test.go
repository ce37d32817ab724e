// jwks_test.go tests the JWKS key set: keys fetched, cached, and rotated while the service runs.
package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// jwkOf encodes a public key as a JWK.
func jwkOf(t testing.TB, kid string, pub any) map[string]string {
	enc := base64.RawURLEncoding.EncodeToString
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return map[string]string{"kty": "OKP", "crv": "Ed25519", "x": enc(k), "kid": kid}
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "n": enc(k.N.Bytes()), "e": enc(big.NewInt(int64(k.E)).Bytes()), "kid": kid}
	case *ecdsa.PublicKey:
		b, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		n := (len(b) - 1) / 2
		return map[string]string{"kty": "EC", "crv": k.Curve.Params().Name, "x": enc(b[1 : 1+n]), "y": enc(b[1+n:]), "kid": kid}
	}
	t.Fatalf("no JWK for %T", pub)
	return nil
}

// keyServer is a JWKS endpoint whose keys a test can change while the API runs.
type keyServer struct {
	mu      sync.Mutex
	keys    []map[string]string
	fetches atomic.Int32
	srv     *httptest.Server
}

func newKeyServer(t *testing.T) *keyServer {
	ks := &keyServer{}
	ks.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ks.fetches.Add(1)
		ks.mu.Lock()
		defer ks.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"keys": ks.keys})
	}))
	t.Cleanup(ks.srv.Close)
	return ks
}

func (ks *keyServer) add(jwk map[string]string) {
	ks.mu.Lock()
	ks.keys = append(ks.keys, jwk)
	ks.mu.Unlock()
}

func TestKeyRotation(t *testing.T) {
	ks := newKeyServer(t)
	_, key1, _ := ed25519.GenerateKey(rand.Reader)
	ks.add(jwkOf(t, "k1", key1.Public()))
	e := newEnv(t, authConfig{JWKSURL: ks.srv.URL})
	user := newUser(t)
	path := "/api/" + user + "/tasks"
	claims := jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix()}

	e.want(e.do("GET", path, signed(t, jwt.SigningMethodEdDSA, key1, "k1", claims), nil), 200, "token from key 1")
	e.want(e.do("GET", path, signed(t, jwt.SigningMethodEdDSA, key1, "k1", claims), nil), 200, "token from key 1, cached")
	if n := ks.fetches.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times for one key, want 1", n)
	}

	// A token with an unknown kid that no fetch can find: fetches stay rate-limited.
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	for i := range 50 {
		e.want(e.do("GET", path, signed(t, jwt.SigningMethodEdDSA, stranger, fmt.Sprintf("unknown-%d", i), claims), nil), 401, "unknown kid")
	}
	if n := ks.fetches.Load(); n > 10 {
		t.Fatalf("50 unknown kids fetched the JWKS %d times", n)
	}

	// Rotation: the auth server adds key 2; its tokens work without a restart.
	_, key2, _ := ed25519.GenerateKey(rand.Reader)
	ks.add(jwkOf(t, "k2", key2.Public()))
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := e.do("GET", path, signed(t, jwt.SigningMethodEdDSA, key2, "k2", claims), nil)
		if r.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("token from the new key = %s after 5 s", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.want(e.do("GET", path, signed(t, jwt.SigningMethodEdDSA, key1, "k1", claims), nil), 200, "token from key 1 after rotation")
}

// TestBetterAuthURLForms: BETTER_AUTH_URL is read as Better Auth reads it: a
// path is its base path, and without one the base path is /api/auth; the
// tokens' default iss and aud are the origin either way.
func TestBetterAuthURLForms(t *testing.T) {
	for _, c := range [][3]string{ // BETTER_AUTH_URL, JWKS, iss and aud as Better Auth spells them (new URL(base).origin)
		{"http://127.0.0.1:3998", "http://127.0.0.1:3998/api/auth/jwks", "http://127.0.0.1:3998"},
		{"http://127.0.0.1:3998/", "http://127.0.0.1:3998/api/auth/jwks", "http://127.0.0.1:3998"},
		{"http://127.0.0.1:3998/api/auth", "http://127.0.0.1:3998/api/auth/jwks", "http://127.0.0.1:3998"},
		{"http://127.0.0.1:3998/api/auth/", "http://127.0.0.1:3998/api/auth/jwks", "http://127.0.0.1:3998"},
		{"https://app.example.com/auth", "https://app.example.com/auth/jwks", "https://app.example.com"},
		{"https://app.example.com/v1/api/auth", "https://app.example.com/v1/api/auth/jwks", "https://app.example.com"},
		{"http://LOCALHOST:18130/api/auth", "http://LOCALHOST:18130/api/auth/jwks", "http://localhost:18130"},
		{"http://127.0.0.1:80/api/auth", "http://127.0.0.1:80/api/auth/jwks", "http://127.0.0.1"},
		{"https://App.Example.com:443", "https://App.Example.com:443/api/auth/jwks", "https://app.example.com"},
	} {
		base, want, origin := c[0], c[1], c[2]
		cfg, err := loadConfig(func(k string) string { return map[string]string{"BETTER_AUTH_URL": base}[k] })
		if err != nil || cfg.Auth.JWKSURL != want || cfg.Auth.BetterAuthOrigin != origin {
			t.Errorf("BETTER_AUTH_URL=%s: JWKS %q, iss and aud %q, %v; want %q and %q", base, cfg.Auth.JWKSURL, cfg.Auth.BetterAuthOrigin, err, want, origin)
		}
	}
	// Through the handler: a Better Auth whose base URL has its base path.
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/auth/jwks", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"keys": []any{jwkOf(t, "ed", key.Public())}})
	})
	auth := httptest.NewServer(mux)
	t.Cleanup(auth.Close)
	cfg, err := loadConfig(func(k string) string { return map[string]string{"BETTER_AUTH_URL": auth.URL + "/api/auth"}[k] })
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, cfg.Auth)
	user := newUser(t)
	tok := signed(t, jwt.SigningMethodEdDSA, key, "ed", jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix(), "iss": auth.URL, "aud": auth.URL})
	e.want(e.do("GET", "/api/"+user+"/tasks", tok, nil), 200, "a token from a Better Auth at BETTER_AUTH_URL with its base path")
	e.want(e.do("GET", "/readyz", "", nil), 200, "readyz with the JWKS fetched")
}

// TestReadyzSaysJWKSNeverAnswered: while the JWKS has never been fetched,
// /readyz answers 503 and its log line says why; once it answers, 200. A valid
// token meanwhile is the service's outage, not the client's: 503 + Retry-After
// (a 401 would sign its user out), why on its log line, which is no error.
func TestReadyzSaysJWKSNeverAnswered(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	var up atomic.Bool
	ks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			if r.URL.Query().Has("empty") {
				w.Write([]byte(`{}`))
				return
			}
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"keys": []any{jwkOf(t, "ed", key.Public())}})
	}))
	t.Cleanup(ks.Close)
	// A key set with no usable key ({} here) cannot check a token either.
	empty := newEnv(t, authConfig{JWKSURL: ks.URL + "?empty"})
	empty.want(empty.do("GET", "/readyz", "", nil), 503, "readyz with a JWKS of no keys")
	e := newEnv(t, authConfig{JWKSURL: ks.URL})
	r := e.do("GET", "/readyz", "", nil)
	if r.status != 503 || !strings.Contains(string(r.body), "JWKS") || !strings.Contains(e.logs.String(), "status 500") {
		t.Fatalf("readyz with a JWKS that answers 500 = %s, want 503 naming the JWKS, its cause logged:\n%s", r, e.logs)
	}
	user := newUser(t)
	tok := signed(t, jwt.SigningMethodEdDSA, key, "ed", jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix()})
	closed := httptest.NewServer(nil)
	closed.Close()
	for _, e := range []*env{e, newEnv(t, authConfig{JWKSURL: closed.URL})} { // answers 500; refuses connections
		r := e.do("GET", "/api/"+user+"/tasks", tok, nil)
		lines := strings.Split(strings.TrimSpace(e.logs.String()), "\n")
		var line struct {
			Level        string
			TokenRefused string `json:"token_refused"`
		}
		json.Unmarshal([]byte(lines[len(lines)-1]), &line)
		if r.status != 503 || r.header.Get("Retry-After") == "" || decode[struct{ Detail string }](t, r).Detail == "" ||
			line.Level != "INFO" || line.TokenRefused != "key set not fetched" {
			t.Errorf("a token while the key set was never fetched = %s %v, logged %+v; want 503 + Retry-After, token_refused at INFO:\n%s", r, r.header, line, e.logs)
		}
	}
	up.Store(true)
	time.Sleep(jwksRefetchEvery + 100*time.Millisecond) // fetched again at most this often
	e.want(e.do("GET", "/readyz", "", nil), 200, "readyz once the JWKS answers")
	e.want(e.do("GET", "/api/"+user+"/tasks", tok, nil), 200, "the token once the JWKS answers")
}

// jwksEnv serves the task list behind the middleware and authenticate, as
// newServer does, and returns its key set, for a test to age.
func jwksEnv(t *testing.T, url string) (*env, *jwks) {
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	v := newVerifier(authConfig{JWKSURL: url}, &http.Client{Timeout: 5 * time.Second}, log)
	m := &middleware{mux: http.NewServeMux(), log: log}
	m.mux.Handle("GET /api/{user_id}/tasks", authenticate(v, nil, handleListTasks(testDB)))
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, logs: logs}, v.jwks
}

// age moves the key set's last fetch and try d into the past, as if d had passed.
func age(j *jwks, d time.Duration) {
	s := *j.set.Load()
	s.fetched, s.tried = s.fetched.Add(-d), s.tried.Add(-d)
	j.set.Store(&s)
}

// edTokens makes a new token for user from key each call, so that the verified-token cache never answers.
func edTokens(t *testing.T, user string) func(key ed25519.PrivateKey, kid string) string {
	n := 0
	return func(key ed25519.PrivateKey, kid string) string {
		n++
		return signed(t, jwt.SigningMethodEdDSA, key, kid, jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix(), "jti": strconv.Itoa(n)})
	}
}

// TestJWKSOutageKeepsKeysNotFresh: past jwksMaxAge, a failed fetch keeps the
// keys it had (an outage signs nobody out) without making them fresh, so a key
// the auth server removed stops working at the first fetch after it is back,
// not jwksMaxAge later. An unknown kid meanwhile may be a new key: 503, not 401.
func TestJWKSOutageKeepsKeysNotFresh(t *testing.T) {
	_, keyA, _ := ed25519.GenerateKey(rand.Reader)
	_, keyB, _ := ed25519.GenerateKey(rand.Reader)
	var keys atomic.Pointer[[]any] // what the JWKS serves; nil: 500
	ks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if k := keys.Load(); k != nil {
			json.NewEncoder(w).Encode(map[string]any{"keys": *k})
		} else {
			http.Error(w, "down", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(ks.Close)
	e, j := jwksEnv(t, ks.URL)
	user := newUser(t)
	path, tok := "/api/"+user+"/tasks", edTokens(t, user)
	keys.Store(&[]any{jwkOf(t, "A", keyA.Public())})
	e.want(e.do("GET", path, tok(keyA, "A"), nil), 200, "a token of key A")

	age(j, jwksMaxAge)
	keys.Store(nil)
	e.want(e.do("GET", path, tok(keyA, "A"), nil), 200, "key A past max age while the JWKS fails")
	e.want(e.do("GET", path, tok(keyB, "B"), nil), 503, "a kid the failing JWKS may hold")
	if !strings.Contains(e.logs.String(), "jwks fetch failed") {
		t.Fatalf("no failed fetch logged:\n%s", e.logs)
	}

	keys.Store(&[]any{jwkOf(t, "B", keyB.Public())}) // back, with key A removed
	age(j, jwksRefetchEvery)
	e.want(e.do("GET", path, tok(keyA, "A"), nil), 401, "key A, removed, at the first fetch after the JWKS is back")
	e.want(e.do("GET", path, tok(keyB, "B"), nil), 200, "key B")
}

// TestJWKSRefetchStalls: while the refetch of a key set past jwksMaxAge stalls,
// a token whose key is in the set is served with it, without waiting.
func TestJWKSRefetchStalls(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	doc := map[string]any{"keys": []any{jwkOf(t, "ed", key.Public())}}
	var stall atomic.Bool
	stalled, release := make(chan struct{}), make(chan struct{})
	ks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if stall.CompareAndSwap(true, false) {
			close(stalled)
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		json.NewEncoder(w).Encode(doc)
	}))
	t.Cleanup(ks.Close)
	e, j := jwksEnv(t, ks.URL)
	user := newUser(t)
	path, tok := "/api/"+user+"/tasks", edTokens(t, user)
	e.want(e.do("GET", path, tok(key, "ed"), nil), 200, "the first token")

	age(j, jwksMaxAge)
	stall.Store(true)
	first := make(chan int, 1) // the status of the request that refetches
	req, _ := http.NewRequest("GET", e.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok(key, "ed"))
	go func() {
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			first <- 0
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	<-stalled
	e.want(e.do("GET", path, tok(key, "ed"), nil), 200, "a token of a known key while the refetch stalls")
	select {
	case s := <-first:
		t.Fatalf("the refetching request ended (%d) before its fetch was let go", s)
	default:
	}
	if strings.Contains(e.logs.String(), "jwks fetch failed") {
		t.Fatalf("the request waited for the stalled fetch to fail:\n%s", e.logs)
	}
	close(release)
	if s := <-first; s != 200 {
		t.Fatalf("the refetching request = %d, want 200", s)
	}
}
