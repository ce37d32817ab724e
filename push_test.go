// push_test.go holds the tests of Web Push: the subscription routes through the handler, and reminders delivered through run to a local push service that checks and decrypts each push.
package main

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const vapidSubject = "mailto:ops@example.com"

// subscriber is a browser's side of a push subscription: its P-256 key and auth secret.
type subscriber struct {
	key  *ecdh.PrivateKey
	auth []byte
}

// newSubscriber makes a browser's keys for a subscription.
func newSubscriber(t *testing.T) subscriber {
	t.Helper()
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, 16)
	rand.Read(auth)
	return subscriber{key, auth}
}

// toJSON is what PushSubscription.toJSON() gives for endpoint; expiration is null or milliseconds.
func (s subscriber) toJSON(endpoint string, expiration any) map[string]any {
	return map[string]any{"endpoint": endpoint, "expirationTime": expiration,
		"keys": map[string]any{"p256dh": b64(s.key.PublicKey().Bytes()), "auth": b64(s.auth)}}
}

// testVAPID is a new VAPID key as `tasks vapid-keys` prints it: parsed, and the private half for run's environment.
func testVAPID(t *testing.T) (*vapidKey, string) {
	t.Helper()
	private, _ := newVAPIDKeys(t)
	key, err := parseVAPIDKey(private, vapidSubject)
	if err != nil {
		t.Fatal(err)
	}
	return key, private
}

// subscriptionEnv is a handler with Web Push on, a new user, their token and push-subscriptions path.
type subscriptionEnv struct {
	*env
	user, token, path string
}

func newSubscriptionEnv(t *testing.T) subscriptionEnv {
	key, _ := testVAPID(t)
	user := newUser(t)
	return subscriptionEnv{newEnv(t, hsAuth(), func(c *config) { c.VAPID = key }), user, tokenFor(t, user), "/api/" + user + "/push-subscriptions"}
}

// stored reads the user's subscription to endpoint: its keys, and how many there are (0 or 1).
func (e subscriptionEnv) stored(endpoint string) (p256dh, auth string, n int) {
	e.t.Helper()
	err := testDB.pool.QueryRow(e.t.Context(), `SELECT coalesce(max(p256dh), ''), coalesce(max(auth), ''), count(*)
		FROM push_subscriptions WHERE user_id = $1 AND endpoint = $2`, e.user, endpoint).Scan(&p256dh, &auth, &n)
	if err != nil {
		e.t.Fatal(err)
	}
	return p256dh, auth, n
}

// newEndpoint is an https endpoint no other test uses.
func newEndpoint() string { return "https://push.example.com/send/" + rand.Text() }

// TestPushSubscribe: what PushSubscription.toJSON() gives is kept (201); the same endpoint again replaces its keys (200).
func TestPushSubscribe(t *testing.T) {
	e := newSubscriptionEnv(t)
	sub, endpoint := newSubscriber(t), newEndpoint()
	r := e.do("POST", e.path, e.token, sub.toJSON(endpoint, nil))
	e.want(r, 201, "POST push-subscriptions")
	got, want := decode[subscription](t, r), sub.toJSON(endpoint, nil)["keys"].(map[string]any)
	if got.Endpoint != endpoint || got.Keys.P256dh != want["p256dh"] || got.Keys.Auth != want["auth"] {
		t.Errorf("POST push-subscriptions answered %s, want the endpoint and keys sent", r.body)
	}
	if p256dh, auth, n := e.stored(endpoint); n != 1 || p256dh != want["p256dh"] || auth != want["auth"] {
		t.Errorf("stored %d subscriptions (%s, %s), want one with the keys sent", n, p256dh, auth)
	}

	// The same endpoint again, with an expirationTime, as a browser whose subscription changed keys sends it.
	renewed := newSubscriber(t)
	e.want(e.do("POST", e.path, e.token, renewed.toJSON(endpoint, 1798761600000)), 200, "POST push-subscriptions, the endpoint again")
	want = renewed.toJSON(endpoint, nil)["keys"].(map[string]any)
	if p256dh, auth, n := e.stored(endpoint); n != 1 || p256dh != want["p256dh"] || auth != want["auth"] {
		t.Errorf("after a second subscribe, stored %d subscriptions (%s, %s), want one with the new keys", n, p256dh, auth)
	}
}

