// auth_test.go tests bearer-token verification: accepted and refused tokens, the previous secret, and the verified-token cache.
package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestAuth(t *testing.T) {
	ks := newKeyServer(t)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	ks.add(jwkOf(t, "ed", edKey.Public()))
	ks.add(jwkOf(t, "rsa", &rsaKey.PublicKey))
	ks.add(jwkOf(t, "p256", &p256.PublicKey))
	ks.add(jwkOf(t, "p521", &p521.PublicKey))
	const authURL = "http://auth.example.test"
	e := newEnv(t, authConfig{Secret: []byte(testSecret), JWKSURL: ks.srv.URL, BetterAuthOrigin: authURL})

	user := newUser(t)
	path := "/api/" + user + "/tasks"
	now := time.Now()
	good := func() jwt.MapClaims {
		return jwt.MapClaims{"sub": user, "exp": now.Add(15 * time.Minute).Unix(), "iss": authURL, "aud": authURL}
	}
	with := func(k string, v any) jwt.MapClaims {
		c := good()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(&rsaKey.PublicKey))})
	none := must(jwt.NewWithClaims(jwt.SigningMethodNone, good()).SignedString(jwt.UnsafeAllowNoneSignatureType))
	_, attackerKey, _ := ed25519.GenerateKey(rand.Reader)
	jku := jwt.NewWithClaims(jwt.SigningMethodEdDSA, good())
	jku.Header["kid"] = "attacker"
	jku.Header["jku"] = "http://attacker.test/jwks"
	jku.Header["jwk"] = jwkOf(t, "attacker", attackerKey.Public())
	jkuToken := must(jku.SignedString(attackerKey))

	cases := []struct {
		name   string
		header string // Authorization
		status int
	}{
		{"HS256", "Bearer " + hsToken(t, jwt.MapClaims{"sub": user, "exp": now.Add(time.Hour).Unix(), "email": "a@b.c", "name": "A"}), 200},
		{"scheme in lower case", "bearer " + tokenFor(t, user), 200},
		{"scheme in upper case", "BEARER " + tokenFor(t, user), 200},
		{"EdDSA from the JWKS", "Bearer " + signed(t, jwt.SigningMethodEdDSA, edKey, "ed", good()), 200},
		{"RS256 from the JWKS", "Bearer " + signed(t, jwt.SigningMethodRS256, rsaKey, "rsa", good()), 200},
		{"PS256 from the JWKS", "Bearer " + signed(t, jwt.SigningMethodPS256, rsaKey, "rsa", good()), 200},
		{"ES256 from the JWKS", "Bearer " + signed(t, jwt.SigningMethodES256, p256, "p256", good()), 200},
		{"ES512 from the JWKS", "Bearer " + signed(t, jwt.SigningMethodES512, p521, "p521", good()), 200},
		{"expired within the 30 s leeway", "Bearer " + hsToken(t, jwt.MapClaims{"sub": user, "exp": now.Add(-10 * time.Second).Unix()}), 200},
		{"no header", "", 401},
		{"Basic scheme", "Basic " + tokenFor(t, user), 401},
		{"no token after Bearer", "Bearer ", 401},
		{"garbage", "Bearer not-a-jwt", 401},
		{"alg none", "Bearer " + none, 401},
		{"HS256 signed with the RSA public key", "Bearer " + signed(t, jwt.SigningMethodHS256, rsaPEM, "rsa", good()), 401},
		{"wrong secret", "Bearer " + signed(t, jwt.SigningMethodHS256, []byte(testSecret+"x"), "", good()), 401},
		{"HS512", "Bearer " + signed(t, jwt.SigningMethodHS512, []byte(testSecret), "", good()), 401},
		{"expired", "Bearer " + hsToken(t, jwt.MapClaims{"sub": user, "exp": now.Add(-time.Minute).Unix()}), 401},
		{"no exp", "Bearer " + hsToken(t, jwt.MapClaims{"sub": user}), 401},
		{"nbf in the future", "Bearer " + hsToken(t, jwt.MapClaims{"sub": user, "exp": now.Add(time.Hour).Unix(), "nbf": now.Add(time.Minute).Unix()}), 401},
		{"no sub", "Bearer " + hsToken(t, jwt.MapClaims{"exp": now.Add(time.Hour).Unix()}), 401},
		{"empty sub", "Bearer " + hsToken(t, jwt.MapClaims{"sub": "", "exp": now.Add(time.Hour).Unix()}), 401},
		{"numeric sub", "Bearer " + hsToken(t, jwt.MapClaims{"sub": 42, "exp": now.Add(time.Hour).Unix()}), 401},
		{"JWKS token, wrong audience", "Bearer " + signed(t, jwt.SigningMethodEdDSA, edKey, "ed", with("aud", "http://other.test")), 401},
		{"JWKS token, wrong issuer", "Bearer " + signed(t, jwt.SigningMethodEdDSA, edKey, "ed", with("iss", "http://other.test")), 401},
		{"JWKS token, no audience", "Bearer " + signed(t, jwt.SigningMethodEdDSA, edKey, "ed", with("aud", nil)), 401},
		{"JWKS token, no kid", "Bearer " + signed(t, jwt.SigningMethodEdDSA, edKey, "", good()), 401},
		{"RS256 naming an Ed25519 kid", "Bearer " + signed(t, jwt.SigningMethodRS256, rsaKey, "ed", good()), 401},
		{"ES256 naming the P-521 kid", "Bearer " + signed(t, jwt.SigningMethodES256, p256, "p521", good()), 401},
		{"own key in jku and jwk headers", "Bearer " + jkuToken, 401},
		{"tampered payload", "Bearer " + tamper(signed(t, jwt.SigningMethodEdDSA, edKey, "ed", good()), "someone-else"), 401},
		{"another user's token", "Bearer " + tokenFor(t, newUser(t)), 403},
	}
	for _, c := range cases {
		r := e.do("GET", path, "", nil, "Authorization", c.header)
		if r.status != c.status {
			t.Errorf("%s: GET = %s, want %d", c.name, r, c.status)
			continue
		}
		if c.status == 401 && r.header.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
			t.Errorf("%s: WWW-Authenticate = %q", c.name, r.header.Get("WWW-Authenticate"))
		}
		if c.status != 200 {
			if d := decode[struct{ Detail string }](t, r); d.Detail == "" {
				t.Errorf("%s: no detail in %s", c.name, r)
			}
		}
	}

	// Nothing but the Authorization header carries a token.
	tok := tokenFor(t, user)
	e.want(e.do("GET", path+"?token="+tok+"&access_token="+tok, "", nil), 401, "token in the query string")
	e.want(e.do("GET", path, "", nil, "Cookie", "token="+tok+"; better-auth.session_token="+tok), 401, "token in a cookie")

	// Explicit issuer and audience apply to HS256 tokens too.
	strict := newEnv(t, authConfig{Secret: []byte(testSecret), Issuer: "api-test", Audience: "tasks"})
	strict.want(strict.do("GET", path, tok, nil), 401, "HS256 without the configured iss/aud")
	okTok := hsToken(t, jwt.MapClaims{"sub": user, "exp": now.Add(time.Hour).Unix(), "iss": "api-test", "aud": []string{"tasks"}})
	strict.want(strict.do("GET", path, okTok, nil), 200, "HS256 with the configured iss/aud")

	// Without a secret, HS256 tokens are refused.
	jwksOnly := newEnv(t, authConfig{JWKSURL: ks.srv.URL, BetterAuthOrigin: authURL})
	jwksOnly.want(jwksOnly.do("GET", path, tok, nil), 401, "HS256 with no secret configured")
	jwksOnly.want(jwksOnly.do("GET", path, signed(t, jwt.SigningMethodEdDSA, edKey, "ed", good()), nil), 200, "EdDSA, JWKS only")
}

