// push.go holds Web Push's delivery: the subscription routes, the public key's, and the sender that empties the outbox.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Web Push's bounds: subscriptions a user may hold, how long a push service keeps
// a reminder for a device that is offline, how long a claimed push is one sender's,
// how long one is retried after it was queued, and how many are sent at once.
const (
	maxSubscriptions = 20
	pushTTL          = 24 * time.Hour
	pushLease        = time.Minute
	pushGiveUp       = time.Hour
	pushesAtOnce     = 16
)

// errPushOff answers the subscription routes of a service without VAPID_PRIVATE_KEY.
var errPushOff = &statusError{http.StatusNotImplemented, "Web Push is off on this service: it needs VAPID_PRIVATE_KEY and VAPID_SUBJECT"}

// pusher sends the outbox's pushes (store.claimPushes).
type pusher struct {
	db     *store
	log    *slog.Logger
	key    *vapidKey
	client *http.Client
}

// drain sends the pushes due, claiming one at a time with a lease (pushLease), until
// none is left or ctx ends: at shutdown, a claimed push goes back when its lease ends.
func (p *pusher) drain(ctx context.Context) {
	for ctx.Err() == nil {
		jobs, err := p.db.claimPushes(ctx, 1, pushLease)
		if err != nil {
			p.log.Warn("claiming pushes", "err", err.Error())
		}
		if len(jobs) == 0 {
			return
		}
		p.send(ctx, jobs[0])
	}
}

// send delivers one push and ends it as the push service answers (RFC 8030 §5): a 2xx,
// sent; 404 or 410, or an address the client refuses (errPushAddress), the subscription
// is gone; a 429, a 5xx or no answer, retried after Retry-After (RFC 9110 §10.2.3) or a
// backoff that doubles from 10 s, until pushGiveUp after it was queued; else given up.
func (p *pusher) send(ctx context.Context, j pushJob) {
	endpoint, _ := url.Parse(j.Endpoint) // checkPushEndpoint parsed it when it was subscribed
	body, err := encryptPush(j.P256dh, j.Auth, []byte(j.Payload))
	req, err2 := newPushRequest(ctx, p.key, endpoint, body, pushTTL, j.Topic)
	var resp *http.Response
	if err = errors.Join(err, err2); err == nil {
		resp, err = p.client.Do(req)
	}
	status, header := 0, http.Header{} // no answer
	if err == nil {
		resp.Body.Close()
		status, header = resp.StatusCode, resp.Header
	}
	retry := time.Now().Add(10 * time.Second << min(j.Attempts-1, 8))
	if s, err := strconv.Atoi(header.Get("Retry-After")); err == nil && s > 0 {
		retry = time.Now().Add(time.Duration(s) * time.Second)
	} else if at, err := http.ParseTime(header.Get("Retry-After")); err == nil && at.After(time.Now()) {
		retry = at
	}
	gone := status == http.StatusNotFound || status == http.StatusGone || errors.Is(err, errPushAddress)
	retryable := status == http.StatusTooManyRequests || status >= 500 || status == 0 && !gone
	if !retryable || retry.After(j.Created.Add(pushGiveUp)) {
		retry = time.Time{}
	}
	if status/100 != 2 { // an endpoint holds the subscription's secret: the log names its host only
		if urlErr, ok := errors.AsType[*url.Error](err); ok {
			err = urlErr.Err
		}
		p.log.Warn("push not delivered", "host", endpoint.Host, "status", status, "gone", gone, "retry", !retry.IsZero(), "err", fmt.Sprint(err))
	}
	if err := p.db.pushed(context.WithoutCancel(ctx), j, retry, gone); err != nil {
		p.log.Warn("ending a push", "err", err.Error())
	}
}

// handleVAPIDKey serves GET /api/vapid-public-key: {"public_key": "..."}, the
// applicationServerKey that pushManager.subscribe takes; 501 when Web Push is off.
func handleVAPIDKey(key *vapidKey) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if key == nil {
			writeError(w, r, errPushOff)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"public_key": key.public})
	}
}

// handleSubscription serves POST /api/{user_id}/push-subscriptions, which takes what
// PushSubscription.toJSON() gives ({"endpoint", "expirationTime", "keys": {"p256dh",
// "auth"}}) and answers 201, or 200 for an endpoint held already, and DELETE on the
// same path, which takes {"endpoint"} and answers 204, held or not (a browser may unsubscribe
// after a push service's 404 or 410 removed it). Both honour Idempotency-Key.
func handleSubscription(db *store, key *vapidKey, allowPrivate, subscribe bool) userHandler {
	return func(w http.ResponseWriter, r *http.Request, userID string) {
		if key == nil {
			writeError(w, r, errPushOff)
			return
		}
		sub, err := decodeSubscription(w, r, subscribe, allowPrivate)
		body, _ := json.Marshal(sub) // cannot fail: strings
		hash := sha256.Sum256(append([]byte(r.Pattern+"\n"), body...))
		keyedWrite(w, r, db, userID, err, func() []byte { return hash[:] }, func(ctx context.Context, q querier) (answer, error) {
			if !subscribe {
				return answer{Status: http.StatusNoContent}, db.unsubscribe(ctx, q, userID, sub.Endpoint)
			}
			created, err := db.subscribe(ctx, q, userID, sub.Endpoint, sub.Keys.P256dh, sub.Keys.Auth, maxSubscriptions)
			return answer{Status: map[bool]int{true: http.StatusCreated, false: http.StatusOK}[created], Body: append(body, '\n')}, err
		})
	}
}

// subscription is a push subscription as PushSubscription.toJSON() gives it, expirationTime aside.
type subscription struct {
	Endpoint string `json:"endpoint"`
	Keys     struct {
		P256dh string `json:"p256dh"`
		Auth   string `json:"auth"`
	} `json:"keys"`
}

// decodeSubscription reads a subscription body (readObject): an endpoint that checkPushEndpoint
// takes, and for a subscribe keys that parseSubscriptionKeys takes; expirationTime is read and
// not kept, and any other member is a 422.
func decodeSubscription(w http.ResponseWriter, r *http.Request, subscribe, allowPrivate bool) (sub subscription, err error) {
	raw, err := readObject(w, r)
	if err != nil {
		return sub, err
	}
	var expires *float64 // read, to refuse what is not a number of milliseconds or null, and not kept
	members := map[string]any{"endpoint": &sub.Endpoint, "expirationTime": &expires, "keys": &sub.Keys}
	for name, v := range raw {
		if members[name] == nil {
			return sub, validationError{{[]any{"body", name}, "Extra inputs are not permitted", "extra_forbidden"}}
		} else if json.Unmarshal(v, members[name]) != nil {
			return sub, validationError{{[]any{"body", name}, `Input should be as PushSubscription.toJSON() gives it: ` +
				`{"endpoint": "https://...", "expirationTime": null, "keys": {"p256dh": "...", "auth": "..."}}`, "model_attributes_type"}}
		}
	}
	if _, err = checkPushEndpoint(sub.Endpoint, allowPrivate); err == nil && subscribe {
		_, _, err = parseSubscriptionKeys(sub.Keys.P256dh, sub.Keys.Auth)
	}
	return sub, err
}
