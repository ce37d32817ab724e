// auth.go holds the token verifier (HS256 shared secret and Better Auth's JWKS) and the middleware.
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// Admission errors, with the detail a client sees.
var (
	errNoToken      = &statusError{http.StatusUnauthorized, "Not authenticated"}
	errInvalidToken = &statusError{http.StatusUnauthorized, "Invalid token"}
	errExpiredToken = &statusError{http.StatusUnauthorized, "Token has expired"}
	errForbidden    = &statusError{http.StatusForbidden, "Not allowed to access another user's tasks"}
	errTooMany      = &statusError{http.StatusTooManyRequests, "Too many requests, slow down"}
)

const (
	clockLeeway   = 30 * time.Second
	maxTokenBytes = 8 << 10
	// An unknown kid fetches the JWKS again at most this often, so rotation works
	// without a restart and random kids cannot flood the auth server.
	jwksRefetchEvery = time.Second
	// Keys are re-read at least this often, so a key removed from the JWKS stops working.
	jwksMaxAge = 10 * time.Minute
)

// asymmetricAlgs are the algorithms Better Auth's jwt plugin can sign with.
var asymmetricAlgs = []string{"EdDSA", "ES256", "ES512", "RS256", "PS256"}

// authConfig says which tokens to accept.
type authConfig struct {
	Secret   []byte // HS256 shared secret; nil: no HS256 tokens
	Previous []byte // an earlier secret still accepted while clients move to Secret; nil: none
	JWKSURL  string // Better Auth's JWKS; "": no asymmetric tokens
	Issuer   string // required iss of every token; "" to skip
	Audience string // required aud of every token; "" to skip
	// Required of JWKS tokens only, when Issuer/Audience are unset (Better Auth's defaults).
	JWKSIssuer, JWKSAudience string
}

// verifier checks bearer tokens and returns their subject.
type verifier struct {
	cfg    authConfig
	parser *jwt.Parser
	jwks   *jwks // nil without a JWKS URL

	// A client sends the same token with every request until it expires, and
	// checking an EdDSA or RSA signature costs 20-35 µs (HS256: 4 µs), so
	// verified tokens are remembered, by their whole text (signature
	// included), until they expire. A key removed from the JWKS therefore
	// stops working only when the tokens it signed expire (15 minutes for
	// Better Auth's).
	mu       sync.RWMutex
	verified map[string]verifiedToken
}

// verifiedToken is what a verified token said.
type verifiedToken struct {
	sub                string
	notBefore, expires time.Time
}

// maxVerified bounds the verified-token cache; tokens longer than 2 KiB are not kept.
const maxVerified = 10000

// newVerifier builds the one parser: the algorithms it admits follow from the keys configured.
func newVerifier(cfg authConfig, client *http.Client, log *slog.Logger) *verifier {
	var algs []string
	if cfg.Secret != nil {
		algs = append(algs, "HS256")
	}
	v := &verifier{cfg: cfg, verified: map[string]verifiedToken{}}
	if cfg.JWKSURL != "" {
		algs = append(algs, asymmetricAlgs...)
		v.jwks = &jwks{url: cfg.JWKSURL, client: client, log: log}
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(algs), jwt.WithExpirationRequired(), jwt.WithLeeway(clockLeeway)}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	return v
}

// key picks the key by the algorithm family the parser admitted, never by a
// key or URL in the token's header: HMAC gets the shared secret, anything else
// the JWKS key named by kid, if that key is of the algorithm's type.
func (v *verifier) key(t *jwt.Token) (any, error) {
	if _, ok := t.Method.(*jwt.SigningMethodHMAC); ok {
		if v.cfg.Secret == nil {
			return nil, errInvalidToken
		}
		if v.cfg.Previous != nil {
			return jwt.VerificationKeySet{Keys: []jwt.VerificationKey{v.cfg.Secret, v.cfg.Previous}}, nil
		}
		return v.cfg.Secret, nil
	}
	kid, _ := t.Header["kid"].(string)
	if v.jwks == nil || kid == "" {
		return nil, errInvalidToken
	}
	return v.jwks.key(kid, t.Method.Alg())
}

// verify checks a bearer token and returns the user id it carries.
func (v *verifier) verify(token string) (string, error) {
	now := time.Now()
	v.mu.RLock()
	known, ok := v.verified[token]
	v.mu.RUnlock()
	if ok && now.Before(known.expires.Add(clockLeeway)) && now.After(known.notBefore.Add(-clockLeeway)) {
		return known.sub, nil
	}
	if len(token) > maxTokenBytes {
		return "", errInvalidToken
	}
	var c jwt.RegisteredClaims
	t, err := v.parser.ParseWithClaims(token, &c, v.key)
	if errors.Is(err, jwt.ErrTokenExpired) {
		return "", errExpiredToken
	}
	if err != nil {
		return "", errInvalidToken
	}
	if _, hmac := t.Method.(*jwt.SigningMethodHMAC); !hmac {
		if v.cfg.JWKSIssuer != "" && c.Issuer != v.cfg.JWKSIssuer ||
			v.cfg.JWKSAudience != "" && !slices.Contains(c.Audience, v.cfg.JWKSAudience) {
			return "", errInvalidToken
		}
	}
	if !validUserID(c.Subject) {
		return "", errInvalidToken
	}
	if len(token) <= 2<<10 {
		entry := verifiedToken{sub: c.Subject, expires: c.ExpiresAt.Time} // exp is required
		if c.NotBefore != nil {
			entry.notBefore = c.NotBefore.Time
		}
		v.remember(token, entry, now)
	}
	return c.Subject, nil
}

