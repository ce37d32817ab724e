// auth.go turns a bearer token into a user id: the verifier (HS256 secret or JWKS keys), its cache, and minting.
package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
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
	clockLeeway = 30 * time.Second
	// A token may be as large as a request's headers: Better Auth puts the user's profile
	// in it, a data: URL picture included, and refusing one locks its user out (a new
	// token is as large). At most maxVerified tokens of up to maxCachedToken are cached.
	maxTokenBytes  = maxHeaderBytes + 4<<10 // net/http reads 4 KiB past MaxHeaderBytes before it answers 431
	maxCachedToken = 2 << 10
	maxVerified    = 10000
)

// tokenRefused says why a token was refused, for the request's log line; the
// client sees only the detail of err: a 401, or a 503 while the JWKS cannot be fetched.
type tokenRefused struct {
	reason string       // no token, more than one Authorization header, not the bearer scheme, too large, key set not fetched, malformed, bad signature, unknown kid, expired, not yet valid, wrong issuer or audience, not an access token
	err    *statusError // errNoToken, errInvalidToken, errExpiredToken or errNoKeySet
}

func (e *tokenRefused) Error() string { return "token refused: " + e.reason }
func (e *tokenRefused) Unwrap() error { return e.err }

// refused is an invalid token, for reason.
func refused(reason string) error { return &tokenRefused{reason, errInvalidToken} }

// refusal names what the parser found wrong with a token.
func refusal(err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return &tokenRefused{"expired", errExpiredToken}
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return refused("not yet valid")
	case errors.Is(err, errUnknownKey):
		return refused("unknown kid")
	case errors.Is(err, errNoKeySet):
		return &tokenRefused{"key set not fetched", errNoKeySet}
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return refused("bad signature")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer), errors.Is(err, jwt.ErrTokenInvalidAudience):
		return refused("wrong issuer or audience")
	}
	return refused("malformed") // not a JWT, a claim missing or of the wrong type
}

// claims are a token's registered claims (RFC 7519 §4.1), read strictly:
// only the exact names count (encoding/json would also take "EXP" or "Sub"
// for them), none may appear twice, a NumericDate (exp, nbf, iat) is a JSON
// number (§2; golang-jwt alone also takes a string holding one) within years
// 1970 to 9999, and sub holds no lone surrogate. Any other claim is ignored.
type claims struct{ jwt.RegisteredClaims }

func (c *claims) UnmarshalJSON(b []byte) error {
	members, err := decodeObject(b)
	if err != nil {
		return err
	}
	dates := map[string]**jwt.NumericDate{"exp": &c.ExpiresAt, "nbf": &c.NotBefore, "iat": &c.IssuedAt}
	others := map[string]any{"sub": &c.Subject, "iss": &c.Issuer, "aud": &c.Audience, "jti": &c.ID}
	for name, v := range members {
		switch {
		case dates[name] != nil:
			var f float64
			if v[0] != '-' && (v[0] < '0' || v[0] > '9') || json.Unmarshal(v, &f) != nil || f < 0 || f > 253402300799 {
				return fmt.Errorf("claim %s is not a NumericDate", name)
			}
			*dates[name] = jwt.NewNumericDate(time.UnixMicro(int64(f * 1e6)))
		case others[name] != nil:
			if err := json.Unmarshal(v, others[name]); err != nil {
				return fmt.Errorf("claim %s: %w", name, err)
			}
			if name == "sub" && loneSurrogate(v) {
				return errors.New("claim sub holds a lone surrogate")
			}
		}
	}
	return nil
}

// authConfig says which tokens to accept.
type authConfig struct {
	Secret   []byte // HS256 shared secret; nil: no HS256 tokens
	Previous []byte // an earlier secret still accepted while clients move to Secret; nil: none
	JWKSURL  string // Better Auth's JWKS; "": no asymmetric tokens
	Issuer   string // required iss of every token; "" to skip
	Audience string // required aud of every token; "" to skip
	// BETTER_AUTH_URL's origin: the iss and aud of JWKS tokens where Issuer, Audience are unset
	BetterAuthOrigin string
	AccessToken      bool // only OAuth access tokens, typ at+jwt (RFC 9068 §4); the API's own tokens are not
	// a token with an aud must name one of these (/mcp's rule; "" names none); nil: any aud
	Audiences []string
}

