package configcache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/internal/wait"
)

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

var errNotFound = errors.New("not found")

func newCache(clk *clock) *Cache[string] {
	return New[string](Options{TTL: time.Minute, StaleIfError: 5 * time.Minute, NegativeTTL: 5 * time.Second,
		IsNegative: func(err error) bool { return errors.Is(err, errNotFound) }, Now: clk.Now})
}

func TestConcurrentMissesLoadOnce(t *testing.T) {
	c := newCache(&clock{now: time.Unix(0, 0)})
	var loads atomic.Int32
	release := make(chan struct{})
	load := func(context.Context) (string, error) {
		loads.Add(1)
		<-release
		return "v", nil
	}
	var wg sync.WaitGroup
	results := make(chan string, 80)
	for range 80 {
		wg.Go(func() {
			v, _, err := c.Get(context.Background(), "k", load)
			if err != nil {
				t.Error(err)
			}
			results <- v
		})
	}
	time.Sleep(50 * time.Millisecond) // let all 80 reach the cache
	close(release)
	wg.Wait()
	close(results)
	if n := loads.Load(); n != 1 {
		t.Errorf("loads = %d; want 1 for 80 concurrent misses", n)
	}
	for v := range results {
		if v != "v" {
			t.Errorf("got %q; want v", v)
		}
	}
}

func TestFreshStaleRefresh(t *testing.T) {
	clk := &clock{now: time.Unix(0, 0)}
	c := newCache(clk)
	version := atomic.Int32{}
	load := func(context.Context) (string, error) {
		return fmt.Sprint("v", version.Add(1)), nil
	}
	ctx := context.Background()
	if v, o, _ := c.Get(ctx, "k", load); v != "v1" || o != Miss {
		t.Fatalf("first get = %q %v; want v1 miss", v, o)
	}
	clk.Add(59 * time.Second)
	if v, o, _ := c.Get(ctx, "k", load); v != "v1" || o != Hit {
		t.Fatalf("within TTL = %q %v; want v1 hit", v, o)
	}
	clk.Add(2 * time.Second)
	if v, o, _ := c.Get(ctx, "k", load); v != "v1" || o != Stale {
		t.Fatalf("after TTL = %q %v; want stale v1 served at once", v, o)
	}
	wait.For(t, "the background refresh to serve v2", 5*time.Second, func() bool { v, o, _ := c.Get(ctx, "k", load); return v == "v2" && o == Hit })
	if n := version.Load(); n != 2 {
		t.Errorf("loads = %d; want 2 (one refresh)", n)
	}
}

func TestStaleIfError(t *testing.T) {
	clk := &clock{now: time.Unix(0, 0)}
	c := newCache(clk)
	var failing atomic.Bool
	var loads atomic.Int32
	load := func(context.Context) (string, error) {
		loads.Add(1)
		if failing.Load() {
			return "", errors.New("postgres is down")
		}
		return "v", nil
	}
	ctx := context.Background()
	c.Get(ctx, "k", load)
	failing.Store(true)
	clk.Add(2 * time.Minute) // expired, within stale-if-error
	for range 50 {
		if v, o, err := c.Get(ctx, "k", load); v != "v" || o != Stale || err != nil {
			t.Fatalf("during outage = %q %v %v; want stale v", v, o, err)
		}
	}
	wait.For(t, "a refresh error", 5*time.Second, func() bool { return c.Stats().RefreshErrors >= 1 })
	if n := loads.Load(); n > 3 {
		t.Errorf("%d loads for 50 requests during an outage; want refreshes spaced out", n)
	}
	clk.Add(5 * time.Minute) // past the stale-if-error limit
	if _, _, err := c.Get(ctx, "k", load); err == nil {
		t.Error("served past the stale-if-error limit")
	}
}

func TestNegativeCaching(t *testing.T) {
	clk := &clock{now: time.Unix(0, 0)}
	c := newCache(clk)
	var loads atomic.Int32
	load := func(context.Context) (string, error) { loads.Add(1); return "", errNotFound }
	ctx := context.Background()
	for range 10 {
		if _, o, err := c.Get(ctx, "bad", load); !errors.Is(err, errNotFound) || (o != Negative) {
			t.Fatalf("got %v %v; want negative not found", o, err)
		}
	}
	if n := loads.Load(); n != 1 {
		t.Errorf("loads = %d; want 1 while the negative entry lives", n)
	}
	clk.Add(6 * time.Second)
	c.Get(ctx, "bad", load)
	if n := loads.Load(); n != 2 {
		t.Errorf("loads = %d; want 2 after NegativeTTL", n)
	}

	// Other errors are not cached.
	var fails atomic.Int32
	failing := func(context.Context) (string, error) { fails.Add(1); return "", errors.New("timeout") }
	c.Get(ctx, "x", failing)
	c.Get(ctx, "x", failing)
	if n := fails.Load(); n != 2 {
		t.Errorf("failing loads = %d; want 2 (failures are not cached)", n)
	}
}

