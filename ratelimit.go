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
	buckets     map[string]time.Time // when each user's bucket is full again; a user not here has a full one
	swept       time.Time
}

// newRateLimiter returns nil, no limit, when rate is 0.
func newRateLimiter(rate, burst int) *rateLimiter {
	if rate <= 0 {
		return nil
	}
	return &rateLimiter{rate: float64(rate), burst: float64(max(burst, 1)), buckets: map[string]time.Time{}}
}

// allow takes a token from the user's bucket; when there is none it says how long until there is.
// Once a minute it forgets the users whose buckets are full: a full bucket is what an
// unknown user gets anyway, so idle users cost no memory.
func (l *rateLimiter) allow(userID string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		maps.DeleteFunc(l.buckets, func(_ string, full time.Time) bool { return !full.After(now) })
		l.swept = now
	}
	lacks := max(0, l.buckets[userID].Sub(now).Seconds()) * l.rate // the tokens the user's bucket lacks, fractions included
	if lacks > l.burst-1 {
		return false, time.Duration((lacks + 1 - l.burst) / l.rate * float64(time.Second))
	}
	l.buckets[userID] = now.Add(time.Duration((lacks + 1) / l.rate * float64(time.Second)))
	return true, 0
}