// TestPushSubscriptionInvalid: a body a browser would not send is a 422 naming what is wrong, and keeps nothing.
func TestPushSubscriptionInvalid(t *testing.T) {
	e := newSubscriptionEnv(t)
	sub := newSubscriber(t)
	with := func(change func(m, keys map[string]any)) map[string]any {
		m := sub.toJSON(newEndpoint(), nil)
		change(m, m["keys"].(map[string]any))
		return m
	}
	compressed := append([]byte{2}, sub.key.PublicKey().Bytes()[1:33]...)
	for _, c := range []struct {
		name string
		body any
		loc  []any
	}{
		{"p256dh not base64url", with(func(_, k map[string]any) { k["p256dh"] = "BCVx+sr7N/eNg" }), []any{"body", "keys", "p256dh"}},
		{"p256dh compressed", with(func(_, k map[string]any) { k["p256dh"] = b64(compressed) }), []any{"body", "keys", "p256dh"}},
		{"p256dh missing", with(func(_, k map[string]any) { delete(k, "p256dh") }), []any{"body", "keys", "p256dh"}},
		{"auth of 15 bytes", with(func(_, k map[string]any) { k["auth"] = b64(make([]byte, 15)) }), []any{"body", "keys", "auth"}},
		{"auth not base64url", with(func(_, k map[string]any) { k["auth"] = "BTBZMqHH6r4T/s7J+aSIgg" }), []any{"body", "keys", "auth"}},
		{"http endpoint", with(func(m, _ map[string]any) { m["endpoint"] = "http://push.example.com/send/x" }), []any{"body", "endpoint"}},
		{"relative endpoint", with(func(m, _ map[string]any) { m["endpoint"] = "/send/x" }), []any{"body", "endpoint"}},
		{"endpoint of 2049 bytes", with(func(m, _ map[string]any) { m["endpoint"] = "https://push.example.com/" + strings.Repeat("x", 2024) }), []any{"body", "endpoint"}},
		{"extra member", with(func(m, _ map[string]any) { m["userVisibleOnly"] = true }), []any{"body", "userVisibleOnly"}},
		{"endpoint not a string", with(func(m, _ map[string]any) { m["endpoint"] = 42 }), []any{"body", "endpoint"}},
		{"keys not an object", with(func(m, _ map[string]any) { m["keys"] = "BCVx" }), []any{"body", "keys"}},
		{"expirationTime not a number", with(func(m, _ map[string]any) { m["expirationTime"] = "soon" }), []any{"body", "expirationTime"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantLoc(t, e.do("POST", e.path, e.token, c.body), c.loc...)
		})
	}
	wantLoc(t, e.do("DELETE", e.path, e.token, map[string]any{"endpoint": "ftp://push.example.com/x"}), "body", "endpoint")
	if n := count(t, testDB, `SELECT count(*) FROM push_subscriptions WHERE user_id = $1`, e.user); n != 0 {
		t.Errorf("%d subscriptions stored from invalid bodies, want 0", n)
	}
}

// TestPushSubscriptionIdempotent: a keyed retry gets the first answer again and writes nothing; the key with another body is a 422.
func TestPushSubscriptionIdempotent(t *testing.T) {
	e := newSubscriptionEnv(t)
	sub, endpoint, key := newSubscriber(t), newEndpoint(), "sub-"+rand.Text()
	first := e.do("POST", e.path, e.token, sub.toJSON(endpoint, nil), "Idempotency-Key", key)
	e.want(first, 201, "keyed POST push-subscriptions")
	retry := e.do("POST", e.path, e.token, sub.toJSON(endpoint, nil), "Idempotency-Key", key)
	if retry.status != 201 || retry.header.Get("Idempotent-Replayed") != "true" || string(retry.body) != string(first.body) {
		t.Errorf("keyed retry = %s (Idempotent-Replayed %q), want the first answer %s replayed", retry, retry.header.Get("Idempotent-Replayed"), first)
	}
	if _, _, n := e.stored(endpoint); n != 1 {
		t.Errorf("after a keyed retry, %d subscriptions to the endpoint, want 1", n)
	}
	wantLoc(t, e.do("POST", e.path, e.token, sub.toJSON(newEndpoint(), nil), "Idempotency-Key", key), "header", "Idempotency-Key")

	key = "unsub-" + rand.Text()
	e.want(e.do("DELETE", e.path, e.token, map[string]any{"endpoint": endpoint}, "Idempotency-Key", key), 204, "keyed DELETE push-subscriptions")
	retry = e.do("DELETE", e.path, e.token, map[string]any{"endpoint": endpoint}, "Idempotency-Key", key)
	if retry.status != 204 || retry.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("keyed DELETE retry = %s (Idempotent-Replayed %q), want 204 replayed", retry, retry.header.Get("Idempotent-Replayed"))
	}
	if _, _, n := e.stored(endpoint); n != 0 {
		t.Errorf("after DELETE, %d subscriptions to the endpoint, want 0", n)
	}
}

// TestPushUnsubscribe: DELETE takes {"endpoint"} alone; a second, of an endpoint no longer held, is a 204 too.
func TestPushUnsubscribe(t *testing.T) {
	e := newSubscriptionEnv(t)
	endpoint := newEndpoint()
	e.want(e.do("POST", e.path, e.token, newSubscriber(t).toJSON(endpoint, nil)), 201, "POST push-subscriptions")
	e.want(e.do("DELETE", e.path, e.token, map[string]any{"endpoint": endpoint}), 204, "DELETE push-subscriptions")
	if _, _, n := e.stored(endpoint); n != 0 {
		t.Errorf("after DELETE, %d subscriptions to the endpoint, want 0", n)
	}
	e.want(e.do("DELETE", e.path, e.token, map[string]any{"endpoint": endpoint}), 204, "DELETE push-subscriptions again")
}

