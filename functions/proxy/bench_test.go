package proxy_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/functions/proxy/oauth"
	"mcpproxy.dev/mcpproxy/internal/demo"
	"mcpproxy.dev/mcpproxy/internal/firestoretest"
	"mcpproxy.dev/mcpproxy/internal/stack"
	"mcpproxy.dev/mcpproxy/internal/testenv"
	"mcpproxy.dev/mcpproxy/shared/logbuffer"
	"mcpproxy.dev/mcpproxy/shared/logging"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/upstream"
)

// BenchmarkToolsCall measures one tools/call (the demo echo tool) straight
// to a stateless upstream, through a bare httputil.ReverseProxy and through
// the proxy (warm: key, config and upstream session cached; with its
// request log written to the Firestore emulator, and without), at 1 and 80
// concurrent clients, all in one run against one upstream, so the ratios
// between targets are measured under the same conditions. Besides ns/op it
// reports the
// latency percentiles p50-ms and p99-ms and the process's CPU time per
// call, cpu-us/op.
//
//	make bench-proxy
func BenchmarkToolsCall(b *testing.B) {
	server := demo.NewServer("bench")
	up := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server },
		&mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true}))
	defer up.Close()

	target, _ := url.Parse(up.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 100, MaxIdleConns: 1000}
	bare := httptest.NewServer(rp)
	defer bare.Close()

	// The proxy keeps its request log as deployed: entries buffered and
	// written to Firestore (the emulator) in batches.
	requestLog := logbuffer.New(&logbuffer.Firestore{Client: firestoretest.Client(b, firestoretest.Host(b)), Collection: firestoretest.Collection(b)},
		logbuffer.Options{})
	quiet := logging.New(io.Discard, slog.LevelWarn)
	// The proxy asks this upstream for 2026-07-28, the version every
	// target's client speaks below (make bench measures the default).
	e := testenv.New(b, testenv.Options{Logger: quiet, Proxy: proxy.Options{RequestLog: requestLog}, OAuth: &oauth.Options{AccessTTL: time.Hour},
		Pool: upstream.PoolOptions{ProtocolVersion: "2026-07-28"},
		Tenant: stack.Tenant{Organization: "bench", Instance: "bench", Servers: []stack.Server{{
			Server: postgres.Server{Name: "demo", Transport: tenant.TransportStreamableHTTP, URL: up.URL}, Tools: []postgres.Tool{{Name: "echo"}}}}}})
	key, queries, prx := e.Key, e.Queries, e.Proxy
	// An OAuth access token for /mcp, by the authorization code flow.
	client := register(b, prx.URL, "http://127.0.0.1/callback")
	access := grant(b, e, client, "http://127.0.0.1/callback", "/mcp", key).access
	// The same proxy without a request log shows what the log costs.
	nolog := e.Process(b, testenv.Options{Logger: quiet}).Proxy

	// Every target gets the call as a 2026-07-28 client sends it, the
	// version the proxy itself speaks with this upstream here, so that the
	// upstream does the same work per call whoever asks.
	call := func(name string) []byte {
		return fmt.Appendf(nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":%q,"arguments":{"text":"hello"},`+
			`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`, name)
	}
	headers := func(name string, extra ...string) http.Header {
		h := http.Header{"Mcp-Protocol-Version": {"2026-07-28"}, "Mcp-Method": {"tools/call"}, "Mcp-Name": {name}}
		for i := 0; i+1 < len(extra); i += 2 {
			h.Set(extra[i], extra[i+1])
		}
		return h
	}
	targets := []struct {
		name, url string
		body      []byte
		header    http.Header
	}{
		{"direct", up.URL, call("echo"), headers("echo")},
		{"reverseproxy", bare.URL, call("echo"), headers("echo")},
		{"proxy", prx.URL + "/mcp", call("demo__echo"), headers("demo__echo", "Authorization", "Bearer "+key)},
		{"proxy-nolog", nolog.URL + "/mcp", call("demo__echo"), headers("demo__echo", "Authorization", "Bearer "+key)},
		// The same proxy with an access token instead of the key.
		{"proxy-token", prx.URL + "/mcp", call("demo__echo"), headers("demo__echo", "Authorization", "Bearer "+access)},
	}
	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 200, MaxIdleConns: 1000}}
	do := func(b *testing.B, url string, body []byte, header http.Header) {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Contains(out, []byte("hello")) {
			b.Fatalf("HTTP %d: %s", resp.StatusCode, out)
		}
	}
	for _, tg := range targets {
		do(b, tg.url, tg.body, tg.header) // warm caches and connections
	}
	for _, clients := range []int{1, 80} {
		for _, tg := range targets {
			b.Run(fmt.Sprintf("clients=%d/%s", clients, tg.name), func(b *testing.B) {
				var mu sync.Mutex
				var lat []time.Duration
				queries.Reset()
				log0 := requestLog.Stats()
				cpu0 := processCPU()
				b.SetParallelism(max(1, clients/max(1, testingProcs())))
				if clients == 1 {
					for b.Loop() {
						t0 := time.Now()
						do(b, tg.url, tg.body, tg.header)
						lat = append(lat, time.Since(t0))
					}
				} else {
					b.RunParallel(func(pb *testing.PB) {
						var mine []time.Duration
						for pb.Next() {
							t0 := time.Now()
							do(b, tg.url, tg.body, tg.header)
							mine = append(mine, time.Since(t0))
						}
						mu.Lock()
						lat = append(lat, mine...)
						mu.Unlock()
					})
				}
				// Client and upstream do the same work per call for every
				// target, so cpu-us/op minus direct's is the CPU time the
				// proxy or the reverse proxy adds to a call.
				b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
				if tg.name == "proxy" || tg.name == "proxy-token" {
					// Statements sent to Postgres and batch documents
					// written to Firestore, per call.
					log1 := requestLog.Stats()
					b.ReportMetric(float64(queries.Count())/float64(b.N), "pg-queries/op")
					b.ReportMetric(float64(log1.Batches-log0.Batches)/float64(b.N), "fs-writes/op")
					if log1.Dropped > 0 {
						b.Fatalf("the request log dropped %d entries", log1.Dropped)
					}
				}
				slices.Sort(lat)
				if len(lat) > 0 {
					b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
					b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
				}
			})
		}
	}
}

// processCPU is the CPU time (user and system) the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// testingProcs is GOMAXPROCS, by which RunParallel multiplies its
// parallelism.
func testingProcs() int { return runtime.GOMAXPROCS(0) }
