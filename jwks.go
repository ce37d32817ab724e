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
	// A fetch is tried at most this often (for an unknown kid, an old set, /readyz), so
	// rotation works without a restart and random kids cannot flood the auth server.
	jwksRefetchEvery = time.Second
	// A set this long past its last successful fetch is fetched again, so a removed key stops working.
	jwksMaxAge = 10 * time.Minute
)

// errUnknownKey: no key of the token's algorithm has its kid (or it has none).
var errUnknownKey = errors.New("no key for the token's kid and alg")

// jwks caches the public keys of a JSON Web Key Set, fetched again on an unknown kid or past jwksMaxAge.
type jwks struct {
	url    string
	client *http.Client
	log    *slog.Logger
	mu     sync.Mutex             // held by the one fetch in flight
	set    atomic.Pointer[keySet] // never nil: newVerifier stores an empty one
}

// keySet is the keys of the last successful fetch and how the last try went.
type keySet struct {
	keys           map[string]publicKey // by kid; nil until a fetch succeeds
	fetched, tried time.Time            // the last successful fetch, the last try
	err            error                // the last try's failure, if it failed
}

// ready answers errNoKeySet, with the URL and the last try's failure, while no fetch of the key set has succeeded.
func (j *jwks) ready() error {
	if set := j.set.Load(); set.keys == nil { // none yet: try a fetch (at most one a jwksRefetchEvery)
		if set = j.refresh(true); set.keys == nil {
			return fmt.Errorf("%w: %s: %w", errNoKeySet, j.url, set.err)
		}
	}
	return nil
}

// errNoKeySet: no key set can check the token (none was fetched yet, or its kid is
// unknown and the last fetch failed); /readyz answers it while none was fetched.
var errNoKeySet = &statusError{http.StatusServiceUnavailable, "Better Auth's key set (JWKS) could not be fetched; try again shortly"}

// publicKey is a verification key and the token algorithms it may verify.
type publicKey struct {
	key  any
	algs []string
}

// key returns the key named kid if it may verify alg. An unknown kid or a set past
// jwksMaxAge needs a fetch; a known kid does not wait for another request's.
func (j *jwks) key(kid, alg string) (any, error) {
	set := j.set.Load()
	known := set.keys[kid].key != nil
	if !known || time.Since(set.fetched) >= jwksMaxAge {
		set = j.refresh(!known)
	}
	k := set.keys[kid]
	if k.key == nil && set.err != nil { // the kid may be in the set that could not be read
		return nil, errNoKeySet
	}
	if k.key == nil || !slices.Contains(k.algs, alg) {
		return nil, errUnknownKey
	}
	return k.key, nil
}

// refresh fetches the key set, one fetch at a time, at most once per jwksRefetchEvery,
// and returns the newest set (with wait, that of the fetch in flight). A failed fetch
// keeps the keys (an outage signs nobody out) but not as fresh: the next request retries.
func (j *jwks) refresh(wait bool) *keySet {
	if wait {
		j.mu.Lock()
	} else if !j.mu.TryLock() {
		return j.set.Load()
	}
	defer j.mu.Unlock()
	old := j.set.Load()
	if time.Since(old.tried) < jwksRefetchEvery {
		return old
	}
	keys, err := j.fetch()
	now := time.Now()
	set := &keySet{keys, now, now, err}
	if err != nil {
		j.log.Error("jwks fetch failed", "url", j.url, "err", err.Error())
		set.keys, set.fetched = old.keys, old.fetched
	}
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
type jwk struct{ Kty, Crv, Kid, Alg, Use, X, Y, N, E string }

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
		key, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
		if errX != nil || errY != nil || err != nil {
			return pk, errors.New("bad EC key")
		}
		pk = publicKey{key, []string{alg}}
	case k.Kty == "RSA":
		n, errN := b64(k.N)
		e, errE := b64(k.E)
		key := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if errN != nil || errE != nil || len(e) > 4 || key.N.BitLen() < 2048 || key.E < 3 || key.E%2 == 0 {
			return pk, errors.New("bad or weak RSA key")
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