// TestPushSubscriptionLimit: a user holds at most 20 subscriptions, however many are sent at once.
func TestPushSubscriptionLimit(t *testing.T) {
	e := newSubscriptionEnv(t)
	sub := newSubscriber(t)
	endpoints := make([]string, maxSubscriptions+10)
	statuses := make([]int, len(endpoints))
	var wg sync.WaitGroup
	for i := range endpoints {
		endpoints[i] = newEndpoint()
		wg.Go(func() {
			r, err := send(e.srv.Client(), e.srv.URL, "POST", e.path, e.token, sub.toJSON(endpoints[i], nil))
			if err != nil {
				t.Error(err)
			}
			statuses[i] = r.status
		})
	}
	wg.Wait()
	var held []string
	for i, status := range statuses {
		switch status {
		case 201:
			held = append(held, endpoints[i])
		case 409:
		default:
			t.Fatalf("POST subscription %d of %d at once = %d, want 201 or 409", i+1, len(endpoints), status)
		}
	}
	if n := count(t, testDB, `SELECT count(*) FROM push_subscriptions WHERE user_id = $1`, e.user); len(held) != maxSubscriptions || n != maxSubscriptions {
		t.Fatalf("%d subscribes at once: %d answered 201 and %d are stored, want %d", len(endpoints), len(held), n, maxSubscriptions)
	}
	r := e.do("POST", e.path, e.token, sub.toJSON(newEndpoint(), nil))
	e.want(r, 409, "POST subscription 21")
	if detail := decode[struct{ Detail string }](t, r).Detail; detail == "" {
		t.Errorf("409 = %s, want a detail", r)
	}
	// One held already is renewed at the limit; one removed makes room.
	e.want(e.do("POST", e.path, e.token, newSubscriber(t).toJSON(held[3], nil)), 200, "POST a held subscription at the limit")
	e.want(e.do("DELETE", e.path, e.token, map[string]any{"endpoint": held[0]}), 204, "DELETE one of 20")
	e.want(e.do("POST", e.path, e.token, sub.toJSON(newEndpoint(), nil)), 201, "POST one more after a DELETE")
}

// TestPushSubscriptionOtherUser: as every route under /api/{user_id}, 403 for a
// token whose sub is not the path's user, and 401 without a token.
func TestPushSubscriptionOtherUser(t *testing.T) {
	e := newSubscriptionEnv(t)
	endpoint, otherUser := newEndpoint(), newUser(t)
	e.want(e.do("POST", e.path, e.token, newSubscriber(t).toJSON(endpoint, nil)), 201, "POST push-subscriptions")
	other := tokenFor(t, otherUser)
	e.want(e.do("GET", "/api/"+e.user+"/tasks", other, nil), 403, "GET another user's tasks")
	e.want(e.do("POST", e.path, other, newSubscriber(t).toJSON(newEndpoint(), nil)), 403, "POST another user's push-subscriptions")
	e.want(e.do("DELETE", e.path, other, map[string]any{"endpoint": endpoint}), 403, "DELETE another user's push-subscriptions")
	e.want(e.do("POST", e.path, "", newSubscriber(t).toJSON(newEndpoint(), nil)), 401, "POST push-subscriptions without a token")
	e.want(e.do("DELETE", e.path, "", map[string]any{"endpoint": endpoint}), 401, "DELETE push-subscriptions without a token")
	if _, _, n := e.stored(endpoint); n != 1 {
		t.Errorf("after another user's DELETE, %d subscriptions to the endpoint, want 1", n)
	}
	if n := count(t, testDB, `SELECT count(*) FROM push_subscriptions WHERE user_id = $1`, otherUser); n != 0 {
		t.Errorf("the other user holds %d subscriptions, want 0", n)
	}
}

// TestVAPIDPublicKeyRoute: the applicationServerKey is served without a token, as a 65-byte P-256 point.
func TestVAPIDPublicKeyRoute(t *testing.T) {
	key, _ := testVAPID(t)
	e := newEnv(t, hsAuth(), func(c *config) { c.VAPID = key })
	r := e.do("GET", "/api/vapid-public-key", "", nil)
	e.want(r, 200, "GET /api/vapid-public-key without a token")
	got := decode[map[string]string](t, r)
	point, err := base64.RawURLEncoding.DecodeString(got["public_key"])
	if len(got) != 1 || err != nil || got["public_key"] != key.public {
		t.Fatalf("GET /api/vapid-public-key = %s, want {\"public_key\": %q}", r.body, key.public)
	}
	if _, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point); err != nil || len(point) != 65 {
		t.Errorf("public_key is %d bytes (%v), want a 65-byte uncompressed P-256 point", len(point), err)
	}
}