// verifier checks bearer tokens and returns their subject.
type verifier struct {
	cfg    authConfig
	parser *jwt.Parser
	jwks   *jwks // nil without a JWKS URL

	// Verified tokens are remembered by their whole text (signature included)
	// until they expire: a client sends the same one with every request, and an
	// EdDSA or RSA check costs several HS256 ones (BenchmarkVerify). So a key
	// removed from the JWKS stops working when its tokens expire (15 minutes for Better Auth's).
	mu       sync.RWMutex
	verified map[string]*claims
}

// newVerifier builds the one parser: the algorithms it admits follow from the keys configured.
func newVerifier(cfg authConfig, client *http.Client, log *slog.Logger) *verifier {
	var algs []string
	if cfg.Secret != nil {
		algs = append(algs, "HS256")
	}
	v := &verifier{cfg: cfg, verified: map[string]*claims{}}
	if cfg.JWKSURL != "" {
		algs = append(algs, "EdDSA", "ES256", "ES512", "RS256", "PS256") // what Better Auth's jwt plugin can sign with
		v.jwks = &jwks{url: cfg.JWKSURL, client: client, log: log}
		v.jwks.set.Store(&keySet{}) // no keys, never tried
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(algs), jwt.WithExpirationRequired(), jwt.WithLeeway(clockLeeway),
		jwt.WithIssuer(cfg.Issuer)} // "" checks no iss (jwt.Validator), but WithAudience("") would require an aud of ""
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
			return nil, errUnknownKey
		}
		if v.cfg.Previous != nil {
			return jwt.VerificationKeySet{Keys: []jwt.VerificationKey{v.cfg.Secret, v.cfg.Previous}}, nil
		}
		return v.cfg.Secret, nil
	}
	kid, _ := t.Header["kid"].(string)
	if v.jwks == nil || kid == "" {
		return nil, errUnknownKey
	}
	return v.jwks.key(kid, t.Method.Alg())
}

// verify checks a bearer token and returns the user id it carries, and until
// when the token is valid: its exp and clockLeeway.
func (v *verifier) verify(token string) (sub string, until time.Time, err error) {
	now := time.Now()
	v.mu.RLock()
	known, ok := v.verified[token]
	v.mu.RUnlock()
	if ok && now.Before(known.ExpiresAt.Add(clockLeeway)) &&
		(known.NotBefore == nil || now.After(known.NotBefore.Add(-clockLeeway))) {
		return known.Subject, known.ExpiresAt.Add(clockLeeway), nil
	}
	if len(token) > maxTokenBytes {
		return "", until, refused("too large")
	}
	// The header is read as golang-jwt reads it, where a repeated member (two
	// alg) counts last; a proxy may have checked the first. Refused, as in claims.
	header, _, _ := strings.Cut(token, ".")
	b, err := base64.RawURLEncoding.DecodeString(header)
	if _, errObject := decodeObject(b); err != nil || errObject != nil {
		return "", until, refused("malformed")
	}
	var c claims
	t, err := v.parser.ParseWithClaims(token, &c, v.key)
	if err != nil {
		return "", until, refusal(err)
	}
	if typ, _ := t.Header["typ"].(string); v.cfg.AccessToken && !slices.Contains([]string{"at+jwt", "application/at+jwt"}, strings.ToLower(typ)) {
		return "", until, refused("not an access token")
	}
	named := func(aud string) bool { return aud != "" && slices.Contains(v.cfg.Audiences, aud) }
	if v.cfg.Audiences != nil && len(c.Audience) > 0 && !slices.ContainsFunc(c.Audience, named) {
		return "", until, refused("wrong issuer or audience")
	}
	if _, hmac := t.Method.(*jwt.SigningMethodHMAC); !hmac && v.cfg.BetterAuthOrigin != "" { // Better Auth's defaults
		if v.cfg.Issuer == "" && c.Issuer != v.cfg.BetterAuthOrigin ||
			v.cfg.Audience == "" && !slices.Contains(c.Audience, v.cfg.BetterAuthOrigin) {
			return "", until, refused("wrong issuer or audience")
		}
	}
	if !validUserID(c.Subject) {
		return "", until, refused("malformed")
	}
	if len(token) <= maxCachedToken {
		v.remember(token, &c, now)
	}
	return c.Subject, c.ExpiresAt.Add(clockLeeway), nil // exp is required
}

