// jwks.go fetches Better Auth's JSON Web Key Set and decodes its keys (RFC 7517, RFC 7518).
package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// An unknown kid fetches the JWKS again at most this often, so rotation works
	// without a restart and random kids cannot flood the auth server.
	jwksRefetchEvery = time.Second
	// Keys are re-read at least this often, so a key removed from the JWKS stops working.
	jwksMaxAge = 10 * time.Minute
)

// errUnknownKey: no key of the token's algorithm has its kid (or it has none).
var errUnknownKey = errors.New("no key for the token's kid and alg")

// jwks caches the public keys of a JSON Web Key Set, fetched again on an unknown kid.
type jwks struct {
	url    string
	client *http.Client
	log    *slog.Logger
	mu     sync.Mutex // one fetch at a time
	set    atomic.Pointer[keySet]
}

// keySet is one fetch of the JWKS.
type keySet struct {
	keys    map[string]publicKey // by kid
	fetched time.Time            // when it was last tried, successful or not
	ok      bool                 // some fetch, this one or an earlier, succeeded
	err     error                // this fetch's failure, if it failed
}

// ready answers an error, a 503 for /readyz, while no fetch of the key set has
// succeeded: Better Auth's tokens cannot be checked. It fetches at most once a
// second, as an unknown kid does.
func (j *jwks) ready() error {
	set := j.set.Load()
	if set == nil || !set.ok {
		set = j.refresh("")
	}
	if !set.ok {
		return fmt.Errorf("%w: %s: %w", errNoKeySet, j.url, set.err)
	}
	return nil
}

// errNoKeySet is /readyz's answer while the JWKS has never been fetched.
var errNoKeySet = &statusError{http.StatusServiceUnavailable, "Better Auth's key set (JWKS) has not been fetched; the log says why"}

// publicKey is a verification key and the token algorithms it may verify.
type publicKey struct {
	key  any
	algs []string
}

// key returns the key named kid if it may verify alg.
func (j *jwks) key(kid, alg string) (any, error) {
	set := j.set.Load()
	if set == nil || time.Since(set.fetched) >= jwksMaxAge || set.keys[kid].key == nil {
		set = j.refresh(kid)
	}
	k := set.keys[kid]
	if !set.ok {
		return nil, errNoKeySet
	}
	if k.key == nil || !slices.Contains(k.algs, alg) {
		return nil, errUnknownKey
	}
	return k.key, nil
}

// refresh fetches the key set unless another request just did; on failure it
// keeps the keys it had, so a brief auth server outage does not sign everyone out.
func (j *jwks) refresh(kid string) *keySet {
	j.mu.Lock()
	defer j.mu.Unlock()
	old := j.set.Load()
	if old != nil {
		age := time.Since(old.fetched)
		if age < jwksRefetchEvery || age < jwksMaxAge && old.keys[kid].key != nil {
			return old
		}
	}
	keys, err := j.fetch()
	ok := err == nil
	if err != nil {
		j.log.Error("jwks fetch failed", "url", j.url, "err", err.Error())
		if old != nil {
			keys, ok = old.keys, old.ok
		}
	}
	set := &keySet{keys: keys, fetched: time.Now(), ok: ok, err: err}
	j.set.Store(set)
	return set
}

// fetch reads the key set; keys it cannot use (wrong type, no kid, not for signing) are skipped.
func (j *jwks) fetch() (map[string]publicKey, error) {
	resp, err := j.client.Get(j.url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&doc); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	keys := make(map[string]publicKey, len(doc.Keys))
	for _, k := range doc.Keys {
		if pk, err := k.publicKey(); err == nil && k.Kid != "" && (k.Use == "" || k.Use == "sig") {
			keys[k.Kid] = pk
		}
	}
	if len(keys) == 0 { // null, {}, an error document: nothing a token could be checked with
		return nil, errors.New("no usable signing key in the key set")
	}
	return keys, nil
}

// jwk is one JSON Web Key (RFC 7517) as a JWKS lists it.
type jwk struct {
	Kty, Crv, Kid, Alg, Use string
	X, Y, N, E              string
}

// publicKey decodes an Ed25519, P-256, P-521 or RSA (2048 bits or more) public key.
func (k jwk) publicKey() (publicKey, error) {
	b64 := base64.RawURLEncoding.DecodeString
	var pk publicKey
	switch {
	case k.Kty == "OKP" && k.Crv == "Ed25519":
		x, err := b64(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return pk, errors.New("bad Ed25519 key")
		}
		pk = publicKey{ed25519.PublicKey(x), []string{"EdDSA"}}
	case k.Kty == "EC" && (k.Crv == "P-256" || k.Crv == "P-521"):
		curve, alg := elliptic.P256(), "ES256"
		if k.Crv == "P-521" {
			curve, alg = elliptic.P521(), "ES512"
		}
		x, errX := b64(k.X)
		y, errY := b64(k.Y)
		if errX != nil || errY != nil {
			return pk, errors.New("bad EC key")
		}
		key, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
		if err != nil {
			return pk, err
		}
		pk = publicKey{key, []string{alg}}
	case k.Kty == "RSA":
		n, errN := b64(k.N)
		e, errE := b64(k.E)
		if errN != nil || errE != nil || len(e) == 0 || len(e) > 4 {
			return pk, errors.New("bad RSA key")
		}
		key := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if key.N.BitLen() < 2048 || key.E < 3 || key.E%2 == 0 {
			return pk, errors.New("weak RSA key")
		}
		pk = publicKey{key, []string{"RS256", "PS256"}}
	default:
		return pk, errors.New("unsupported key type")
	}
	if k.Alg != "" { // a key that names its algorithm verifies only that one
		if !slices.Contains(pk.algs, k.Alg) {
			return pk, errors.New("key alg does not fit its type")
		}
		pk.algs = []string{k.Alg}
	}
	return pk, nil
}