// TestPushOffWithoutVAPID: without VAPID_PRIVATE_KEY the push routes answer 501 and say what to set.
func TestPushOffWithoutVAPID(t *testing.T) {
	e := newEnv(t, hsAuth())
	user := newUser(t)
	path, token := "/api/"+user+"/push-subscriptions", tokenFor(t, user)
	for _, r := range []result{
		e.do("POST", path, token, newSubscriber(t).toJSON("https://push.example.com/send/x", nil)),
		e.do("DELETE", path, token, map[string]any{"endpoint": "https://push.example.com/send/x"}),
		e.do("GET", "/api/vapid-public-key", "", nil),
	} {
		if detail := decode[struct{ Detail string }](t, r).Detail; r.status != 501 || !strings.Contains(detail, "VAPID_PRIVATE_KEY") {
			t.Errorf("without VAPID = %s, want 501 naming VAPID_PRIVATE_KEY", r)
		}
	}
}

// pushService is a local push service (RFC 8030): it checks each push's headers and
// VAPID token (RFC 8292), decrypts it with its subscriber's key (RFC 8291), and
// answers as answer says for the request to a path (n from 1).
type pushService struct {
	srv    *httptest.Server
	vapid  string // the k= it expects: the service's VAPID public key
	answer func(path string, n int) (status int, retryAfter string)

	mu       sync.Mutex
	subs     map[string]subscriber // by endpoint path
	requests []pushRequest
	problems []string // what a push got wrong
}

// pushRequest is one request the push service took: a push it checked and decrypted, and its answer.
type pushRequest struct {
	path, topic string
	payload     []byte
	status      int
	arrived     time.Time
}

// newPushService starts a push service expecting pushes signed by vapid; a nil answer always answers 201.
func newPushService(t *testing.T, vapid string, answer func(path string, n int) (int, string)) *pushService {
	p := &pushService{vapid: vapid, answer: answer, subs: map[string]subscriber{}}
	if p.answer == nil {
		p.answer = func(string, int) (int, string) { return http.StatusCreated, "" }
	}
	p.srv = httptest.NewServer(p)
	t.Cleanup(p.srv.Close)
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, problem := range p.problems {
			t.Error(problem)
		}
	})
	return p
}

// endpoint is a new endpoint on the service under prefix, whose pushes sub decrypts.
func (p *pushService) endpoint(prefix string, sub subscriber) string {
	path := "/" + prefix + "/" + rand.Text()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.subs[path] = sub
	return p.srv.URL + path
}

var topicShape = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// ServeHTTP records a push that check passes, answered as answer says, and a problem for any other request.
func (p *pushService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	now := time.Now()
	p.mu.Lock()
	sub, known := p.subs[r.URL.Path]
	p.mu.Unlock()
	payload, err := []byte(nil), fmt.Errorf("no subscription at %s", r.URL.Path)
	if known {
		payload, err = p.check(r, body, sub, now)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.problems = append(p.problems, fmt.Sprintf("push to %s: %v", r.URL.Path, err))
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	n := 1
	for _, q := range p.requests {
		if q.path == r.URL.Path {
			n++
		}
	}
	status, retryAfter := p.answer(r.URL.Path, n)
	p.requests = append(p.requests, pushRequest{r.URL.Path, r.Header.Get("Topic"), payload, status, now})
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.WriteHeader(status)
}

// check is the push service's and the browser's work: the request's headers, its VAPID
// token (ES256 by the k= key, aud this origin, exp at most 24 h ahead), and the payload decrypted.
func (p *pushService) check(r *http.Request, body []byte, sub subscriber, now time.Time) ([]byte, error) {
	if r.Method != http.MethodPost || r.Header.Get("Content-Encoding") != "aes128gcm" {
		return nil, fmt.Errorf("%s with Content-Encoding %q, want POST, aes128gcm", r.Method, r.Header.Get("Content-Encoding"))
	}
	if ttl, err := strconv.Atoi(r.Header.Get("TTL")); err != nil || ttl <= 0 {
		return nil, fmt.Errorf("header TTL %q, want a number of seconds", r.Header.Get("TTL"))
	}
	if topic := r.Header.Get("Topic"); !topicShape.MatchString(topic) {
		return nil, fmt.Errorf("header Topic %q, want 1 to 32 base64url characters", topic)
	}
	token, k, ok := strings.Cut(strings.TrimPrefix(r.Header.Get("Authorization"), "vapid t="), ", k=")
	if !ok || k != p.vapid {
		return nil, fmt.Errorf("header Authorization %q, want vapid t=<jwt>, k=%s", r.Header.Get("Authorization"), p.vapid)
	}
	point, err := base64.RawURLEncoding.DecodeString(k)
	if err != nil {
		return nil, err
	}
	public, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		return nil, err
	}
	var claims jwt.RegisteredClaims
	if _, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return public, nil }, jwt.WithValidMethods([]string{"ES256"}),
		jwt.WithExpirationRequired(), jwt.WithAudience(p.srv.URL), jwt.WithTimeFunc(func() time.Time { return now })); err != nil {
		return nil, fmt.Errorf("VAPID token: %w", err)
	}
	if life := claims.ExpiresAt.Sub(now); claims.Subject != vapidSubject || life > 24*time.Hour {
		return nil, fmt.Errorf("VAPID sub %q, exp now + %v; want %q, at most 24 h", claims.Subject, life, vapidSubject)
	}
	return decryptPush(sub.key, sub.auth, body)
}

