// ratelimit.go holds the per-user token bucket that bounds each user's request rate.
package main

import (
	"maps"
	"sync"
	"time"
)

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
// Once a minute it forgets the users whose buckets have refilled: a full bucket is what an
// unknown user gets anyway, so idle users cost no memory.
func (l *rateLimiter) allow(userID string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		refill := time.Duration(l.burst / l.rate * float64(time.Second))
		maps.DeleteFunc(l.buckets, func(_ string, b bucket) bool { return now.Sub(b.at) >= refill })
		l.swept = now
	}
	b := l.buckets[userID] // an unknown user's is empty as of year 1, so full by now
	b.tokens, b.at = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate), now
	if b.tokens < 1 {
		l.buckets[userID] = b
		return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	}
	b.tokens--
	l.buckets[userID] = b
	return true, 0
}
