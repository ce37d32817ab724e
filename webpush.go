// webpush.go holds Web Push: VAPID (RFC 8292), encryption (RFC 8291), the request, its client.
package main

import (
	"bytes"
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
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// maxPushPlaintext is the most a message holds, in bytes: the 4096-byte body every push
// service takes, less the 86-byte header, the delimiter and the 16-byte tag (RFC 8291 §4).
const maxPushPlaintext = 3993

// errPushAddress is what a push client's dial fails with when the address is not public.
var errPushAddress = errors.New("push endpoint address is not public")

// nonPublicPrefixes are ranges netip's predicates pass that IANA marks not globally
// reachable (RFC 6890): "this network", CGNAT (RFC 6598, where some clouds keep their
// metadata service), IETF protocol assignments, benchmarking, reserved.
var nonPublicPrefixes = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("240.0.0.0/4")}

// vapidKey is the application server's VAPID identity (RFC 8292): its P-256 key, the public
// half as base64url of the 65-byte uncompressed point (the browser's applicationServerKey
// and the header's k, §3.2), and the "sub" contact, a mailto: or https: URI (§2.1).
type vapidKey struct {
	private         *ecdsa.PrivateKey
	public, subject string
}

// parseVAPIDKey reads VAPID_PRIVATE_KEY, base64url of the 32-byte P-256 scalar as
// `web-push generate-vapid-keys` prints it, and the subject; the error says which is wrong.
func parseVAPIDKey(private, subject string) (*vapidKey, error) {
	if u, err := url.Parse(subject); err != nil || !(u.Scheme == "mailto" && u.Opaque != "" || u.Scheme == "https" && u.Host != "") {
		return nil, errors.New("VAPID subject must be a mailto: or https: URI, such as mailto:ops@example.com")
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(strings.TrimSpace(private), "="))
	key, err2 := ecdsa.ParseRawPrivateKey(elliptic.P256(), b)
	if err != nil || err2 != nil {
		return nil, errors.New("VAPID private key must be the base64url of a 32-byte P-256 scalar")
	}
	public, _ := key.PublicKey.Bytes() // fails only for curves other than NIST's
	return &vapidKey{key, base64.RawURLEncoding.EncodeToString(public), subject}, nil
}

// parseSubscriptionKeys decodes a subscription's keys (RFC 8291 §2), the user agent's public key
// and the 16-byte auth secret, or is a 422 validationError naming keys.p256dh (not base64url of
// a 65-byte uncompressed P-256 point) or keys.auth (not base64url of 16 bytes).
func parseSubscriptionKeys(p256dh, auth string) (*ecdh.PublicKey, []byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(p256dh, "="))
	ua, err2 := ecdh.P256().NewPublicKey(b)
	if err != nil || err2 != nil {
		return nil, nil, validationError{{[]any{"body", "keys", "p256dh"}, "p256dh should be the base64url of a 65-byte uncompressed P-256 point", "value_error"}}
	}
	secret, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(auth, "="))
	if err != nil || len(secret) != 16 {
		return nil, nil, validationError{{[]any{"body", "keys", "auth"}, "auth should be the base64url of 16 bytes", "value_error"}}
	}
	return ua, secret, nil
}

// encryptPush encrypts plaintext (maxPushPlaintext bytes at most) to a subscription's keys
// as encryptPushWith does, with a fresh 16-byte salt and ephemeral key.
func encryptPush(p256dh, auth string, plaintext []byte) ([]byte, error) {
	ua, secret, err := parseSubscriptionKeys(p256dh, auth)
	as, err2 := ecdh.P256().GenerateKey(rand.Reader)
	if err := errors.Join(err, err2); err != nil {
		return nil, fmt.Errorf("encrypt push: %w", err)
	}
	salt := make([]byte, 16)
	rand.Read(salt) // never fails (Go 1.24)
	return encryptPushWith(ua, secret, plaintext, salt, as)
}

// encryptPushWith is the aes128gcm body (RFC 8188 §2): salt, rs 4096 (uint32 BE), idlen 65,
// as's public point, then one record sealing msg || 0x02 with the key and nonce that
// RFC 8291 §3.3-3.4 derive from ECDH(as, ua), the auth secret and the salt.
func encryptPushWith(ua *ecdh.PublicKey, auth, msg, salt []byte, as *ecdh.PrivateKey) ([]byte, error) {
	if len(msg) > maxPushPlaintext {
		return nil, fmt.Errorf("encrypt push: %d bytes, more than %d", len(msg), maxPushPlaintext)
	}
	asPublic := as.PublicKey().Bytes()
	shared, err := as.ECDH(ua)
	ikm, err1 := hkdf.Key(sha256.New, shared, auth, "WebPush: info\x00"+string(ua.Bytes())+string(asPublic), 32)
	cek, err2 := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: aes128gcm\x00", 16)
	nonce, err3 := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: nonce\x00", 12)
	if err := errors.Join(err, err1, err2, err3); err != nil {
		return nil, fmt.Errorf("encrypt push: %w", err)
	}
	block, _ := aes.NewCipher(cek) // a 16-byte key cannot fail
	gcm, err := cipher.NewGCM(block)
	if err != nil { // in FIPS 140-only mode
		return nil, fmt.Errorf("encrypt push: %w", err)
	}
	header := slices.Concat(salt, []byte{0, 0, 0x10, 0, byte(len(asPublic))}, asPublic)
	return gcm.Seal(header, nonce, append(slices.Clip(msg), 2), nil), nil
}

