package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/internal/demo"
	"mcpproxy.dev/mcpproxy/internal/demo/demotest"
)

func TestHistogram(t *testing.T) {
	var h histogram
	// 1..10000 µs, once each: the q-quantile is q·10000 µs.
	for us := 1; us <= 10000; us++ {
		h.record(time.Duration(us) * time.Microsecond)
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		got, want := float64(h.quantile(q).Microseconds()), q*10000
		if got < want*0.98 || got > want*1.02 {
			t.Errorf("quantile(%v) = %v µs; want %v ± 2 %%", q, got, want)
		}
	}
	if got := h.quantile(1); got != 10*time.Millisecond {
		t.Errorf("max = %v; want 10ms", got)
	}
	for _, us := range []uint64{0, 1, 127, 128, 129, 1000, 1 << 20, 1<<40 + 12345, 1<<63 + 1} {
		i := bucketOf(us)
		if i < 0 || i >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d out of range", us, i)
		}
		if v := bucketValue(i); float64(v) < float64(us)*0.98 || float64(v) > float64(us)*1.02+1 {
			t.Errorf("bucket of %d µs stands for %d µs", us, v)
		}
	}
	var empty histogram
	if empty.quantile(0.5) != 0 {
		t.Error("an empty histogram has a median")
	}
}

// upstream serves the demo server, counting requests that carry the key.
func upstream(t *testing.T, key string) (*httptest.Server, *atomic.Int64) {
	h := demotest.Handler("")
	var keyed atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer "+key {
			keyed.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &keyed
}

func TestLoad(t *testing.T) {
	srv, keyed := upstream(t, "k-123")
	keyFile := filepath.Join(t.TempDir(), "key")
	os.WriteFile(keyFile, []byte("k-123\n"), 0o600)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"--url", srv.URL, "--key-file", keyFile, "--clients", "4",
		"--requests", "200", "--mix", "call=3,list=1", "--json"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, errOut.String(), out.String())
	}
	var r report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out.String())
	}
	if r.Requests != 200 || r.Errors != 0 || r.ByKind[opCall] != 150 || r.ByKind[opList] != 50 {
		t.Errorf("report = %+v; want 200 requests, 150 calls, 50 lists, no error", r)
	}
	l := r.LatencyMS
	if !(l.P50 > 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
		t.Errorf("latencies out of order: %+v", l)
	}
	if r.PerSecond <= 0 || r.Clients != 4 {
		t.Errorf("report = %+v", r)
	}
	if keyed.Load() < 200 {
		t.Errorf("only %d upstream requests carried the key", keyed.Load())
	}
}

func TestLoadErrorsAndDuration(t *testing.T) {
	srv, _ := upstream(t, "")
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"--url", srv.URL, "--clients", "2", "--duration", "300ms",
		"--tool", "fail", "--args", `{"message":"no"}`, "--warmup", "0"}, &out, &errOut)
	if code != 1 {
		t.Errorf("exit %d with failing calls; want 1", code)
	}
	if !strings.Contains(out.String(), "tool error (isError)") || !strings.Contains(out.String(), "requests") {
		t.Errorf("text report lacks the error kind:\n%s", out.String())
	}
	out.Reset()
	code = run(context.Background(), []string{"--url", srv.URL, "--requests", "3", "--tool", "nope", "--json"}, &out, &errOut)
	var r report
	json.Unmarshal(out.Bytes(), &r)
	if code != 1 || r.Errors != 3 || r.ErrorKinds["json-rpc -32602"] != 3 {
		t.Errorf("unknown tool: exit %d, report %+v; want 3 errors of kind json-rpc -32602", code, r)
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--url", "http://x", "--clients", "0"},
		{"--url", "http://x", "--mix", "call=x"},
		{"--url", "http://x", "--mix", "read=1"},
		{"--url", "http://x", "--mix", "call=0"},
		{"--url", "http://x", "--args", "[1]"},
		{"--url", "http://x", "--key-file", "/nonexistent/key"},
		{"--url", "http://x", "extra"},
		{"--url", "http://x", "--watch", "abc"},
		{"--url", "http://x", "--watch", "2147483647"},
	} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "mcpload:") {
			t.Errorf("%v: exit %d, stderr %q; want 2 and a reason", args, code, errOut.String())
		}
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--url", "http://127.0.0.1:1/mcp", "--requests", "1"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "connect to") {
		t.Errorf("unreachable URL: exit %d, stderr %q", code, errOut.String())
	}
}