func TestBoundedSize(t *testing.T) {
	c := New[int](Options{Size: 3})
	ctx := context.Background()
	for i := range 10 {
		c.Get(ctx, fmt.Sprint(i), func(context.Context) (int, error) { return i, nil })
	}
	if s := c.Stats(); s.Size != 3 {
		t.Errorf("size = %d; want 3", s.Size)
	}
	if _, o, _ := c.Get(ctx, "9", func(context.Context) (int, error) { return -1, nil }); o != Hit {
		t.Errorf("most recent entry evicted: %v", o)
	}
	if v, o, _ := c.Get(ctx, "0", func(context.Context) (int, error) { return -1, nil }); o != Miss || v != -1 {
		t.Errorf("oldest entry kept: %v %v", v, o)
	}
}

func TestCallerGivingUpDoesNotFailOthers(t *testing.T) {
	c := New[string](Options{})
	release := make(chan struct{})
	load := func(ctx context.Context) (string, error) {
		select {
		case <-release:
			return "v", nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	impatient, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { _, _, err := c.Get(impatient, "k", load); done <- err }()
	time.Sleep(20 * time.Millisecond)
	patient := make(chan string)
	go func() { v, _, _ := c.Get(context.Background(), "k", load); patient <- v }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("impatient caller err = %v; want canceled", err)
	}
	close(release)
	if v := <-patient; v != "v" {
		t.Errorf("patient caller got %q; want v", v)
	}
}

// TestLoaderPanic: a loader that panics, on a miss and on a background
// refresh, fails its load with a *PanicError and tells OnPanic; the
// process (this test binary) lives on and the cache keeps serving.
func TestLoaderPanic(t *testing.T) {
	clk := &clock{now: time.Unix(1000, 0)}
	var panics atomic.Int32
	c := New[string](Options{TTL: time.Second, Now: clk.Now, OnPanic: func(key string, v any, stack []byte) {
		if key != "k" || v != "boom" || len(stack) == 0 {
			t.Errorf("OnPanic(%q, %v, %d bytes of stack)", key, v, len(stack))
		}
		panics.Add(1)
	}})
	boom := func(context.Context) (string, error) { panic("boom") }
	_, _, err := c.Get(context.Background(), "k", boom)
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Value != "boom" {
		t.Fatalf("Get with a panicking loader: %v; want a *PanicError", err)
	}
	if v, _, err := c.Get(context.Background(), "k", func(context.Context) (string, error) { return "v", nil }); v != "v" || err != nil {
		t.Fatalf("Get after the panic = %q, %v", v, err)
	}
	clk.Add(2 * time.Second) // stale: the refresh runs in the background and panics
	if v, o, _ := c.Get(context.Background(), "k", boom); v != "v" || o != Stale {
		t.Fatalf("stale Get = %q %v; want the stale value", v, o)
	}
	deadline := time.Now().Add(5 * time.Second)
	for panics.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := panics.Load(); got != 2 {
		t.Errorf("OnPanic told %d times; want 2", got)
	}
}

// TestNegativeFloodKeepsValues: negative answers have a bound of their
// own, so any number of them evicts no value.
func TestNegativeFloodKeepsValues(t *testing.T) {
	notFound := errors.New("not found")
	c := New[string](Options{Size: 2, NegativeSize: 3, IsNegative: func(err error) bool { return err == notFound }})
	ctx := context.Background()
	c.Get(ctx, "valid", func(context.Context) (string, error) { return "v", nil })
	for i := range 1000 {
		c.Get(ctx, fmt.Sprint("unknown-", i), func(context.Context) (string, error) { return "", notFound })
	}
	v, o, err := c.Get(ctx, "valid", func(context.Context) (string, error) { return "", errors.New("loaded again") })
	if v != "v" || o != Hit || err != nil {
		t.Errorf("valid after the flood: %q %v %v; want a hit", v, o, err)
	}
	if _, o, err := c.Get(ctx, "unknown-999", func(context.Context) (string, error) { return "", errors.New("loaded again") }); o != Negative || err != notFound {
		t.Errorf("latest unknown: %v %v; want a negative hit", o, err)
	}
}

// TestMaxCost: values weighed by Cost are held within MaxCost, the least
// recently used evicted first; a value over MaxCost alone is returned
// but not kept; a replaced value's cost is not counted twice.
func TestMaxCost(t *testing.T) {
	c := New[string](Options{Size: 100, MaxCost: 10, Cost: func(v any) int64 { return int64(len(v.(string))) }})
	ctx := context.Background()
	get := func(key, value string) (string, Outcome) {
		v, o, err := c.Get(ctx, key, func(context.Context) (string, error) { return value, nil })
		if err != nil {
			t.Fatal(err)
		}
		return v, o
	}
	get("a", "aaaa")
	get("b", "bbbb")
	if c.Cost() != 8 {
		t.Fatalf("cost %d; want 8", c.Cost())
	}
	get("a", "") // a is now the most recently used
	get("c", "cccc")
	if _, o := get("b", "r"); o != Miss {
		t.Errorf("b after c pushed the cost over: %v; want it evicted (a miss)", o)
	}
	if v, o := get("a", "x"); v != "aaaa" || o != Hit {
		t.Errorf("a: %q %v; want the kept value", v, o)
	}
	if v, _ := get("big", "01234567890"); v != "01234567890" {
		t.Errorf("big value not returned: %q", v)
	}
	if _, o := get("big", "small"); o != Miss {
		t.Errorf("a value over MaxCost was kept (%v)", o)
	}
	if c.Cost() > 10 {
		t.Errorf("cost %d over MaxCost 10", c.Cost())
	}
}

// A load that read the database before an invalidation must not put
// back what was invalidated: the change feed's Remove would otherwise
// lose to a refresh that was under way, for a whole (long) TTL.
func TestRemoveDuringLoadKeepsNothing(t *testing.T) {
	clk := &clock{now: time.Unix(0, 0)}
	c := newCache(clk)
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		v, _, err := c.Get(context.Background(), "k", func(context.Context) (string, error) {
			close(started)
			<-release
			return "revoked-but-read-before", nil
		})
		if err != nil || v != "revoked-but-read-before" {
			t.Errorf("Get = %q, %v; the caller that started the load gets what it read", v, err)
		}
	}()
	<-started
	c.Remove("k")
	close(release)
	<-done
	v, o, _ := c.Get(context.Background(), "k", func(context.Context) (string, error) { return "fresh", nil })
	if v != "fresh" || o != Miss {
		t.Errorf("after Remove during a load: Get = %q (%v); want fresh (miss)", v, o)
	}
}