// requestsTo returns the requests to paths under prefix, in the order they came.
func (p *pushService) requestsTo(prefix string) []pushRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	var to []pushRequest
	for _, q := range p.requests {
		if strings.HasPrefix(q.path, "/"+prefix+"/") {
			to = append(to, q)
		}
	}
	return to
}

// accepted returns the requests to paths under prefix that the service answered with a 2xx, and how many came in all.
func (p *pushService) accepted(prefix string) (ok []pushRequest, all int) {
	to := p.requestsTo(prefix)
	for _, q := range to {
		if q.status/100 == 2 {
			ok = append(ok, q)
		}
	}
	return ok, len(to)
}

// replica is one whole service started by startRun; stop ends it, as SIGTERM does,
// once (the test's end stops it otherwise).
type replica struct {
	t    *testing.T
	base string
	stop func()
}

// startReplica runs the program with env until stop or the test's end.
func startReplica(t *testing.T, env map[string]string) replica {
	t.Helper()
	base, stop, _ := startRun(t, env)
	once := sync.OnceValue(stop)
	t.Cleanup(func() {
		if err := once(); err != nil {
			t.Error(err)
		}
	})
	return replica{t, base, func() {
		t.Helper()
		if err := once(); err != nil {
			t.Fatal(err)
		}
	}}
}

// do sends a request to the replica, as env.do does.
func (p replica) do(method, path, token string, body any, header ...string) result {
	p.t.Helper()
	r, err := send(http.DefaultClient, p.base, method, path, token, body, header...)
	if err != nil {
		p.t.Fatal(err)
	}
	return r
}

// want fails the test unless r has status.
func (p replica) want(r result, status int, what string) {
	p.t.Helper()
	if r.status != status {
		p.t.Fatalf("%s = %s, want %d", what, r, status)
	}
}

// pushEnv is the environment of replicas that share a new database and send
// pushes signed by a new VAPID key (its public half is returned), to private
// addresses too when allowPrivate; db reads the database.
func pushEnv(t *testing.T, allowPrivate bool) (env map[string]string, vapid string, db *store) {
	t.Helper()
	key, private := testVAPID(t)
	dbURL := newDatabase(t, "")
	env = map[string]string{"DATABASE_URL": dbURL, "BETTER_AUTH_SECRET": testSecret, "PORT": "0", "RATE_LIMIT_PER_SECOND": "0",
		"VAPID_PRIVATE_KEY": private, "VAPID_SUBJECT": vapidSubject}
	if allowPrivate {
		env["WEB_PUSH_ALLOW_PRIVATE"] = "1"
	}
	return env, key.public, testStore(t, dbURL, 5*time.Second)
}