// remember keeps a verified token; when the cache is full it first drops the
// expired ones, then, if it must, any tenth of the rest.
func (v *verifier) remember(token string, t verifiedToken, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.verified) >= maxVerified {
		for k, e := range v.verified {
			if now.After(e.expires.Add(clockLeeway)) {
				delete(v.verified, k)
			}
		}
		for k := range v.verified {
			if len(v.verified) < maxVerified*9/10 {
				break
			}
			delete(v.verified, k) // map order is random: an arbitrary one
		}
	}
	v.verified[token] = t
}

// validUserID accepts what can be a user id: 1-255 bytes of printable UTF-8.
func validUserID(s string) bool {
	if s == "" || len(s) > 255 || !utf8.ValidString(s) {
		return false
	}
	return !strings.ContainsFunc(s, unicode.IsControl)
}

// bearerToken reads the token from the Authorization header, and nowhere else.
func bearerToken(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", errNoToken
	}
	scheme, token, _ := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", errInvalidToken
	}
	return token, nil
}

// userHandler serves a request on behalf of an authenticated user.
type userHandler func(w http.ResponseWriter, r *http.Request, userID string)

// authenticate answers 401 without a valid token, 429 when the token's user is
// over their rate, and 403 when the path's user_id is not the token's subject;
// otherwise it calls h with the user id. A nil limit admits every request.
func authenticate(v *verifier, limit *rateLimiter, h userHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		userID, err := admit(v, limit, w, r)
		if err != nil {
			writeError(w, r, err)
			return
		}
		h(w, r, userID)
	})
}

// admit checks the request's token, rate and path, and returns its user id.
func admit(v *verifier, limit *rateLimiter, w http.ResponseWriter, r *http.Request) (string, error) {
	token, err := bearerToken(r)
	if err != nil {
		return "", err
	}
	userID, err := v.verify(token)
	if err != nil {
		return "", err
	}
	noteUser(w, userID)
	if limit != nil {
		if ok, wait := limit.allow(userID, time.Now()); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
			return "", errTooMany
		}
	}
	if r.PathValue("user_id") != userID {
		return "", errForbidden
	}
	return userID, nil
}

// rateLimiter is a token bucket per user: rate requests a second, up to burst at once.
// It lives in this process: with several replicas, each allows a user this rate.
type rateLimiter struct {
	rate, burst float64
	mu          sync.Mutex
	buckets     map[string]bucket
	swept       time.Time
}

// bucket is one user's tokens as of a time.
type bucket struct {
	tokens float64
	at     time.Time
}

// newRateLimiter returns nil, no limit, when rate is 0.
func newRateLimiter(rate, burst int) *rateLimiter {
	if rate <= 0 {
		return nil
	}
	return &rateLimiter{rate: float64(rate), burst: float64(max(burst, 1)), buckets: map[string]bucket{}}
}

// allow takes a token from the user's bucket; when there is none it says how long until there is.
func (l *rateLimiter) allow(userID string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		l.sweep(now)
	}
	b, seen := l.buckets[userID]
	if !seen {
		b = bucket{tokens: l.burst, at: now}
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	ok := b.tokens >= 1
	if ok {
		b.tokens--
	}
	l.buckets[userID] = b
	if !ok {
		return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	}
	return true, 0
}

// sweep forgets the users whose buckets have refilled: a full bucket is what
// an unknown user gets anyway, so idle users cost no memory.
func (l *rateLimiter) sweep(now time.Time) {
	refill := time.Duration(l.burst / l.rate * float64(time.Second))
	for userID, b := range l.buckets {
		if now.Sub(b.at) >= refill {
			delete(l.buckets, userID)
		}
	}
	l.swept = now
}

// mintToken signs an HS256 token for userID, as a Next.js route with the shared secret would.
func mintToken(secret []byte, userID string, ttl time.Duration) (string, error) {
	now := time.Now()
	return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject:   userID,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}).SignedString(secret)
}

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
}

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
	if k.key == nil || !slices.Contains(k.algs, alg) {
		return nil, errInvalidToken
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
	if err != nil {
		j.log.Error("jwks fetch failed", "url", j.url, "err", err.Error())
		if old != nil {
			keys = old.keys
		}
	}
	set := &keySet{keys: keys, fetched: time.Now()}
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