// tamper replaces the sub of a signed token without signing it again.
func tamper(token, sub string) string {
	parts := strings.Split(token, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims map[string]any
	json.Unmarshal(payload, &claims)
	claims["sub"] = sub
	b, _ := json.Marshal(claims)
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

func TestPreviousSecret(t *testing.T) {
	const previous = "previous-secret-0123456789-abcdefghijkl"
	e := newEnv(t, authConfig{Secret: []byte(testSecret), Previous: []byte(previous)})
	user := newUser(t)
	path := "/api/" + user + "/tasks"
	claims := jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix()}
	e.want(e.do("GET", path, signed(t, jwt.SigningMethodHS256, []byte(previous), "", claims), nil), 200, "token signed with the previous secret")
	e.want(e.do("GET", path, tokenFor(t, user), nil), 200, "token signed with the current secret")
	e.want(e.do("GET", path, signed(t, jwt.SigningMethodHS256, []byte(previous+"x"), "", claims), nil), 401, "token signed with neither")

	_, err := loadConfig(func(k string) string {
		return map[string]string{"BETTER_AUTH_SECRET_PREVIOUS": previous, "BETTER_AUTH_URL": "http://localhost:3000"}[k]
	})
	if err == nil || !strings.Contains(err.Error(), "BETTER_AUTH_SECRET_PREVIOUS") {
		t.Fatalf("a previous secret without a current one: %v", err)
	}
}

// TestVerifiedTokenCacheExpires: a remembered token stops working when it expires.
func TestVerifiedTokenCacheExpires(t *testing.T) {
	v := newVerifier(hsAuth(), http.DefaultClient, slog.New(slog.DiscardHandler))
	expired := hsToken(t, jwt.MapClaims{"sub": "u1", "exp": time.Now().Add(-time.Minute).Unix()})
	v.verified[expired] = &claims{jwt.RegisteredClaims{Subject: "u1", ExpiresAt: jwt.NewNumericDate(time.Now().Add(-time.Minute))}}
	if _, _, err := v.verify(expired); !errors.Is(err, errExpiredToken) {
		t.Fatalf("an expired token the cache remembers: verify = %v, want %v", err, errExpiredToken)
	}
	fresh := tokenFor(t, "u2")
	if sub, _, err := v.verify(fresh); err != nil || sub != "u2" || v.verified[fresh] == nil || v.verified[fresh].Subject != "u2" {
		t.Fatalf("a fresh token: verify = %q, %v; remembered %+v", sub, err, v.verified[fresh])
	}
}

// FuzzVerify feeds the verifier tokens: whatever verifies has a usable user id,
// and whatever fails is a 401.
func FuzzVerify(f *testing.F) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"keys": []any{jwkOf(f, "ed", edKey.Public())}})
	}))
	defer ks.Close()
	v := newVerifier(authConfig{Secret: []byte(testSecret), JWKSURL: ks.URL}, ks.Client(), slog.New(slog.NewJSONHandler(io.Discard, nil)))
	exp := time.Now().Add(time.Hour).Unix()
	f.Add(must(jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "u1", "exp": exp}).SignedString([]byte(testSecret))))
	ed := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"sub": "u1", "exp": exp})
	ed.Header["kid"] = "ed"
	f.Add(must(ed.SignedString(edKey)))
	f.Fuzz(func(t *testing.T, token string) {
		sub, _, err := v.verify(token)
		if err != nil {
			var se *statusError
			if !errors.As(err, &se) || se.status != 401 {
				t.Fatalf("verify(%q) = %v, want a 401", token, err)
			}
			return
		}
		if !validUserID(sub) {
			t.Fatalf("verify(%q) passed with sub %q", token, sub)
		}
	})
}