// checkPushEndpoint parses a subscription's endpoint, or is a 422 validationError naming it unless it
// is an absolute https URL (RFC 8030 §8) of at most 2048 bytes, without userinfo, with a valid port,
// whose host is not localhost nor an address publicAddr refuses; allowPrivate lets http and those through.
func checkPushEndpoint(endpoint string, allowPrivate bool) (*url.URL, error) {
	u, err := url.Parse(endpoint)
	if err == nil && len(endpoint) <= 2048 && u.Host != "" && u.User == nil && (u.Scheme == "https" || allowPrivate && u.Scheme == "http") {
		port, err := strconv.ParseUint(u.Port(), 10, 16)
		ip, literal := netip.ParseAddr(u.Hostname())
		private := strings.EqualFold(u.Hostname(), "localhost") || literal == nil && !publicAddr(ip)
		if (u.Port() == "" || err == nil && port > 0) && (allowPrivate || !private) {
			return u, nil
		}
	}
	return nil, validationError{{[]any{"body", "endpoint"}, "endpoint should be an https URL of a public host, of at most 2048 bytes", "value_error"}}
}

// newPushRequest POSTs body, from encryptPush, to an endpoint checkPushEndpoint accepted (RFC
// 8030 §5): kept for ttl (whole seconds), urgency high, replacing an undelivered message of the
// same topic (hashed to the 32 characters §5.4 allows), authorized "vapid t=<jwt>, k=<key.public>"
// by an ES256 JWT of aud the endpoint's origin, sub, and exp now + 12 h (24 h at most, RFC 8292).
func newPushRequest(ctx context.Context, key *vapidKey, endpoint *url.URL, body []byte, ttl time.Duration, topic string) (*http.Request, error) {
	origin, _ := parseOrigin(endpoint.String(), true) // as a browser spells it; checkPushEndpoint took the endpoint
	token, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"aud": origin, "exp": time.Now().Add(12 * time.Hour).Unix(), "sub": key.subject,
	}).SignedString(key.private)
	if err != nil {
		return nil, fmt.Errorf("sign VAPID token: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint.String(), bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("push request: %w", err)
	}
	sum := sha256.Sum256([]byte(topic))
	req.Header = http.Header{ // in canonical form, as Header.Set would put them: Ttl is TTL
		"Content-Encoding": {"aes128gcm"}, "Content-Type": {"application/octet-stream"}, "Urgency": {"high"},
		"Ttl": {strconv.Itoa(int(ttl / time.Second))}, "Topic": {base64.RawURLEncoding.EncodeToString(sum[:24])},
		"Authorization": {"vapid t=" + token + ", k=" + key.public}}
	return req, nil
}

// newPushClient is the client for push services: 10 s a request, no redirects, no proxy and,
// unless allowPrivate, errPushAddress for an address publicAddr refuses, checked as each
// connection is made so that no DNS answer gets past it.
func newPushClient(allowPrivate bool) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	if !allowPrivate {
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			if ap, err := netip.ParseAddrPort(address); err != nil || !publicAddr(ap.Addr()) {
				return errPushAddress // net.OpError adds "dial tcp <address>"
			}
			return nil
		}
	}
	return &http.Client{
		Transport:     &http.Transport{DialContext: dialer.DialContext, ForceAttemptHTTP2: true},
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// publicAddr reports whether ip, IPv4-mapped or NAT64 (64:ff9b::/96, RFC 6052 §2.1) forms taken as
// the IPv4 inside, is global unicast and not private (RFC 1918, ULA fc00::/7) nor in nonPublicPrefixes.
func publicAddr(ip netip.Addr) bool {
	if ip = ip.Unmap(); netip.MustParsePrefix("64:ff9b::/96").Contains(ip) {
		ip = netip.AddrFrom4([4]byte(ip.AsSlice()[12:]))
	}
	inRange := func(p netip.Prefix) bool { return p.Contains(ip) }
	return ip.IsGlobalUnicast() && !ip.IsPrivate() && !slices.ContainsFunc(nonPublicPrefixes, inRange)
}