// TestWatch reads this test's own process, which serves the upstream and
// runs the clients, so it certainly spends CPU time on the requests.
func TestWatch(t *testing.T) {
	srv, _ := upstream(t, "")
	var out, errOut bytes.Buffer
	pid := os.Getpid()
	code := run(context.Background(), []string{"--url", srv.URL, "--clients", "2", "--requests", "300",
		"--watch", strconv.Itoa(pid), "--json"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var r report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Processes) != 1 {
		t.Fatalf("processes = %+v; want one", r.Processes)
	}
	p := r.Processes[0]
	if p.PID != pid || p.Name == "" || p.CPUMs <= 0 || p.CPUUsPerRequest <= 0 || math.Abs(p.CPUUsPerRequest-p.CPUMs*1000/300) > 0.01 {
		t.Errorf("figures = %+v; want this process's CPU time, spread over 300 requests", p)
	}
	if p.RSSMaxMiB <= 0 || p.RSSPeakMiB <= 0 {
		t.Errorf("figures = %+v; want a resident set and a peak", p)
	}
	out.Reset()
	run(context.Background(), []string{"--url", srv.URL, "--requests", "10", "--watch", strconv.Itoa(pid)}, &out, &errOut)
	if !strings.Contains(out.String(), fmt.Sprintf("process %d (", pid)) {
		t.Errorf("text report lacks the process:\n%s", out.String())
	}
}

// TestRaw drives a sessionless upstream with plain HTTP clients of both
// protocol epochs: no initialize, one connection per client, the
// 2026-07-28 headers only from a 2026-07-28 client.
func TestRaw(t *testing.T) {
	server := demo.NewServer("")
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, &mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true})
	var mu sync.Mutex
	seen := map[string]int{} // "version method name" → requests
	conns := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get("MCP-Protocol-Version")+" "+r.Header.Get("Mcp-Method")+" "+r.Header.Get("Mcp-Name")+" "+r.Header.Get("Authorization")]++
		conns[r.RemoteAddr] = true
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Setenv("MCP_PROXY_KEY", "k-9")
	for _, version := range []string{"2025-06-18", "2026-07-28"} {
		clear(seen)
		clear(conns)
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"--url", srv.URL, "--raw", "--protocol", version, "--clients", "3",
			"--requests", "120", "--mix", "call=3,list=1", "--warmup", "2", "--json"}, &out, &errOut)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s %s", version, code, errOut.String(), out.String())
		}
		var r report
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if r.Requests != 120 || r.Errors != 0 || r.ByKind[opCall] != 90 || r.ByKind[opList] != 30 || !r.Raw {
			t.Errorf("%s: report = %+v; want 120 requests, 90 calls, 30 lists, no error", version, r)
		}
		want := map[string]int{version + "   Bearer k-9": 126} // 3 × 2 warm-up calls too
		if version == "2026-07-28" {
			want = map[string]int{version + " tools/call echo Bearer k-9": 96, version + " tools/list  Bearer k-9": 30}
		}
		if fmt.Sprint(seen) != fmt.Sprint(want) {
			t.Errorf("%s: requests by headers = %v; want %v", version, seen, want)
		}
		if len(conns) != 3 {
			t.Errorf("%s: %d connections; want one per client, 3", version, len(conns))
		}
	}
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"--url", srv.URL, "--raw", "--protocol", "2026-07-28", "--requests", "4",
		"--tool", "fail", "--warmup", "0", "--json"}, &out, &errOut)
	var r report
	json.Unmarshal(out.Bytes(), &r)
	if code != 1 || r.ErrorKinds["tool error (isError)"] != 4 {
		t.Errorf("failing tool: exit %d, report %+v; want 4 tool errors", code, r)
	}
	notFound := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notFound.Close)
	out.Reset()
	code = run(context.Background(), []string{"--url", notFound.URL, "--raw", "--protocol", "2025-06-18", "--requests", "2",
		"--warmup", "0", "--json"}, &out, &errOut)
	r = report{}
	json.Unmarshal(out.Bytes(), &r)
	if code != 1 || r.ErrorKinds["http 404"] != 2 {
		t.Errorf("no JSON-RPC answer: exit %d, report %+v; want 2 errors of kind http 404", code, r)
	}
}
