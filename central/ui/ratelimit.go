package ui

import (
	"sync"
	"time"
)

// The sign-in limit per client address: a burst of signinBurst attempts,
// then one more every signinEvery. It slows down the guessing of tokens
// and keeps a flood of sign-ins from one address from loading the database.
const (
	signinBurst = 10
	signinEvery = 6 * time.Second
)

// rateLimit is a token bucket per client address.
type rateLimit struct {
	burst float64
	every time.Duration
	mu    sync.Mutex
	byIP  map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newRateLimit(burst int, every time.Duration) *rateLimit {
	return &rateLimit{burst: float64(burst), every: every, byIP: map[string]*bucket{}}
}

// take spends one attempt of ip at now; it returns zero when allowed, else
// how long until the next attempt is.
func (l *rateLimit) take(ip string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.byIP[ip]
	if !ok {
		if len(l.byIP) >= 10000 {
			l.forgetFull(now)
		}
		b = &bucket{tokens: l.burst, at: now}
		l.byIP[ip] = b
	}
	b.tokens = min(l.burst, b.tokens+float64(now.Sub(b.at))/float64(l.every))
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return time.Duration((1 - b.tokens) * float64(l.every))
}

// forgetFull drops the buckets that have refilled, which hold nothing a
// new bucket would not; the caller holds l.mu.
func (l *rateLimit) forgetFull(now time.Time) {
	for ip, b := range l.byIP {
		if b.tokens+float64(now.Sub(b.at))/float64(l.every) >= l.burst {
			delete(l.byIP, ip)
		}
	}
}
