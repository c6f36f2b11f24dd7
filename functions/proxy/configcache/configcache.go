// Package configcache is the proxy's warm cache of API keys, instance
// configurations and upstream tool lists: one per function instance
// process, shared by all its concurrent requests.
//
// Entries are fresh for TTL. A stale entry is served at once while one
// background load refreshes it (stale-while-revalidate); when that load
// fails the stale value keeps being served for up to StaleIfError past its
// expiry, so a Postgres outage does not take down instances that were
// warm. Loads are deduplicated per key (singleflight): any number of
// concurrent misses for one key make one load. Errors the caller marks as
// negative (an unknown API key) are cached for NegativeTTL, so a client
// retrying a bad key does not reach the database each time.
//
// The bound and eviction come from hashicorp/golang-lru (a maintained,
// thread-safe LRU) and the deduplication from x/sync/singleflight; what
// neither offers — freshness, stale serving and negative entries — is the
// small layer here. Expirable LRUs (golang-lru/expirable, ttlcache) drop
// an entry at expiry, which is exactly what stale-if-error must not do.
package configcache

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"
)

// Options configure a cache. Zero values take the defaults named.
type Options struct {
	// Size bounds the number of entries; the least recently used is
	// evicted beyond it. Default 10,000.
	Size int
	// TTL is how long an entry is fresh. Default 60 s.
	TTL time.Duration
	// StaleIfError is how long past expiry an entry may still be served
	// while it is refreshed in the background, or while refreshes fail.
	// Default 10 min; negative: an expired entry is always loaded anew
	// before it is served.
	StaleIfError time.Duration
	// NegativeTTL is how long a negative error is cached. Default 5 s.
	NegativeTTL time.Duration
	// NegativeSize bounds the negative entries, which are kept apart
	// from the values: a flood of made-up keys evicts only other
	// negative entries, never a valid key. Default Size.
	NegativeSize int
	// LoadTimeout bounds one load, which runs detached from the request
	// that triggered it (so that one client giving up does not fail the
	// others waiting on the same load). Default 10 s.
	LoadTimeout time.Duration
	// IsNegative reports whether a load error is a stable answer worth
	// caching (not found), rather than a failure. Nil: none is.
	IsNegative func(error) bool
	// OnRefreshError is told about a failed background refresh; nil
	// ignores it.
	OnRefreshError func(key string, err error)
	// Cost, when set, weighs a value (in bytes, say), and MaxCost bounds
	// the sum of the costs the cache holds: the least recently used
	// values are evicted beyond it, and a value costlier than MaxCost on
	// its own is returned but not kept. Values an upstream sizes (tool
	// lists) must be bounded in bytes, not only in count.
	Cost    func(value any) int64
	MaxCost int64
	// OnPanic is told about a loader that panicked, with the panic's
	// value and stack; the load fails with a *PanicError. Nil ignores it.
	OnPanic func(key string, value any, stack []byte)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Jitter, between 0 and 1, shortens each value's TTL by a random
	// part of it up to that fraction, so that values loaded together (at
	// a process's start) do not all expire, and reload, together.
	Jitter float64
}

// Outcome says how Get answered.
type Outcome uint8

const (
	Hit      Outcome = iota // fresh entry
	Stale                   // stale entry, refresh under way or failing
	Miss                    // loaded now
	Negative                // cached negative answer
)

func (o Outcome) String() string {
	return [...]string{"hit", "stale", "miss", "negative"}[o]
}

type entry[V any] struct {
	value   V
	cost    int64 // Cost(value), when the cache weighs its values
	err     error // a negative answer
	expires time.Time
	// refreshing is set while one background refresh runs; nextTry
	// (UnixNano) spaces refreshes out while they fail, so an outage costs
	// about one load a second per key, not one per request.
	refreshing atomic.Bool
	nextTry    atomic.Int64
}

// retryPause is the least time between two failing refreshes of one entry.
const retryPause = time.Second

// refreshInBackground starts one load of a stale entry unless one is under
// way or the last one failed less than retryPause ago. The goroutine ends
// when the load does, within LoadTimeout.
func (c *Cache[V]) refreshInBackground(e *entry[V], now time.Time, key string, load func(context.Context) (V, error)) {
	if now.UnixNano() < e.nextTry.Load() || !e.refreshing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer e.refreshing.Store(false)
		_, err, _ := c.flight.Do(key, func() (any, error) { return c.load(key, load) })
		if err != nil {
			e.nextTry.Store(c.opts.Now().Add(retryPause).UnixNano())
			c.refresh.Add(1)
			if c.opts.OnRefreshError != nil {
				c.opts.OnRefreshError(key, err)
			}
		}
	}()
}

