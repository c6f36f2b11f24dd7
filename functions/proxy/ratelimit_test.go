package proxy_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/internal/testenv"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// Over a key's limit: 429, Retry-After, a JSON-RPC error saying which
// limit, and rate_limited in the log; an instance's limit holds across
// its keys.
func TestRateLimitRefuses(t *testing.T) {
	e := newEnv(t, proxy.Options{})
	ctx := context.Background()
	if err := e.DB.SetKeyRateLimit(ctx, e.Seeded.KeyID, tenant.RateLimit{PerSecond: 0.5, Burst: 3}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if resp, _ := e.Post(t, "/mcp", nil, echoCall); resp.StatusCode != http.StatusOK {
			t.Fatalf("call %d within the burst: %d", i+1, resp.StatusCode)
		}
	}
	resp, out := e.Post(t, "/mcp", nil, echoCall)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("beyond the burst: %d; want 429", resp.StatusCode)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "2" {
		t.Errorf("Retry-After %q; want 2 (a token every 2 s)", ra)
	}
	rpcErr, _ := out["error"].(map[string]any)
	data, _ := rpcErr["data"].(map[string]any)
	if rpcErr["code"] != float64(-32005) || data["reason"] != "rate_limited" || data["limit"] != "API key" ||
		!strings.Contains(rpcErr["message"].(string), "rate limit of this API key exceeded") {
		t.Errorf("error %v; want -32005 naming the API key's limit", out)
	}
	if !strings.Contains(e.Logs.String(), `"status":"rate_limited","httpStatus":429`) {
		t.Errorf("no rate_limited log line:\n%s", e.Logs.String())
	}

	// The instance's limit: two keys share it.
	if err := e.DB.SetInstanceRateLimit(ctx, e.Seeded.Instance.ID, tenant.RateLimit{PerSecond: 0.5, Burst: 2}); err != nil {
		t.Fatal(err)
	}
	p := e.Process(t, testenv.Options{}) // cold caches: the limits as set now
	_, k1, _ := e.DB.CreateAPIKey(ctx, e.Seeded.Instance.ID, "", "one", nil)
	_, k2, _ := e.DB.CreateAPIKey(ctx, e.Seeded.Instance.ID, "", "two", nil)
	codes := []int{}
	for _, k := range []string{k1, k2, k1, k2} {
		resp, _ := p.Post(t, "/mcp", map[string]string{"Authorization": "Bearer " + k}, echoCall)
		codes = append(codes, resp.StatusCode)
	}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 429 || codes[3] != 429 {
		t.Errorf("two keys under an instance limit of burst 2: %v; want 200 200 429 429", codes)
	}
}

// TestRateLimitAcrossProcesses runs three proxy processes (the dev server
// binary) behind a round-robin front, as Cloud Run spreads requests over
// instances, and floods one key limited to 5 a second, burst 5. Each
// process keeps its own bucket (docs/admin.md, "Rate limits"): what the
// key gets through is at least its limit and at most N times it,
// N × (burst + rate × t).
func TestRateLimitAcrossProcesses(t *testing.T) {
	e := newEnv(t, proxy.Options{})
	ctx := context.Background()
	const rate, burst, n = 5.0, 5, 3
	if err := e.DB.SetKeyRateLimit(ctx, e.Seeded.KeyID, tenant.RateLimit{PerSecond: rate, Burst: burst}); err != nil {
		t.Fatal(err)
	}
	// Started after the limit is set, with the key cold: devservers'
	// start-up call takes a token of each process's bucket.
	urls := devservers(t, e, n)
	var next atomic.Int64
	front := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		u, _ := url.Parse(urls[int(next.Add(1))%len(urls)])
		r.SetURL(u)
		r.Out.URL.Path = u.Path
	}})
	defer front.Close()

	time.Sleep(time.Duration(burst/rate*float64(time.Second)) + 100*time.Millisecond) // the start-up calls' tokens back
	const span = 3 * time.Second
	start := time.Now()
	var ok, limited, other atomic.Int64
	var badRetry atomic.Bool
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			for time.Since(start) < span {
				req, _ := http.NewRequest(http.MethodPost, front.URL, strings.NewReader(echoCall))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", "application/json, text/event-stream")
				req.Header.Set("Authorization", "Bearer "+e.Key)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					other.Add(1)
					continue
				}
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusTooManyRequests:
					limited.Add(1)
					if resp.Header.Get("Retry-After") == "" {
						badRetry.Store(true)
					}
				default:
					other.Add(1)
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start).Seconds()
	one := float64(burst) + rate*took
	t.Logf("%d processes, limit %.0f/s burst %d, %.1f s: %d answered, %d refused (one process's bound %.0f, the promised bound %.0f)",
		n, rate, burst, took, ok.Load(), limited.Load(), one, n*one)
	if got := float64(ok.Load()); got > n*one || got < one*0.9 {
		t.Errorf("%v answered; want between the limit (%.0f) and %d times it (%.0f)", got, one, n, n*one)
	}
	if limited.Load() == 0 || other.Load() > 0 || badRetry.Load() {
		t.Errorf("%d refused, %d other answers, Retry-After missing: %v; want refusals, each 429 with Retry-After", limited.Load(), other.Load(), badRetry.Load())
	}
}
