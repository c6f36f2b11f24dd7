package proxy_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/shared/postgres"
)

// TestQuotaAcrossProcesses runs three proxy processes (the dev server
// binary, request log batches written every second, CONFIG_POLL 1 s)
// behind a round-robin front, and FlushLogs (the dev server's
// /flushlogs) every 2 s as Cloud Scheduler would. A key with a daily
// quota of 20 calls is called about 10 times a second: once the flush
// has counted 20, every process refuses it, naming the quota and its
// reset. The calls answered beyond the quota stay within the lag the docs
// promise: rate × (LOG_BATCH_MAX_AGE + flush interval + CONFIG_POLL + 1 s).
func TestQuotaAcrossProcesses(t *testing.T) {
	e := newEnv(t, proxy.Options{})
	ctx := context.Background()
	const quota = 20
	urls := devservers(t, e, 3, "CONFIG_POLL=1s", "LOG_BATCH_MAX_AGE=1s")
	if err := e.DB.SetQuota(ctx, postgres.QuotaKey, e.Seeded.KeyID, postgres.Quota{PerDay: quota}); err != nil {
		t.Fatal(err)
	}
	var next atomic.Int64
	front := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		u, _ := url.Parse(urls[int(next.Add(1))%len(urls)])
		r.SetURL(u)
		r.Out.URL.Path = u.Path
	}})
	defer front.Close()
	flushURL := strings.TrimSuffix(urls[0], "/mcp") + "/flushlogs"
	stop := make(chan struct{})
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Second):
			}
			if resp, err := http.Post(flushURL, "application/json", nil); err == nil {
				resp.Body.Close()
			}
		}
	}()
	defer func() { close(stop); <-flushed }()

	// The devservers' start-up calls count too.
	answered := 3
	start := time.Now()
	var refusal map[string]any
	var refusedAt time.Duration
	for time.Since(start) < 30*time.Second {
		req, _ := http.NewRequest(http.MethodPost, front.URL, strings.NewReader(echoCall))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+e.Key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			answered++
			if refusal != nil {
				t.Errorf("answered after a refusal: a process still serves the key")
			}
		} else if resp.StatusCode == http.StatusTooManyRequests {
			if refusal == nil {
				json.Unmarshal(raw, &refusal)
				refusedAt = time.Since(start)
				if resp.Header.Get("Retry-After") == "" {
					t.Errorf("no Retry-After")
				}
			}
			if time.Since(start) > refusedAt+3*time.Second {
				break // every process has refused for a while
			}
		} else {
			t.Fatalf("HTTP %d: %s", resp.StatusCode, raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if refusal == nil {
		t.Fatalf("%d calls answered in 30 s, none refused over a daily quota of %d", answered, quota)
	}
	rpcErr, _ := refusal["error"].(map[string]any)
	data, _ := rpcErr["data"].(map[string]any)
	tomorrow := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour).Format(time.RFC3339)
	if rpcErr["code"] != float64(-32006) || data["reason"] != "quota_exceeded" || data["resetsAt"] != tomorrow ||
		!strings.Contains(rpcErr["message"].(string), "daily quota of this API key (20 calls) is used up; it resets at "+tomorrow) {
		t.Errorf("refusal %v; want -32006 naming the daily quota of the key and its reset", refusal)
	}
	const rate, lag = 10.0, 1 + 2 + 1 + 1 // calls a second; seconds: batch age, flush interval, CONFIG_POLL, slack
	t.Logf("daily quota %d: %d calls answered, the first refusal %v after the first call (promised at most %d)",
		quota, answered, refusedAt.Round(time.Millisecond), quota+int(rate*lag))
	if answered < quota || answered > quota+int(rate*lag) {
		t.Errorf("%d answered; want between the quota %d and %d", answered, quota, quota+int(rate*lag))
	}
	u, err := e.DB.QuotaUsage(ctx, postgres.QuotaKey, e.Seeded.KeyID)
	if err != nil || len(u.Blocks) != 1 || u.CallsToday < quota {
		t.Errorf("usage %+v, %v; want the calls counted and the key blocked", u, err)
	}
}