// Cache maps string keys to values of type V. It is safe for concurrent
// use.
type Cache[V any] struct {
	opts    Options
	lru     *lru.Cache[string, *entry[V]] // values
	neg     *lru.Cache[string, *entry[V]] // negative answers
	flight  singleflight.Group
	hits    atomic.Int64
	misses  atomic.Int64
	stale   atomic.Int64
	refresh atomic.Int64 // refresh failures
	cost    atomic.Int64 // of the values held, when Cost is set
	costMu  sync.Mutex   // one add at a time keeps the sum within MaxCost
	// gen counts the invalidations (Remove, RemoveIf, Purge): a load
	// that began before one may have read what it invalidated, so its
	// value is returned to its callers but not kept.
	gen atomic.Uint64
	// shortTTL, when not 0, is the freshness (nanoseconds) that applies
	// instead of TTL (SetShortTTL).
	shortTTL atomic.Int64
}

// New makes a cache.
func New[V any](opts Options) *Cache[V] {
	if opts.Size <= 0 {
		opts.Size = 10000
	}
	if opts.TTL <= 0 {
		opts.TTL = 60 * time.Second
	}
	if opts.StaleIfError == 0 {
		opts.StaleIfError = 10 * time.Minute
	}
	if opts.NegativeSize <= 0 {
		opts.NegativeSize = opts.Size
	}
	if opts.NegativeTTL <= 0 {
		opts.NegativeTTL = 5 * time.Second
	}
	if opts.LoadTimeout <= 0 {
		opts.LoadTimeout = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cache := &Cache[V]{opts: opts}
	c, err := lru.NewWithEvict[string, *entry[V]](opts.Size, func(_ string, e *entry[V]) { cache.cost.Add(-e.cost) })
	if err != nil {
		panic(fmt.Sprintf("configcache: %v", err)) // only for a non-positive size, excluded above
	}
	neg, err := lru.New[string, *entry[V]](opts.NegativeSize)
	if err != nil {
		panic(fmt.Sprintf("configcache: %v", err))
	}
	cache.lru, cache.neg = c, neg
	return cache
}

// Get returns the value for key, loading it with load when it is missing.
// A negative error from load is returned (and cached) as the error.
func (c *Cache[V]) Get(ctx context.Context, key string, load func(context.Context) (V, error)) (V, Outcome, error) {
	now := c.opts.Now()
	if e, ok := c.lru.Get(key); ok {
		if now.Before(e.expires) && c.freshUnderShortTTL(e, now) {
			c.hits.Add(1)
			return e.value, Hit, nil
		}
		if now.Before(e.expires.Add(max(c.opts.StaleIfError, 0))) {
			c.stale.Add(1)
			c.refreshInBackground(e, now, key, load)
			return e.value, Stale, nil
		}
	} else if e, ok := c.neg.Get(key); ok && now.Before(e.expires) {
		c.hits.Add(1)
		return e.value, Negative, e.err
	}
	c.misses.Add(1)
	ch := c.flight.DoChan(key, func() (any, error) { return c.load(key, load) })
	select {
	case res := <-ch:
		v, _ := res.Val.(V)
		if res.Err != nil && c.negative(res.Err) {
			return v, Negative, res.Err
		}
		return v, Miss, res.Err
	case <-ctx.Done():
		var zero V
		return zero, Miss, ctx.Err()
	}
}

// load runs the loader detached from any one request and stores what it
// returns: the value, or a negative error.
func (c *Cache[V]) load(key string, load func(context.Context) (V, error)) (V, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.LoadTimeout)
	defer cancel()
	gen := c.gen.Load()
	v, err := c.safeLoad(ctx, key, load)
	now := c.opts.Now()
	if c.gen.Load() != gen {
		// An invalidation came while this load ran: what it read may be
		// what was invalidated. The next Get loads again.
		return v, err
	}
	switch {
	case err == nil:
		c.neg.Remove(key)
		c.add(key, &entry[V]{value: v, expires: now.Add(c.ttl())})
	case c.negative(err):
		c.lru.Remove(key)
		c.neg.Add(key, &entry[V]{err: err, expires: now.Add(c.opts.NegativeTTL)})
	}
	return v, err
}

// PanicError is the error of a load whose loader panicked.
type PanicError struct{ Value any }

