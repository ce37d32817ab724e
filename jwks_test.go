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