func TestRemoveIfAndPurge(t *testing.T) {
	c := newCache(&clock{now: time.Unix(0, 0)})
	for _, k := range []string{"a1", "a2", "b1"} {
		c.Get(context.Background(), k, func(context.Context) (string, error) { return "v" + k, nil })
	}
	if n := c.RemoveIf(func(k, v string) bool { return v[1] == 'a' }); n != 2 {
		t.Errorf("RemoveIf removed %d; want 2", n)
	}
	if _, o, _ := c.Get(context.Background(), "b1", nil); o != Hit {
		t.Errorf("b1: %v; want a hit, RemoveIf left it", o)
	}
	c.Purge()
	if st := c.Stats(); st.Size != 0 {
		t.Errorf("size %d after Purge", st.Size)
	}
}

// SetShortTTL makes entries older than the short TTL stale (served while
// refreshed), and 0 gives them back their TTL.
func TestShortTTL(t *testing.T) {
	clk := &clock{now: time.Unix(0, 0)}
	c := newCache(clk) // TTL 1 min
	var loads atomic.Int32
	load := func(context.Context) (string, error) { loads.Add(1); return "v", nil }
	c.Get(context.Background(), "k", load)
	clk.Add(20 * time.Second)
	if _, o, _ := c.Get(context.Background(), "k", load); o != Hit {
		t.Fatalf("20 s old: %v; want hit", o)
	}
	c.SetShortTTL(10 * time.Second)
	if _, o, _ := c.Get(context.Background(), "k", load); o != Stale {
		t.Errorf("20 s old under a 10 s short TTL: %v; want stale", o)
	}
	wait.Until(context.Background(), 5*time.Second, func() bool { return loads.Load() == 2 })
	if n := loads.Load(); n != 2 {
		t.Errorf("loads = %d; want a refresh", n)
	}
	c.SetShortTTL(0)
	clk.Add(30 * time.Second)
	if _, o, _ := c.Get(context.Background(), "k", load); o != Hit {
		t.Errorf("back on TTL, 30 s after the refresh: %v; want hit", o)
	}
}

// With Jitter, values loaded at the same time expire over the last part
// of the TTL, not at once.
func TestJitterSpreadsExpiry(t *testing.T) {
	clk := &clock{now: time.Unix(0, 0)}
	c := New[string](Options{TTL: 100 * time.Second, Jitter: 0.5, Now: clk.Now})
	for i := range 200 {
		c.Get(context.Background(), fmt.Sprint(i), func(context.Context) (string, error) { return "v", nil })
	}
	fresh := func() (n int) {
		for i := range 200 {
			if _, o, _ := c.Get(context.Background(), fmt.Sprint(i), nil); o == Hit {
				n++
			}
		}
		return n
	}
	clk.Add(49 * time.Second)
	if n := fresh(); n != 200 {
		t.Errorf("%d of 200 fresh at 49 s; want all (jitter takes at most half of 100 s)", n)
	}
	clk.Add(26 * time.Second)
	if n := fresh(); n < 20 || n > 180 {
		t.Errorf("%d of 200 fresh at 75 s; want about half", n)
	}
}