// remember keeps a verified token; when the cache is full it first drops the
// expired ones, then, if it must, any tenth of the rest.
func (v *verifier) remember(token string, c *claims, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.verified) >= maxVerified {
		maps.DeleteFunc(v.verified, func(_ string, e *claims) bool { return now.After(e.ExpiresAt.Add(clockLeeway)) })
		for k := range v.verified {
			if len(v.verified) < maxVerified*9/10 {
				break
			}
			delete(v.verified, k) // map order is random: an arbitrary one
		}
	}
	v.verified[token] = c
}

// validUserID accepts what can be a user id: 1-255 bytes of printable UTF-8.
func validUserID(s string) bool {
	return s != "" && len(s) <= 255 && utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl)
}

// bearerToken reads the token from the Authorization header, and nowhere else.
func bearerToken(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", &tokenRefused{"no token", errNoToken}
	}
	if len(r.Header.Values("Authorization")) > 1 { // which one a proxy checked is anyone's guess
		return "", refused("more than one Authorization header")
	}
	scheme, token, _ := strings.Cut(h, " ")
	if token = strings.TrimSpace(token); !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", refused("not the bearer scheme")
	}
	return token, nil
}

// userHandler serves a request on behalf of an authenticated user.
type userHandler func(w http.ResponseWriter, r *http.Request, userID string)

// streamHandler is a userHandler that lasts, and so must know until when the token is valid.
type streamHandler func(w http.ResponseWriter, r *http.Request, userID string, until time.Time)

// authenticate answers 401 without a valid token (503 + Retry-After while the
// JWKS that would check it cannot be fetched), 429 when the token's user is over
// their rate, and 403 when the path's user_id is not the token's subject;
// otherwise it calls h with the user id. A nil limit admits every request.
func authenticate(v *verifier, limit *rateLimiter, h userHandler) http.Handler {
	return authenticateStream(v, limit, func(w http.ResponseWriter, r *http.Request, userID string, _ time.Time) { h(w, r, userID) })
}

// authenticateStream is authenticate for a streamHandler.
func authenticateStream(v *verifier, limit *rateLimiter, h streamHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		userID, until, err := admit(v.verify, limit, w, r)
		if err == nil && r.PathValue("user_id") != userID {
			err = errForbidden
		}
		if err != nil {
			writeError(w, r, err)
			return
		}
		h(w, r, userID, until)
	})
}

// admit checks the request's token with verify, and its user's rate, and returns the user id and until when the token is valid.
func admit(verify func(string) (string, time.Time, error), limit *rateLimiter, w http.ResponseWriter, r *http.Request) (userID string, until time.Time, err error) {
	token, err := bearerToken(r)
	if err != nil {
		return "", until, err
	}
	if userID, until, err = verify(token); err != nil {
		if errors.Is(err, errNoKeySet) {
			w.Header().Set("Retry-After", "1") // jwks tries a fetch at most once a second
		}
		return "", until, err
	}
	logLine(w).userID = userID
	if limit != nil {
		if ok, wait := limit.allow(userID, time.Now()); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
			return "", until, errTooMany
		}
	}
	return userID, until, nil
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