func (e *PanicError) Error() string { return fmt.Sprintf("loader panicked: %v", e.Value) }

// safeLoad runs load and turns a panic into its error. Loaders read what
// a database or an upstream sent; a panic on it must fail the load, not
// the process: singleflight re-panics on a goroutine of its own, where no
// request's recover sees it, and every tenant's calls would die with it.
func (c *Cache[V]) safeLoad(ctx context.Context, key string, load func(context.Context) (V, error)) (v V, err error) {
	defer func() {
		if p := recover(); p != nil {
			if c.opts.OnPanic != nil {
				c.opts.OnPanic(key, p, debug.Stack())
			}
			var zero V
			v, err = zero, &PanicError{Value: p}
		}
	}()
	return load(ctx)
}

// add keeps e under key, within MaxCost when the cache weighs its values.
func (c *Cache[V]) add(key string, e *entry[V]) {
	if c.opts.Cost == nil {
		c.lru.Add(key, e)
		return
	}
	e.cost = c.opts.Cost(e.value)
	c.costMu.Lock()
	defer c.costMu.Unlock()
	// Replacing a value is no eviction: its cost is taken off here.
	c.lru.Remove(key)
	if c.opts.MaxCost > 0 && e.cost > c.opts.MaxCost {
		return
	}
	c.cost.Add(e.cost)
	c.lru.Add(key, e)
	for c.opts.MaxCost > 0 && c.cost.Load() > c.opts.MaxCost {
		if _, _, ok := c.lru.RemoveOldest(); !ok {
			return
		}
	}
}

// ttl is TTL less its jitter.
func (c *Cache[V]) ttl() time.Duration {
	if c.opts.Jitter <= 0 {
		return c.opts.TTL
	}
	return c.opts.TTL - time.Duration(rand.Float64()*min(c.opts.Jitter, 1)*float64(c.opts.TTL))
}

// Cost is the sum of the costs of the values held (0 without Cost).
func (c *Cache[V]) Cost() int64 { return c.cost.Load() }

func (c *Cache[V]) negative(err error) bool {
	return c.opts.IsNegative != nil && c.opts.IsNegative(err)
}

// Remove drops key, so the next Get loads it. A load under way when it
// is called keeps no value.
func (c *Cache[V]) Remove(key string) {
	c.gen.Add(1)
	c.lru.Remove(key)
	c.neg.Remove(key)
}

// RemoveIf drops every value for which drop is true, and returns how
// many went. It walks the whole cache: it is meant for rare changes (an
// operator's), not for requests. Loads under way keep no value.
func (c *Cache[V]) RemoveIf(drop func(key string, value V) bool) int {
	c.gen.Add(1)
	n := 0
	for _, k := range c.lru.Keys() {
		if e, ok := c.lru.Peek(k); ok && drop(k, e.value) {
			c.lru.Remove(k)
			n++
		}
	}
	return n
}

// Purge drops every entry, negative ones too. Loads under way keep no
// value.
func (c *Cache[V]) Purge() {
	c.gen.Add(1)
	c.lru.Purge()
	c.neg.Purge()
}

// SetShortTTL makes entries fresh for d after their load instead of for
// TTL, when d is shorter; 0 returns to TTL. A process that relies on
// explicit invalidation to keep a long TTL safe sets it while it cannot
// learn of invalidations.
func (c *Cache[V]) SetShortTTL(d time.Duration) {
	if d < 0 || d >= c.opts.TTL {
		d = 0
	}
	c.shortTTL.Store(int64(d))
}

// freshUnderShortTTL reports whether e, fresh under TTL, is fresh under a
// short TTL set by SetShortTTL too.
func (c *Cache[V]) freshUnderShortTTL(e *entry[V], now time.Time) bool {
	short := c.shortTTL.Load()
	if short == 0 {
		return true
	}
	return now.Before(e.expires.Add(time.Duration(short) - c.opts.TTL))
}

// Stats are counts since the cache was made.
type Stats struct {
	Size          int   `json:"size"`
	Hits          int64 `json:"hits"`
	Misses        int64 `json:"misses"`
	Stale         int64 `json:"stale"`
	RefreshErrors int64 `json:"refreshErrors"`
}

// Stats returns the current counts.
func (c *Cache[V]) Stats() Stats {
	return Stats{Size: c.lru.Len(), Hits: c.hits.Load(), Misses: c.misses.Load(), Stale: c.stale.Load(), RefreshErrors: c.refresh.Load()}
}
