package proxy

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// codeRateLimited accompanies HTTP 429 over a key's or an instance's rate
// limit; its data says which (reasonRateLimited).
const (
	codeRateLimited   = -32005
	reasonRateLimited = "rate_limited"
)

// bucket is a token bucket: up to Burst tokens, PerSecond added a
// second, one taken per request. The limit is passed in on each take, so
// a limit an operator changes applies to the bucket as it is.
type bucket struct {
	mu     sync.Mutex
	tokens float64
	last   int64            // unix nanoseconds of the last take; 0: never (full)
	limit  tenant.RateLimit // the last limit taken with, for full
}

// take takes a token at now if there is one; else it says how long until
// there is.
func (b *bucket) take(now int64, l tenant.RateLimit) (bool, time.Duration) {
	burst := float64(max(l.Burst, 1))
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last == 0 {
		b.tokens = burst
	} else if now > b.last {
		b.tokens = min(burst, b.tokens+float64(now-b.last)/1e9*l.PerSecond)
	}
	b.last, b.limit = max(b.last, now), l
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.PerSecond * 1e9)
}

// full reports whether the bucket has refilled by now: it is then no
// different from a new one, and may be dropped.
func (b *bucket) full(now int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last == 0 || float64(now-b.last)/1e9*b.limit.PerSecond >= float64(b.limit.Burst)
}

// buckets are a process's buckets of one kind (keys or instances), by ID.
type buckets struct {
	mu sync.RWMutex
	m  map[string]*bucket
}

func (bs *buckets) get(id string) *bucket {
	bs.mu.RLock()
	b := bs.m[id]
	bs.mu.RUnlock()
	if b != nil {
		return b
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.m == nil {
		bs.m = map[string]*bucket{}
	}
	if b = bs.m[id]; b == nil {
		b = &bucket{}
		bs.m[id] = b
	}
	return b
}

// take takes a token of id's bucket under limit l.
func (bs *buckets) take(id string, now int64, l tenant.RateLimit) (bool, time.Duration) {
	return bs.get(id).take(now, l)
}

// prune drops the buckets that have refilled: the map holds only what
// was used within a burst's time.
func (bs *buckets) prune(now int64) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	for id, b := range bs.m {
		if b.full(now) {
			delete(bs.m, id)
		}
	}
}

func (bs *buckets) len() int {
	bs.mu.RLock()
	defer bs.mu.RUnlock()
	return len(bs.m)
}

// rateLimited takes a token from the instance's bucket and the key's,
// when they have limits, and refuses the request when one is empty. It
// costs two map reads and two uncontended locks, no allocation, and no
// round trip: the limits come with the cached key and instance. The
// buckets are the process's own (docs/admin.md, "Rate limits").
func (h *Handler) rateLimited(key *tenant.Key, v *view) *rpcError {
	il, kl := v.inst.RateLimit, key.RateLimit
	if !il.Limited() && !kl.Limited() {
		return nil
	}
	now := h.opts.Now().UnixNano()
	if il.Limited() {
		if ok, wait := h.instanceBuckets.take(v.inst.ID, now, il); !ok {
			return rateLimitError("instance", il, wait)
		}
	}
	if kl.Limited() {
		if ok, wait := h.keyBuckets.take(key.ID, now, kl); !ok {
			return rateLimitError("API key", kl, wait)
		}
	}
	return nil
}

func rateLimitError(of string, l tenant.RateLimit, wait time.Duration) *rpcError {
	secs := max(1, int(math.Ceil(wait.Seconds())))
	e := newError(http.StatusTooManyRequests, codeRateLimited,
		"rate limit of this "+of+" exceeded ("+strconv.FormatFloat(l.PerSecond, 'g', -1, 64)+" requests a second, burst "+
			strconv.Itoa(l.Burst)+"); retry after "+strconv.Itoa(secs)+" s")
	e.header = http.Header{"Retry-After": {strconv.Itoa(secs)}}
	e.data = map[string]any{"reason": reasonRateLimited, "limit": of, "retryAfterMs": wait.Milliseconds()}
	e.rateLimited = true
	return e
}
