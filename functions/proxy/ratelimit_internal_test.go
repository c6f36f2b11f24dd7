package proxy

import (
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

func TestBucket(t *testing.T) {
	l := tenant.RateLimit{PerSecond: 2, Burst: 3}
	var b bucket
	now := time.Unix(1000, 0).UnixNano()
	for i := range 3 {
		if ok, _ := b.take(now, l); !ok {
			t.Fatalf("take %d of the burst refused", i+1)
		}
	}
	ok, wait := b.take(now, l)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("beyond the burst: %v, wait %v; want refused, 500ms", ok, wait)
	}
	if ok, _ := b.take(now+int64(500*time.Millisecond), l); !ok {
		t.Errorf("a token 500 ms later at 2/s refused")
	}
	if b.full(now + int64(time.Second)) {
		t.Errorf("full 1 s later; 1.5 s needed to refill 3 at 2/s")
	}
	if !b.full(now + int64(2*time.Second)) {
		t.Errorf("not full 2 s later")
	}
}

// The limit costs a request no allocation, limited or not.
func TestRateLimitedAllocatesNothing(t *testing.T) {
	h := &Handler{opts: Options{Now: time.Now}}
	key := &tenant.Key{ID: "k", RateLimit: tenant.RateLimit{PerSecond: 1e6, Burst: 1e6}}
	v := &view{inst: &tenant.Instance{ID: "i", RateLimit: tenant.RateLimit{PerSecond: 1e6, Burst: 1e6}}}
	h.rateLimited(key, v)
	if n := testing.AllocsPerRun(1000, func() {
		if e := h.rateLimited(key, v); e != nil {
			t.Fatal(e.message)
		}
	}); n != 0 {
		t.Errorf("%v allocations per limited request; want 0", n)
	}
}

func BenchmarkRateLimited(b *testing.B) {
	h := &Handler{opts: Options{Now: time.Now}}
	key := &tenant.Key{ID: "k", RateLimit: tenant.RateLimit{PerSecond: 1e9, Burst: 1e9}}
	v := &view{inst: &tenant.Instance{ID: "i"}}
	b.ReportAllocs()
	for b.Loop() {
		h.rateLimited(key, v)
	}
}