// count runs a SELECT count(*) on db.
func count(t *testing.T, db *store, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := db.pool.QueryRow(t.Context(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitFor polls ok until it holds, failing the test after deadline (a bound on a
// hang, not a measure: the machine may be slow).
func waitFor(t *testing.T, what string, deadline time.Duration, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(deadline); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %v", what, deadline)
		}
	}
}

// settle is how long a test waits, once what it waited for arrived, for anything
// more that should not: longer than the scheduler's round (a second) and a Retry-After of 1.
const settle = 2500 * time.Millisecond

// firedReminderEntry is an entry of the change feed's reminders list.
type firedReminderEntry struct {
	TaskID  int64  `json:"task_id"`
	At      string `json:"at"`
	FiredAt string `json:"fired_at"`
}

// feedCursor syncs the user's feed from scratch and returns the cursor after it.
func (p replica) feedCursor(user string) string {
	p.t.Helper()
	_, cursor := p.feed(user, "")
	return cursor
}

// feedReminders reads the user's change feed since cursor, page by page, and
// returns its reminders: those that fired since (a first sync lists none fired before it).
func (p replica) feedReminders(user, cursor string) []firedReminderEntry {
	p.t.Helper()
	reminders, _ := p.feed(user, cursor)
	return reminders
}

// feed reads the user's change feed since cursor ("": from scratch), page by page,
// and returns its reminders and the cursor after it.
func (p replica) feed(user, cursor string) ([]firedReminderEntry, string) {
	p.t.Helper()
	var all []firedReminderEntry
	for {
		query := "?limit=1000"
		if cursor != "" {
			query += "&since=" + cursor
		}
		r := p.do("GET", "/api/"+user+"/changes"+query, tokenFor(p.t, user), nil)
		p.want(r, 200, "GET changes")
		var page struct {
			Reminders []firedReminderEntry
			Cursor    string
			HasMore   bool `json:"has_more"`
		}
		if err := json.Unmarshal(r.body, &page); err != nil {
			p.t.Fatalf("GET changes = %s: %v", r, err)
		}
		all, cursor = append(all, page.Reminders...), page.Cursor
		if !page.HasMore {
			return all, cursor
		}
	}
}

// reminderAt is a moment a whole second or more ahead of now, by lead at least, as a task's reminder spells it.
func reminderAt(lead time.Duration) (time.Time, string) {
	at := time.Now().Add(lead).Truncate(time.Second).Add(time.Second).UTC()
	return at, at.Format(time.RFC3339Nano)
}

// createdTask is what a test reads of a created task.
type createdTask struct {
	ID           int64           `json:"id"`
	Title        string          `json:"title"`
	DueDate      json.RawMessage `json:"due_date"`
	NextReminder *time.Time      `json:"next_reminder_at"`
}

// reminderPayload is a reminder's push as the browser's service worker reads it.
type reminderPayload struct {
	Type string `json:"type"`
	Task struct {
		ID      int64           `json:"id"`
		Title   string          `json:"title"`
		DueDate json.RawMessage `json:"due_date"`
	} `json:"task"`
	At string `json:"at"`
}

// decodePayload reads a push's payload strictly: no member but reminderPayload's.
func decodePayload(b []byte) (reminderPayload, error) {
	var p reminderPayload
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.DisallowUnknownFields()
	err := d.Decode(&p)
	if err == nil && (p.Type != "reminder" || p.Task.DueDate == nil || p.At == "") {
		err = fmt.Errorf("%s: want type reminder, task.due_date and at", b)
	}
	return p, err
}

// TestPushRemindersTwoReplicas: 500 reminders due in the same second, on two
// replicas of one database, each reach the subscriber once, as a push it
// decrypts, and the feed once; the time from the moment to the last push is logged.
func TestPushRemindersTwoReplicas(t *testing.T) {
	env, vapid, db := pushEnv(t, true)
	push := newPushService(t, vapid, nil)
	replicas := []replica{startReplica(t, env), startReplica(t, env)}
	user := newUser(t)
	token := tokenFor(t, user)
	sub := newSubscriber(t)
	replicas[0].want(replicas[0].do("POST", "/api/"+user+"/push-subscriptions", token, sub.toJSON(push.endpoint("all", sub), nil)),
		201, "POST push-subscriptions")

	cursor := replicas[1].feedCursor(user) // the feed's reminders are those fired since a cursor

	// 500 tasks through both replicas, 8 at a time, every other one with an Idempotency-Key.
	const n = 500
	at, atJSON := reminderAt(5 * time.Second)
	tasks := make([]createdTask, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	started := time.Now()
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				var header []string
				if i%2 == 1 {
					header = []string{"Idempotency-Key", "create-" + strconv.Itoa(i)}
				}
				body := map[string]any{"title": "Reminder " + strconv.Itoa(i), "reminders": []any{map[string]any{"at": atJSON}}}
				if i%3 != 0 {
					body["due_date"] = at.Add(time.Duration(i) * time.Minute).Format(time.RFC3339)
				}
				r, err := send(http.DefaultClient, replicas[i%2].base, "POST", "/api/"+user+"/tasks", token, body, header...)
				if err == nil && r.status != 201 {
					err = fmt.Errorf("POST tasks = %s, want 201", r)
				}
				if err == nil {
					err = json.Unmarshal(r.body, &tasks[i])
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	created := time.Since(started)
	byID := map[int64]createdTask{}
	for i, task := range tasks {
		if task.NextReminder == nil || !task.NextReminder.Equal(at) {
			t.Fatalf("task %d's next_reminder_at = %v, want %v: creating %d tasks took %v, past the lead this test gives them",
				i, task.NextReminder, at, n, created.Round(time.Millisecond))
		}
		byID[task.ID] = task
	}

	waitFor(t, "500 pushes", time.Until(at)+60*time.Second, func() bool { ok, _ := push.accepted("all"); return len(ok) >= n })
	ok, _ := push.accepted("all")
	byArrival := func(a, b pushRequest) int { return a.arrived.Compare(b.arrived) }
	first, last := slices.MinFunc(ok, byArrival).arrived, slices.MaxFunc(ok, byArrival).arrived
	t.Logf("%d tasks created in %v; of their %d pushes the first arrived %v after the reminders' moment, the last %v after it",
		n, created.Round(time.Millisecond), n, first.Sub(at).Round(time.Millisecond), last.Sub(at).Round(time.Millisecond))
	time.Sleep(settle)

	ok, all := push.accepted("all")
	if len(ok) != n || all != n {
		t.Errorf("the push service took %d pushes in %d requests, want %d in %d", len(ok), all, n, n)
	}
	pushed, topics := map[int64]int{}, map[string]bool{}
	for _, q := range ok {
		p, err := decodePayload(q.payload)
		if err != nil {
			t.Fatalf("payload %s: %v", q.payload, err)
		}
		task, known := byID[p.Task.ID]
		if !known || p.Task.Title != task.Title || string(p.Task.DueDate) != string(task.DueDate) || p.At != atJSON {
			t.Fatalf("payload %s, want task %d's id, title %q, due_date %s and at %q", q.payload, p.Task.ID, task.Title, task.DueDate, atJSON)
		}
		pushed[p.Task.ID]++
		topics[q.topic] = true
	}
	if len(pushed) != n || len(topics) != n {
		t.Errorf("pushes for %d tasks under %d topics, want %d of each, once", len(pushed), len(topics), n)
	}

	reminders, fired := map[int64]int{}, replicas[1].feedReminders(user, cursor)
	for _, r := range fired {
		if _, known := byID[r.TaskID]; !known || r.At != atJSON {
			t.Fatalf("feed reminder %+v, want one of the tasks' at %s", r, atJSON)
		}
		reminders[r.TaskID]++
	}
	if len(fired) != n || len(reminders) != n {
		t.Errorf("the feed lists %d reminders of %d tasks, want %d, one each", len(fired), len(reminders), n)
	}
	if got := count(t, db, `SELECT count(*) FROM fired_reminders WHERE user_id = $1`, user); got != n {
		t.Errorf("fired_reminders holds %d rows, want %d", got, n)
	}
	waitFor(t, "the outbox empties", 10*time.Second, func() bool { return count(t, db, `SELECT count(*) FROM push_outbox`) == 0 })
}

// TestPushReminderAfterRestart: a reminder whose moment passes while no replica
// runs fires once, when one starts again.
func TestPushReminderAfterRestart(t *testing.T) {
	env, vapid, db := pushEnv(t, true)
	push := newPushService(t, vapid, nil)
	first := startReplica(t, env)
	user := newUser(t)
	token := tokenFor(t, user)
	sub := newSubscriber(t)
	first.want(first.do("POST", "/api/"+user+"/push-subscriptions", token, sub.toJSON(push.endpoint("restart", sub), nil)), 201, "POST push-subscriptions")
	cursor := first.feedCursor(user)
	at, atJSON := reminderAt(2 * time.Second)
	first.want(first.do("POST", "/api/"+user+"/tasks", token, map[string]any{"title": "While down", "reminders": []any{map[string]any{"at": atJSON}}}),
		201, "POST tasks")
	first.stop()
	if n := count(t, db, `SELECT count(*) FROM fired_reminders`); n != 0 {
		t.Fatalf("the reminder fired before the service stopped (%d fired): stopping took past its moment", n)
	}
	time.Sleep(time.Until(at) + 500*time.Millisecond)

	second := startReplica(t, env)
	waitFor(t, "the push", 20*time.Second, func() bool { ok, _ := push.accepted("restart"); return len(ok) >= 1 })
	time.Sleep(settle)
	if ok, all := push.accepted("restart"); len(ok) != 1 || all != 1 {
		t.Errorf("the push service took %d pushes in %d requests, want 1 in 1", len(ok), all)
	} else if p, err := decodePayload(ok[0].payload); err != nil || p.Task.Title != "While down" || p.At != atJSON {
		t.Errorf("payload %s (%v), want the task's reminder at %s", ok[0].payload, err, atJSON)
	}
	if fired := second.feedReminders(user, cursor); len(fired) != 1 || fired[0].At != atJSON {
		t.Errorf("the feed lists reminders %+v, want one at %s", fired, atJSON)
	}
}

// TestPushServiceAnswers: a 404 or 410 ends the subscription; a 503 or 429 with
// Retry-After is retried after it, and delivered once.
func TestPushServiceAnswers(t *testing.T) {
	env, vapid, db := pushEnv(t, true)
	push := newPushService(t, vapid, func(path string, n int) (int, string) {
		answer, _ := strconv.Atoi(strings.Split(path, "/")[1])
		if answer >= 500 || answer == http.StatusTooManyRequests {
			if n > 1 {
				return http.StatusCreated, ""
			}
			return answer, "1"
		}
		return answer, ""
	})
	rep := startReplica(t, env)
	at, atJSON := reminderAt(2 * time.Second)
	users := map[int]string{}
	for _, answer := range []int{404, 410, 503, 429} {
		user, sub := newUser(t), newSubscriber(t)
		users[answer] = user
		token := tokenFor(t, user)
		rep.want(rep.do("POST", "/api/"+user+"/push-subscriptions", token, sub.toJSON(push.endpoint(strconv.Itoa(answer), sub), nil)), 201, "POST push-subscriptions")
		rep.want(rep.do("POST", "/api/"+user+"/tasks", token, map[string]any{"title": "Answered " + strconv.Itoa(answer),
			"reminders": []any{map[string]any{"at": atJSON}}}), 201, "POST tasks")
	}
	subscriptions := func(user string) int {
		return count(t, db, `SELECT count(*) FROM push_subscriptions WHERE user_id = $1`, user)
	}
	outbox := func(user string) int {
		return count(t, db, `SELECT count(*) FROM push_outbox WHERE user_id = $1`, user)
	}

	for _, answer := range []int{404, 410} {
		user := users[answer]
		waitFor(t, fmt.Sprintf("a %d ends the subscription", answer), time.Until(at)+20*time.Second, func() bool { return subscriptions(user) == 0 })
		if n := outbox(user); n != 0 {
			t.Errorf("after a %d, %d pushes queued for the user, want 0", answer, n)
		}
	}
	for _, answer := range []int{503, 429} {
		waitFor(t, fmt.Sprintf("a push retried after a %d", answer), time.Until(at)+20*time.Second, func() bool {
			ok, _ := push.accepted(strconv.Itoa(answer))
			return len(ok) >= 1
		})
	}
	time.Sleep(settle)
	for _, answer := range []int{404, 410, 503, 429} {
		// Each Topic is one reminder's push: the statuses its requests were answered, in order.
		answered := map[string][]int{}
		for _, q := range push.requestsTo(strconv.Itoa(answer)) {
			answered[q.topic] = append(answered[q.topic], q.status)
		}
		want, wantSubs := []int{answer}, 0
		if answer == 503 || answer == 429 {
			want, wantSubs = []int{answer, http.StatusCreated}, 1
		}
		if len(answered) != 1 {
			t.Errorf("answering %d first: pushes under %d topics (%v), want 1", answer, len(answered), answered)
		}
		for topic, statuses := range answered {
			if !slices.Equal(statuses, want) {
				t.Errorf("answering %d first: the push of topic %s was answered %v, want %v", answer, topic, statuses, want)
			}
		}
		if n := subscriptions(users[answer]); n != wantSubs {
			t.Errorf("answering %d first: the user holds %d subscriptions, want %d", answer, n, wantSubs)
		}
		if n := outbox(users[answer]); n != 0 {
			t.Errorf("answering %d first: %d pushes left queued, want 0", answer, n)
		}
		for _, q := range push.requestsTo(strconv.Itoa(answer)) {
			if p, err := decodePayload(q.payload); err != nil || p.Task.Title != "Answered "+strconv.Itoa(answer) || p.At != atJSON {
				t.Errorf("payload %s (%v), want the task's reminder at %s", q.payload, err, atJSON)
			}
		}
	}
}

// TestPushRefusesPrivateAddressAtSend: without WEB_PUSH_ALLOW_PRIVATE, a push to
// an endpoint whose name resolves to a private address (here localhost, written
// straight into the table, as a name the subscribe route cannot see through
// would be) is refused when it connects: no connection reaches it, and the
// subscription, which can never be delivered to, is deleted.
func TestPushRefusesPrivateAddressAtSend(t *testing.T) {
	var connections, requests atomic.Int32
	local := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.WriteHeader(http.StatusCreated)
	}))
	local.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			connections.Add(1)
		}
	}
	local.StartTLS()
	t.Cleanup(local.Close)
	env, _, db := pushEnv(t, false)
	rep := startReplica(t, env)
	user, sub := newUser(t), newSubscriber(t)
	token := tokenFor(t, user)
	endpoint := "https://localhost:" + strconv.Itoa(local.Listener.Addr().(*net.TCPAddr).Port) + "/push/" + rand.Text()
	rep.want(rep.do("POST", "/api/"+user+"/push-subscriptions", token, sub.toJSON(endpoint, nil)), 422, "POST an https endpoint on localhost")
	keys := sub.toJSON(endpoint, nil)["keys"].(map[string]any)
	if _, err := db.pool.Exec(t.Context(), `INSERT INTO push_subscriptions (user_id, endpoint, p256dh, auth) VALUES ($1, $2, $3, $4)`,
		user, endpoint, keys["p256dh"], keys["auth"]); err != nil {
		t.Fatal(err)
	}
	cursor := rep.feedCursor(user)
	at, atJSON := reminderAt(time.Second)
	rep.want(rep.do("POST", "/api/"+user+"/tasks", token, map[string]any{"title": "Refused", "reminders": []any{map[string]any{"at": atJSON}}}),
		201, "POST tasks")

	waitFor(t, "the subscription deleted", time.Until(at)+20*time.Second, func() bool {
		return count(t, db, `SELECT count(*) FROM push_subscriptions WHERE user_id = $1`, user) == 0
	})
	if c, r := connections.Load(), requests.Load(); c != 0 || r != 0 {
		t.Errorf("the local server got %d connections and %d requests, want none", c, r)
	}
	if n := count(t, db, `SELECT count(*) FROM push_outbox`); n != 0 {
		t.Errorf("%d pushes left queued, want 0", n)
	}
	if fired := rep.feedReminders(user, cursor); len(fired) != 1 {
		t.Errorf("the feed lists reminders %+v, want the one that fired", fired)
	}
}
