package main

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// RFC 8291 §5 and Appendix A: the keys, salt, plaintext and body of the worked example.
const (
	rfcPlaintext = "When I grow up, I want to be a watermelon"
	rfcUAPublic  = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
	rfcUAPrivate = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
	rfcAuth      = "BTBZMqHH6r4Tts7J_aSIgg"
	rfcASPublic  = "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
	rfcASPrivate = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
	rfcSalt      = "DGv6ra1nlYgDCS1FRnbzlw"
	rfcBody      = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
)

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return b
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// newVAPIDKeys is a fresh pair as `tasks vapid-keys` prints it, which is how `web-push
// generate-vapid-keys` prints one: base64url of the 32-byte scalar and of the 65-byte point.
func newVAPIDKeys(t testing.TB) (private, public string) {
	t.Helper()
	var out strings.Builder
	if err := run(context.Background(), []string{"tasks", "vapid-keys"}, func(string) string { return "" }, &out); err != nil {
		t.Fatal(err)
	}
	if n, err := fmt.Sscanf(out.String(), "VAPID_PRIVATE_KEY=%s\nVAPID_PUBLIC_KEY=%s\n", &private, &public); n != 2 {
		t.Fatalf("tasks vapid-keys printed %q: %v", out.String(), err)
	}
	return private, public
}

// TestVAPIDAudienceIsTheOrigin: the token's aud is the endpoint's origin as a browser spells
// it (RFC 8292 §2), whatever case or default port the endpoint was written with.
func TestVAPIDAudienceIsTheOrigin(t *testing.T) {
	key := rfcVAPIDKey(t)
	endpoint, _ := url.Parse("https://PUSH.Example.com:443/send/abc")
	req, err := newPushRequest(context.Background(), key, endpoint, []byte("x"), time.Minute, "t")
	if err != nil {
		t.Fatal(err)
	}
	token, _, _ := strings.Cut(strings.TrimPrefix(req.Header.Get("Authorization"), "vapid t="), ",")
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return &key.private.PublicKey, nil }); err != nil {
		t.Fatal(err)
	}
	if claims["aud"] != "https://push.example.com" {
		t.Errorf("aud = %v, want https://push.example.com", claims["aud"])
	}
}

