// ratelimit_test.go tests the per-user token bucket, through the handler and on a clock the test controls.
package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"
)

func TestRateLimit(t *testing.T) {
	e := newEnv(t, hsAuth(), func(c *config) { c.RatePerSecond, c.RateBurst = 1, 3 })
	user, other := newUser(t), newUser(t)
	var limited result
	ok := 0
	for range 10 {
		r := e.do("GET", "/api/"+user+"/tasks", tokenFor(t, user), nil)
		switch r.status {
		case 200:
			ok++
		case 429:
			limited = r
		default:
			t.Fatalf("GET = %s, want 200 or 429", r)
		}
	}
	// 10 requests at 1/s with a burst of 3 cannot all pass unless they took 7 s.
	if limited.status != 429 || ok < 3 {
		t.Fatalf("%d of 10 passed, last refusal %v; want the first 3 to pass, then 429", ok, limited)
	}
	if ra, err := strconv.Atoi(limited.header.Get("Retry-After")); err != nil || ra < 1 || !json.Valid(limited.body) {
		t.Fatalf("429 with Retry-After %q and body %s", limited.header.Get("Retry-After"), limited.body)
	}
	e.want(e.do("GET", "/api/"+other+"/tasks", tokenFor(t, other), nil), 200, "another user while the first is limited")

	// The bucket itself, on a clock the test controls.
	l := newRateLimiter(1, 2)
	t0 := time.Now()
	for i, want := range []bool{true, true, false} {
		if got, _ := l.allow("u", t0); got != want {
			t.Fatalf("request %d at t0: allow = %v, want %v", i, got, want)
		}
	}
	if _, wait := l.allow("u", t0); wait <= 0 || wait > time.Second {
		t.Fatalf("wait = %v, want (0, 1s]", wait)
	}
	if ok, _ := l.allow("u", t0.Add(time.Second)); !ok {
		t.Fatal("no token a second later")
	}
	for i := range 1000 {
		l.allow(fmt.Sprint("idle-", i), t0)
	}
	l.allow("active", t0.Add(2*time.Minute))
	if n := len(l.buckets); n != 1 {
		t.Fatalf("%d buckets kept after everyone else went idle, want 1", n)
	}
	if newRateLimiter(0, 100) != nil {
		t.Fatal("RATE_LIMIT_PER_SECOND=0 should turn the limit off")
	}
}