// TestTokenRefused: each way a token fails is a 401 whose log line says why,
// and a time claim that is not a JSON number (RFC 7519 §2) is one of them.
func TestTokenRefused(t *testing.T) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ks := newKeyServer(t)
	ks.add(jwkOf(t, "ed", edKey.Public()))
	e := newEnv(t, authConfig{Secret: []byte(testSecret), JWKSURL: ks.srv.URL, BetterAuthOrigin: "https://auth.test"})
	user := newUser(t)
	now := time.Now()
	hour := now.Add(time.Hour).Unix()
	ed := func(kid string, claims jwt.MapClaims) string {
		return signed(t, jwt.SigningMethodEdDSA, edKey, kid, claims)
	}
	for _, c := range []struct {
		name, authorization, reason string
	}{
		{"no token", "", "no token"},
		{"Basic", "Basic dXNlcjpwYXNz", "not the bearer scheme"},
		{"garbage", "Bearer not.a.jwt", "malformed"},
		{"nbf as a string", "Bearer " + hsToken(t, jwt.MapClaims{"sub": user, "exp": hour, "nbf": strconv.FormatInt(now.Add(-time.Hour).Unix(), 10)}), "malformed"},
		{"exp as a string", "Bearer " + hsToken(t, jwt.MapClaims{"sub": user, "exp": strconv.FormatInt(hour, 10)}), "malformed"},
		{"iat as a string", "Bearer " + hsToken(t, jwt.MapClaims{"sub": user, "exp": hour, "iat": strconv.FormatInt(now.Unix(), 10)}), "malformed"},
		{"exp null", "Bearer " + hsToken(t, jwt.MapClaims{"sub": user, "exp": nil}), "malformed"},
		{"exp true", "Bearer " + hsToken(t, jwt.MapClaims{"sub": user, "exp": true}), "malformed"},
		{"no exp", "Bearer " + hsToken(t, jwt.MapClaims{"sub": user}), "malformed"},
		{"sub not a user id", "Bearer " + hsToken(t, jwt.MapClaims{"sub": "", "exp": hour}), "malformed"},
		{"expired", "Bearer " + hsToken(t, jwt.MapClaims{"sub": user, "exp": now.Add(-time.Hour).Unix()}), "expired"},
		{"not yet valid", "Bearer " + hsToken(t, jwt.MapClaims{"sub": user, "exp": hour, "nbf": now.Add(10 * time.Minute).Unix()}), "not yet valid"},
		{"another secret", "Bearer " + must(jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": user, "exp": hour}).SignedString([]byte(testSecret+"x"))), "bad signature"},
		{"unknown kid", "Bearer " + ed("other", jwt.MapClaims{"sub": user, "exp": hour, "iss": "https://auth.test", "aud": "https://auth.test"}), "unknown kid"},
		{"no kid", "Bearer " + ed("", jwt.MapClaims{"sub": user, "exp": hour, "iss": "https://auth.test", "aud": "https://auth.test"}), "unknown kid"},
		{"wrong issuer", "Bearer " + ed("ed", jwt.MapClaims{"sub": user, "exp": hour, "iss": "https://evil.test", "aud": "https://auth.test"}), "wrong issuer or audience"},
		{"wrong audience", "Bearer " + ed("ed", jwt.MapClaims{"sub": user, "exp": hour, "iss": "https://auth.test", "aud": "https://evil.test"}), "wrong issuer or audience"},
	} {
		before := len(e.logs.String())
		r := e.do("GET", "/api/"+user+"/tasks", "", nil, "Authorization", c.authorization)
		if r.status != 401 {
			t.Errorf("%s: %s, want 401", c.name, r)
			continue
		}
		var line struct {
			Status       int
			TokenRefused string `json:"token_refused"`
		}
		json.Unmarshal([]byte(e.logs.String()[before:]), &line)
		if line.Status != 401 || line.TokenRefused != c.reason {
			t.Errorf("%s: the log line says %+v, want token_refused %q", c.name, line, c.reason)
		}
	}
	// The numeric forms of the same claims pass.
	good := hsToken(t, jwt.MapClaims{"sub": user, "exp": hour, "nbf": now.Add(-time.Minute).Unix(), "iat": float64(now.Unix()) + 0.5})
	e.want(e.do("GET", "/api/"+user+"/tasks", good, nil), 200, "numeric exp, nbf and iat")
	// A token longer than any header can carry is refused before it is parsed.
	v := newVerifier(hsAuth(), http.DefaultClient, slog.New(slog.DiscardHandler))
	if _, _, err := v.verify(strings.Repeat("a", maxTokenBytes+1)); err == nil || err.Error() != "token refused: too large" {
		t.Fatalf("verify of a token over the header limit = %v, want too large", err)
	}
}

// TestClaimsStrict: claims are read by their exact names, once each, with
// NumericDates as numbers of a real date: encoding/json alone would take "EXP"
// for exp and "Sub" for sub, and 1e300 overflows into the past.
func TestClaimsStrict(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	hour := time.Now().Add(time.Hour).Unix()
	header := `{"alg":"HS256","typ":"JWT"}`
	raw := func(payload string) string { // an HS256 token over header and payload exactly as written
		enc := base64.RawURLEncoding.EncodeToString
		signing := enc([]byte(header)) + "." + enc([]byte(payload))
		sig := must(jwt.SigningMethodHS256.Sign(signing, []byte(testSecret)))
		return signing + "." + enc(sig)
	}
	for _, payload := range []string{
		fmt.Sprintf(`{"sub":%q,"EXP":%d}`, user, hour),
		fmt.Sprintf(`{"Sub":%q,"exp":%d}`, user, hour),
		fmt.Sprintf(`{"sub":"other","Sub":%q,"exp":%d}`, user, hour),
		fmt.Sprintf(`{"ſub":%q,"exp":%d}`, user, hour),
		fmt.Sprintf(`{"sub":%q,"exp":"1","exp":%d}`, user, hour),
		fmt.Sprintf(`{"sub":%q,"exp":%d,"exp":%d}`, user, hour, hour),
		fmt.Sprintf(`{"sub":%q,"exp":%d,"nbf":1e300}`, user, hour),
		fmt.Sprintf(`{"sub":%q,"exp":%d,"nbf":-1e300}`, user, hour),
		fmt.Sprintf(`{"sub":%q,"exp":1e300}`, user),
		fmt.Sprintf(`{"sub":"a\ud800","exp":%d}`, hour),
		`null`, `[]`,
	} {
		r := e.do("GET", "/api/"+user+"/tasks", raw(payload), nil)
		if r.status != 401 && !(r.status == 403 && strings.Contains(payload, `"sub":"other"`)) {
			t.Errorf("claims %s = %s, want 401 (403 for the token whose sub is another user)", payload, r)
		}
	}
	for _, payload := range []string{
		fmt.Sprintf(`{"sub":%q,"exp":%d}`, user, hour),
		fmt.Sprintf(`{"sub":%q,"exp":%d.5,"nbf":1.5e9,"iat":1700000000,"name":"Ann","EMAIL":"a@b.c"}`, user, hour),
	} {
		e.want(e.do("GET", "/api/"+user+"/tasks", raw(payload), nil), 200, "claims "+payload)
	}
	// A header naming alg twice reads as its last alg to golang-jwt, and its first to others.
	for _, header = range []string{`{"alg":"none","alg":"HS256"}`, `{"alg":"HS256","kid":"a","kid":"b"}`, `{"alg":"HS256","typ":"JWT"} x`} {
		if r := e.do("GET", "/api/"+user+"/tasks", raw(fmt.Sprintf(`{"sub":%q,"exp":%d}`, user, hour)), nil); r.status != 401 {
			t.Errorf("header %s = %s, want 401", header, r)
		}
	}
	// A token as large as net/http lets through is accepted, not refused as too large.
	big := hsToken(t, jwt.MapClaims{"sub": user, "exp": hour, "image": strings.Repeat("x", 26000)})
	if len(big) <= maxHeaderBytes {
		t.Fatalf("the token has %d bytes, want more than %d", len(big), maxHeaderBytes)
	}
	e.want(e.do("GET", "/api/"+user+"/tasks", big, nil), 200, "a token past MaxHeaderBytes that net/http let through")
}
