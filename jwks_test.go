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
	"math/big"
	"net/http"
	"net/http/httptest"
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
		if err != nil || cfg.Auth.JWKSURL != want || cfg.Auth.JWKSIssuer != origin || cfg.Auth.JWKSAudience != origin {
			t.Errorf("BETTER_AUTH_URL=%s: JWKS %q, iss %q, aud %q, %v; want %q and %q", base, cfg.Auth.JWKSURL, cfg.Auth.JWKSIssuer, cfg.Auth.JWKSAudience, err, want, origin)
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
// /readyz answers 503 and its log line says why; once it answers, 200.
func TestReadyzSaysJWKSNeverAnswered(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	var up atomic.Bool
	ks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			if r.URL.Query().Has("empty") {
				w.Write([]byte(`{}`))
				return
			}
			http.NotFound(w, r)
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
	if r.status != 503 || !strings.Contains(string(r.body), "JWKS") || !strings.Contains(e.logs.String(), "status 404") {
		t.Fatalf("readyz with a JWKS that answers 404 = %s, want 503 naming the JWKS, its cause logged:\n%s", r, e.logs)
	}
	user := newUser(t)
	tok := signed(t, jwt.SigningMethodEdDSA, key, "ed", jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix()})
	e.want(e.do("GET", "/api/"+user+"/tasks", tok, nil), 401, "a token while the key set was never fetched")
	if !strings.Contains(e.logs.String(), `"token_refused":"key set not fetched"`) {
		t.Fatalf("the log does not say the key set was never fetched:\n%s", e.logs)
	}
	up.Store(true)
	time.Sleep(jwksRefetchEvery + 100*time.Millisecond) // fetched again at most this often
	e.want(e.do("GET", "/readyz", "", nil), 200, "readyz once the JWKS answers")
	e.want(e.do("GET", "/api/"+user+"/tasks", tok, nil), 200, "the token once the JWKS answers")
}