// rfcVAPIDKey is RFC 8291 Appendix A's application server key as a VAPID key.
func rfcVAPIDKey(t *testing.T) *vapidKey {
	t.Helper()
	key, err := parseVAPIDKey(rfcASPrivate, "mailto:ops@example.com")
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// decryptPush is the user agent's side of RFC 8291 §3.4 and RFC 8188 §2: it reads
// the header, derives the same keys from its private key and opens the one record.
func decryptPush(ua *ecdh.PrivateKey, auth, body []byte) ([]byte, error) {
	if len(body) < 21 {
		return nil, errors.New("body shorter than the aes128gcm header")
	}
	salt, rs, idlen := body[:16], binary.BigEndian.Uint32(body[16:20]), int(body[20])
	if len(body) < 21+idlen || idlen != 65 {
		return nil, fmt.Errorf("keyid of %d bytes, want 65", idlen)
	}
	record := body[21+idlen:]
	if rs < 18 || len(record) > int(rs) {
		return nil, fmt.Errorf("record of %d bytes with rs %d: want exactly one", len(record), rs)
	}
	as, err := ecdh.P256().NewPublicKey(body[21 : 21+idlen])
	if err != nil {
		return nil, fmt.Errorf("keyid: %w", err)
	}
	shared, err := ua.ECDH(as)
	if err != nil {
		return nil, err
	}
	prkKey, _ := hkdf.Extract(sha256.New, shared, auth)
	ikm, _ := hkdf.Expand(sha256.New, prkKey, "WebPush: info\x00"+string(ua.PublicKey().Bytes())+string(as.Bytes()), 32)
	prk, _ := hkdf.Extract(sha256.New, ikm, salt)
	cek, _ := hkdf.Expand(sha256.New, prk, "Content-Encoding: aes128gcm\x00", 16)
	nonce, _ := hkdf.Expand(sha256.New, prk, "Content-Encoding: nonce\x00", 12)
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	padded, err := gcm.Open(nil, nonce, record, nil)
	if err != nil {
		return nil, err
	}
	end := len(padded) - 1
	for end >= 0 && padded[end] == 0 {
		end--
	}
	if end < 0 || padded[end] != 2 {
		return nil, errors.New("the last record's delimiter is not 0x02")
	}
	return padded[:end], nil
}

func TestWebPushRFC8291AppendixA(t *testing.T) {
	as, err := ecdh.P256().NewPrivateKey(mustB64(t, rfcASPrivate))
	if err != nil {
		t.Fatal(err)
	}
	if got := b64(as.PublicKey().Bytes()); got != rfcASPublic {
		t.Fatalf("application server public key = %s, want %s", got, rfcASPublic)
	}
	ua, auth, err := parseSubscriptionKeys(rfcUAPublic, rfcAuth)
	if err != nil {
		t.Fatal(err)
	}
	body, err := encryptPushWith(ua, auth, []byte(rfcPlaintext), mustB64(t, rfcSalt), as)
	if err != nil {
		t.Fatal(err)
	}
	if got := b64(body); got != rfcBody {
		t.Errorf("body =\n%s\nwant\n%s", got, rfcBody)
	}

	// The test's decrypt, which the local push service below relies on, opens the RFC's own body.
	uaPrivate, err := ecdh.P256().NewPrivateKey(mustB64(t, rfcUAPrivate))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := decryptPush(uaPrivate, auth, mustB64(t, rfcBody))
	if err != nil || string(plain) != rfcPlaintext {
		t.Errorf("decrypt the RFC's body = %q, %v; want %q", plain, err, rfcPlaintext)
	}
}

func TestWebPushEncryptFresh(t *testing.T) {
	ua, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, 16)
	rand.Read(auth)
	p256dh := b64(ua.PublicKey().Bytes())
	a, err := encryptPush(p256dh, b64(auth), []byte("same"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := encryptPush(p256dh, b64(auth), []byte("same"))
	if err != nil {
		t.Fatal(err)
	}
	if string(a[:16]) == string(b[:16]) || string(a[21:86]) == string(b[21:86]) {
		t.Error("two messages share a salt or an ephemeral key")
	}
	if plain, err := decryptPush(ua, auth, a); err != nil || string(plain) != "same" {
		t.Errorf("decrypt = %q, %v; want %q", plain, err, "same")
	}
	largest := make([]byte, maxPushPlaintext)
	if body, err := encryptPush(p256dh, b64(auth), largest); err != nil || len(body) != 4096 {
		t.Errorf("encrypt %d bytes = %d bytes, %v; want 4096", len(largest), len(body), err)
	}
	if _, err := encryptPush(p256dh, b64(auth), make([]byte, maxPushPlaintext+1)); err == nil {
		t.Errorf("encrypt %d bytes: no error", maxPushPlaintext+1)
	}
	if _, err := encryptPush("AAAA", b64(auth), []byte("x")); err == nil {
		t.Error("encrypt to a malformed p256dh: no error")
	}
}

// pushReceived is what the local push service saw of one request.
type pushReceived struct {
	method string
	header http.Header
	body   []byte
}

func TestWebPushLocalService(t *testing.T) {
	received := make(chan pushReceived, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		received <- pushReceived{r.Method, r.Header, body}
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()

	private, public := newVAPIDKeys(t)
	const subject = "mailto:ops@example.com"
	key, err := parseVAPIDKey(private, subject)
	if err != nil {
		t.Fatal(err)
	}
	ua, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, 16)
	rand.Read(auth)
	p256dh := b64(ua.PublicKey().Bytes())

	const message = `{"title":"Buy milk","due":"2026-03-01"}`
	endpoint, err := checkPushEndpoint(srv.URL+"/push/abc", true)
	if err != nil {
		t.Fatal(err)
	}
	body, err := encryptPush(p256dh, b64(auth), []byte(message))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	req, err := newPushRequest(context.Background(), key, endpoint, body, 90*time.Minute, "task 42")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := newPushClient(true).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST %s = %d, want 201", endpoint, resp.StatusCode)
	}
	got := <-received

	if got.method != http.MethodPost {
		t.Errorf("method = %s, want POST", got.method)
	}
	for name, want := range map[string]string{"Content-Encoding": "aes128gcm", "Content-Type": "application/octet-stream", "TTL": "5400", "Urgency": "high"} {
		if v := got.header.Get(name); v != want {
			t.Errorf("%s = %q, want %q", name, v, want)
		}
	}
	if topic := got.header.Get("Topic"); !regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`).MatchString(topic) {
		t.Errorf("Topic = %q, want 1 to 32 base64url characters", topic)
	}

	// VAPID (RFC 8292 §3): the JWT verifies with the k= key, which is the generated public key.
	t1, k, ok := strings.Cut(strings.TrimPrefix(got.header.Get("Authorization"), "vapid t="), ", k=")
	if !ok || k != public {
		t.Fatalf("Authorization = %q, want vapid t=<jwt>, k=%s", got.header.Get("Authorization"), public)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), mustB64(t, k))
	if err != nil {
		t.Fatal(err)
	}
	var claims jwt.RegisteredClaims
	_, err = jwt.ParseWithClaims(t1, &claims, func(*jwt.Token) (any, error) { return pub, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithExpirationRequired(), jwt.WithAudience(srv.URL), jwt.WithTimeFunc(func() time.Time { return now }))
	if err != nil {
		t.Fatalf("VAPID token: %v", err)
	}
	if claims.Subject != subject {
		t.Errorf("sub = %q, want %q", claims.Subject, subject)
	}
	if life := claims.ExpiresAt.Sub(now); life <= 0 || life > 24*time.Hour {
		t.Errorf("exp = now + %s, want within 24 h", life)
	}

	plain, err := decryptPush(ua, auth, got.body)
	if err != nil || string(plain) != message {
		t.Errorf("decrypted body = %q, %v; want %q", plain, err, message)
	}
}

func TestPushClientRefusesPrivate(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	port := strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port)

	if _, err := checkPushEndpoint("http://push.example.com/x", false); err == nil {
		t.Error("checkPushEndpoint(http://..., allowPrivate=false): no error")
	}
	// The test server's certificate (valid for 127.0.0.1) is trusted: only the address check refuses.
	client := newPushClient(false)
	client.Transport.(*http.Transport).TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig
	for endpoint, want := range map[string]bool{"https://push.example.com:8443/x": true, "https://PUSH.example.com/x": true,
		"https://localhost/x": false, "https://127.0.0.1/x": false, "https://[::1]/x": false, "https://10.1.2.3/x": false,
		"https://169.254.169.254/latest": false, "https://[fd00::1]/x": false, "https://0.0.0.0/x": false,
		"https://push.example.com:99999/x": false, "https://push.example.com:0/x": false, "https://user@push.example.com/x": false} {
		if _, err := checkPushEndpoint(endpoint, false); (err == nil) != want {
			t.Errorf("checkPushEndpoint(%s, false) = %v, want accepted %v", endpoint, err, want)
		}
	}
	// A name the route cannot see through, as DNS rebinding would give, is refused when it connects.
	for _, endpoint := range []string{"https://localhost:" + port + "/push", "https://127.0.0.1:" + port + "/push", "https://[::ffff:127.0.0.1]:" + port + "/push"} {
		u, err := checkPushEndpoint(endpoint, true)
		if err != nil {
			t.Fatalf("checkPushEndpoint(%s, true) = %v", endpoint, err)
		}
		req, err := newPushRequest(context.Background(), rfcVAPIDKey(t), u, []byte("x"), time.Minute, "t")
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		if !errors.Is(err, errPushAddress) {
			t.Errorf("POST %s = %v, want %v", endpoint, err, errPushAddress)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the loopback server got %d requests, want 0", n)
	}
}

func TestPushClientNoRedirects(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/push" {
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
			return
		}
		t.Errorf("followed the redirect to %s", r.URL.Path)
	}))
	defer srv.Close()
	u, err := checkPushEndpoint(srv.URL+"/push", true)
	if err != nil {
		t.Fatal(err)
	}
	req, err := newPushRequest(context.Background(), rfcVAPIDKey(t), u, []byte("x"), time.Minute, "t")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := newPushClient(true).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect {
		t.Errorf("POST %s = %d, want 307 answered, not followed", u, resp.StatusCode)
	}
}

func TestPushAddressClassifier(t *testing.T) {
	for _, c := range []struct {
		addr   string
		public bool
	}{
		{"8.8.8.8", true},
		{"2606:4700::1111", true},
		{"::ffff:8.8.8.8", true},
		{"64:ff9b::808:808", true},    // NAT64 of 8.8.8.8
		{"127.0.0.1", false},          // loopback
		{"127.8.9.10", false},         // all of 127/8
		{"10.1.2.3", false},           // RFC 1918
		{"172.16.0.1", false},         // RFC 1918
		{"172.31.255.255", false},     // RFC 1918
		{"192.168.1.1", false},        // RFC 1918
		{"169.254.169.254", false},    // link-local: the cloud metadata service
		{"100.64.0.1", false},         // CGNAT (RFC 6598): not global, and some clouds' metadata lives here
		{"100.100.100.200", false},    // CGNAT
		{"0.0.0.0", false},            // unspecified
		{"0.1.2.3", false},            // "this network"
		{"224.0.0.1", false},          // multicast
		{"255.255.255.255", false},    // broadcast
		{"240.0.0.1", false},          // reserved
		{"198.18.0.1", false},         // benchmarking
		{"::1", false},                // loopback
		{"::", false},                 // unspecified
		{"fc00::1", false},            // ULA
		{"fd12:3456::1", false},       // ULA
		{"fe80::1", false},            // link-local
		{"ff02::1", false},            // multicast
		{"::ffff:127.0.0.1", false},   // IPv4-mapped loopback
		{"::ffff:10.0.0.1", false},    // IPv4-mapped private
		{"64:ff9b::a9fe:a9fe", false}, // NAT64 of 169.254.169.254
	} {
		if got := publicAddr(netip.MustParseAddr(c.addr)); got != c.public {
			t.Errorf("publicAddr(%s) = %v, want %v", c.addr, got, c.public)
		}
	}
}

func TestPushEndpointCheck(t *testing.T) {
	for _, c := range []struct {
		endpoint     string
		allowPrivate bool
		ok           bool
	}{
		{"https://fcm.googleapis.com/fcm/send/abc", false, true},
		{"http://fcm.googleapis.com/fcm/send/abc", false, false},
		{"http://127.0.0.1:8080/push", true, true},
		{"ftp://push.example.com/x", true, false},
		{"/push/relative", false, false},
		{"https://", false, false},
		{"https://user:secret@push.example.com/x", false, false},
		{"::not a url", false, false},
	} {
		_, err := checkPushEndpoint(c.endpoint, c.allowPrivate)
		if (err == nil) != c.ok {
			t.Errorf("checkPushEndpoint(%q, %v) = %v, want ok %v", c.endpoint, c.allowPrivate, err, c.ok)
		}
		if err != nil {
			wantLocIn(t, err, "endpoint")
		}
	}
}

// wantLocIn fails unless err is a validationError whose one entry's loc ends in field.
func wantLocIn(t *testing.T, err error, field string) {
	t.Helper()
	var invalid validationError
	if !errors.As(err, &invalid) || len(invalid) != 1 || invalid[0].Loc[len(invalid[0].Loc)-1] != field {
		t.Errorf("error %v, want a validationError naming %s", err, field)
	}
}

func TestPushSubscriptionKeys(t *testing.T) {
	notOnCurve := mustB64(t, rfcUAPublic)
	notOnCurve[64] ^= 1
	compressed := append([]byte{2}, mustB64(t, rfcUAPublic)[1:33]...)
	for _, c := range []struct {
		name, p256dh, auth, bad string
	}{
		{"valid", rfcUAPublic, rfcAuth, ""},
		{"padded", rfcUAPublic + "=", rfcAuth + "==", ""},
		{"p256dh not base64url", "BCVxsr7N+eNgVRqv/HtD0zTZ", rfcAuth, "p256dh"},
		{"p256dh empty", "", rfcAuth, "p256dh"},
		{"p256dh 64 bytes", b64(mustB64(t, rfcUAPublic)[1:]), rfcAuth, "p256dh"},
		{"p256dh compressed", b64(compressed), rfcAuth, "p256dh"},
		{"p256dh not on the curve", b64(notOnCurve), rfcAuth, "p256dh"},
		{"auth not base64url", rfcUAPublic, "BTBZMqHH6r4T/s7J+aSIgg", "auth"},
		{"auth 15 bytes", rfcUAPublic, b64(make([]byte, 15)), "auth"},
		{"auth 17 bytes", rfcUAPublic, b64(make([]byte, 17)), "auth"},
		{"auth empty", rfcUAPublic, "", "auth"},
	} {
		_, _, err := parseSubscriptionKeys(c.p256dh, c.auth)
		switch {
		case c.bad == "" && err != nil:
			t.Errorf("%s: parseSubscriptionKeys = %v, want nil", c.name, err)
		case c.bad != "":
			wantLocIn(t, err, c.bad)
		}
	}
}

func TestVAPIDKeys(t *testing.T) {
	private, public := newVAPIDKeys(t)
	key, err := parseVAPIDKey(private, "https://tasks.example.com/contact")
	if err != nil {
		t.Fatal(err)
	}
	if key.public != public {
		t.Errorf("public key from the printed private key = %s, want the printed %s", key.public, public)
	}

	// A known pair: RFC 8291 Appendix A's application server key, in the same encoding.
	for _, private := range []string{rfcASPrivate, rfcASPrivate + "=", rfcASPrivate + "\n"} {
		key, err := parseVAPIDKey(private, "mailto:ops@example.com")
		if err != nil || key.public != rfcASPublic {
			t.Errorf("parseVAPIDKey(%q) = %v; want public key %s", private, err, rfcASPublic)
		}
	}

	order := b64(elliptic.P256().Params().N.FillBytes(make([]byte, 32))) // the group order: out of range
	for _, c := range []struct{ private, subject string }{
		{"", "mailto:ops@example.com"},
		{"not+base64/url", "mailto:ops@example.com"},
		{b64(make([]byte, 31)), "mailto:ops@example.com"},
		{b64(make([]byte, 32)), "mailto:ops@example.com"}, // zero
		{order, "mailto:ops@example.com"},
		{public, "mailto:ops@example.com"}, // the public key by mistake
		{private, "ops@example.com"},
		{private, "http://example.com"},
		{private, "mailto:"},
		{private, "https://"},
		{private, "https:/contact"},
	} {
		if _, err := parseVAPIDKey(c.private, c.subject); err == nil {
			t.Errorf("parseVAPIDKey(%q, %q): no error", c.private, c.subject)
		}
	}
}

func TestPushTopic(t *testing.T) {
	key, u := rfcVAPIDKey(t), &url.URL{Scheme: "https", Host: "push.example.com", Path: "/x"}
	pushTopic := func(topic string) string {
		req, err := newPushRequest(context.Background(), key, u, []byte("x"), time.Minute, topic)
		if err != nil {
			t.Fatal(err)
		}
		return req.Header.Get("Topic")
	}
	valid := regexp.MustCompile(`^[A-Za-z0-9_-]{32}$`)
	for _, s := range []string{"", "task 42", strings.Repeat("x", 1000), "user/ü"} {
		if got := pushTopic(s); !valid.MatchString(got) {
			t.Errorf("Topic for %q = %q, want 32 base64url characters", s, got)
		}
	}
	if pushTopic("task 1") == pushTopic("task 2") {
		t.Error("two tasks share a topic")
	}
	if a, b := pushTopic("task 1"), pushTopic("task"+" 1"); a != b {
		t.Error("one task has two topics")
	}
}
