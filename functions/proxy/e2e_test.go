package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/internal/stack"
	"mcpproxy.dev/mcpproxy/internal/testenv"
	"mcpproxy.dev/mcpproxy/internal/wait"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// acme is the tenant of newEnv: instance main of Acme over two demo
// upstreams, alpha and beta, reached with a header credential.
func acme() stack.Tenant {
	headers := tenant.Credentials{Headers: map[string]string{"X-Upstream-Key": "upstream-secret"}}
	return stack.Tenant{Servers: []stack.Server{
		{Server: postgres.Server{Name: "Alpha", Transport: tenant.TransportStreamableHTTP},
			Credentials: headers, Select: []string{"echo", "add"}},
		{Server: postgres.Server{Name: "Beta", Transport: tenant.TransportStreamableHTTP},
			Credentials: headers, Select: []string{"echo", "slow", "fail"}},
	}}
}

// newEnv is a proxy with opts in front of acme's upstreams.
func newEnv(t *testing.T, opts proxy.Options) *testenv.Env {
	t.Helper()
	return testenv.New(t, testenv.Options{Tenant: acme(), Proxy: opts})
}

// protocols are the client protocol versions the SDK-client tests run
// under: the stateless 2026-07-28 (server/discover, per-request _meta and
// headers) and the latest with an initialize handshake.
var protocols = []string{"2026-07-28", "2025-11-25"}

// forEachProtocol runs f as a subtest per protocol version.
func forEachProtocol(t *testing.T, f func(t *testing.T, version string)) {
	for _, v := range protocols {
		t.Run(v, func(t *testing.T) { f(t, v) })
	}
}

func toolNames(t *testing.T, s *mcp.ClientSession) []string {
	t.Helper()
	res, err := s.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
	}
	slices.Sort(names)
	return names
}

func text(t *testing.T, res *mcp.CallToolResult) string {
	t.Helper()
	if len(res.Content) == 0 {
		t.Fatal("result has no content")
	}
	tc, ok := res.Content[0].(*mcp.TextContent)
	if !ok {
		t.Fatalf("content is %T; want text", res.Content[0])
	}
	return tc.Text
}

func TestMergedFilteredTools(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, version string) {
		e := newEnv(t, proxy.Options{})
		s := e.Client(t, "/mcp", e.Key, version, nil)
		want := []string{"alpha__add", "alpha__echo", "beta__echo", "beta__fail", "beta__slow"}
		if got := toolNames(t, s); !slices.Equal(got, want) {
			t.Errorf("tools = %v; want %v", got, want)
		}
		if got := s.InitializeResult().ServerInfo.Name; got != "mcp-proxy" {
			t.Errorf("server name = %q", got)
		}
		// The same through /mcp/{instanceId}.
		s2 := e.Client(t, "/mcp/"+e.Seeded.Instance.ID, e.Key, version, nil)
		if got := toolNames(t, s2); !slices.Equal(got, want) {
			t.Errorf("tools on /mcp/{id} = %v; want %v", got, want)
		}
	})
}

func TestRoutedCalls(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, version string) {
		e := newEnv(t, proxy.Options{})
		s := e.Client(t, "/mcp", e.Key, version, nil)
		ctx := context.Background()

		res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "alpha__add", Arguments: map[string]any{"a": 2, "b": 3}})
		if err != nil {
			t.Fatal(err)
		}
		if sc, _ := json.Marshal(res.StructuredContent); string(sc) != `{"sum":5}` {
			t.Errorf("add structured = %s; want {\"sum\":5}", sc)
		}
		res, err = s.CallTool(ctx, &mcp.CallToolParams{Name: "beta__echo", Arguments: map[string]any{"text": "héllo"}})
		if err != nil || text(t, res) != "héllo" {
			t.Errorf("echo = %v, %v", res, err)
		}
		res, err = s.CallTool(ctx, &mcp.CallToolParams{Name: "beta__fail", Arguments: map[string]any{"message": "boom"}})
		if err != nil || !res.IsError || text(t, res) != "boom" {
			t.Errorf("fail = %+v, %v; want isError with boom", res, err)
		}
		for _, name := range []string{"alpha__large", "gamma__echo", "echo", "alpha__nope"} {
			_, err := s.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: map[string]any{}})
			var jerr *jsonrpc.Error
			if !errors.As(err, &jerr) || jerr.Code != jsonrpc.CodeInvalidParams {
				t.Errorf("call %s: err = %v; want -32602", name, err)
			}
		}
	})
}

func TestSingleUpstreamRoute(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, version string) {
		e := newEnv(t, proxy.Options{})
		s := e.Client(t, "/mcp/"+e.Seeded.Instance.ID+"/beta", e.Key, version, nil)
		if got, want := toolNames(t, s), []string{"echo", "fail", "slow"}; !slices.Equal(got, want) {
			t.Errorf("tools = %v; want %v (unprefixed, beta only)", got, want)
		}
		res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "x"}})
		if err != nil || text(t, res) != "x" {
			t.Errorf("echo = %v, %v", res, err)
		}
	})
}

func TestUpstreamDownLeavesTheRest(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, version string) {
		e := newEnv(t, proxy.Options{})
		s := e.Client(t, "/mcp", e.Key, version, nil)
		e.Demo["beta"].Stop()
		if got, want := toolNames(t, s), []string{"alpha__add", "alpha__echo"}; !slices.Equal(got, want) {
			t.Errorf("tools with beta down = %v; want %v", got, want)
		}
		_, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "beta__echo", Arguments: map[string]any{"text": "x"}})
		if err == nil || !strings.Contains(err.Error(), "beta") {
			t.Errorf("call to a down upstream: err = %v; want an error naming beta", err)
		}
		if !strings.Contains(e.Logs.String(), `"upstream":"beta"`) {
			t.Error("the failing upstream was not logged")
		}
	})
}

func TestUpstreamRestartRecovered(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, version string) {
		e := newEnv(t, proxy.Options{})
		s := e.Client(t, "/mcp", e.Key, version, nil)
		ctx := context.Background()
		call := func() error {
			_, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "alpha__echo", Arguments: map[string]any{"text": "again"}})
			return err
		}
		if err := call(); err != nil {
			t.Fatal(err)
		}
		// The restarted upstream no longer knows the proxy's session.
		e.Demo["alpha"].Stop()
		// A real restart takes longer than the proxy's HTTP transport
		// needs to see its idle keep-alive connections closed; without
		// this pause a call can be written to a just-closed connection,
		// which Go does not replay for a POST and the proxy does not retry
		// (a tools/call that may have reached the upstream is never sent
		// twice).
		time.Sleep(200 * time.Millisecond)
		e.Demo["alpha"].Start()
		if err := call(); err != nil {
			t.Fatalf("call after the upstream restarted: %v", err)
		}
		if got := toolNames(t, s); len(got) != 5 {
			t.Errorf("tools after restart = %v", got)
		}
	})
}

func TestDeadline(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, version string) {
		e := newEnv(t, proxy.Options{RequestTimeout: 500 * time.Millisecond})
		s := e.Client(t, "/mcp", e.Key, version, nil)
		start := time.Now()
		_, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "beta__slow", Arguments: map[string]any{"ms": 10000}})
		if err == nil || !strings.Contains(err.Error(), "beta did not answer") {
			t.Errorf("slow call: err = %v; want the deadline error naming beta", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("slow call took %v; want it cut at the deadline", d)
		}
		// Other upstreams are not slowed.
		res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "alpha__echo", Arguments: map[string]any{"text": "fast"}})
		if err != nil || text(t, res) != "fast" {
			t.Errorf("echo after a timeout = %v, %v", res, err)
		}
	})
}

// TestProgressRelayed: the upstream's progress notifications reach the
// client that asked for them, with its own token, even when two clients
// of one shared upstream session pick the same token at once.
func TestProgressRelayed(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, version string) {
		e := newEnv(t, proxy.Options{})
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				var mu sync.Mutex
				var got []float64
				s := e.Client(t, "/mcp", e.Key, version, &mcp.ClientOptions{
					ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
						mu.Lock()
						defer mu.Unlock()
						if req.Params.ProgressToken != "same-token" {
							t.Errorf("client %d: progress token %v; want its own", i, req.Params.ProgressToken)
						}
						got = append(got, req.Params.Progress)
					}})
				steps := 3 + i // the two calls report different step counts
				params := &mcp.CallToolParams{Name: "beta__slow", Arguments: map[string]any{"ms": 150, "steps": steps}}
				params.SetProgressToken("same-token")
				if _, err := s.CallTool(context.Background(), params); err != nil {
					t.Errorf("client %d: %v", i, err)
					return
				}
				// The SDK client hands notifications to the handler on
				// another goroutine than the result: let it catch up.
				wait.Until(context.Background(), 2*time.Second, func() bool {
					mu.Lock()
					defer mu.Unlock()
					return len(got) >= steps
				})
				mu.Lock()
				defer mu.Unlock()
				want := []float64{1, 2, 3, 4}[:steps]
				if !slices.Equal(got, want) {
					t.Errorf("client %d: progress %v; want %v", i, got, want)
				}
			})
		}
		wg.Wait()
	})
}

// progressCounts counts, by token, the progress notifications a go-sdk
// client receives.
type progressCounts struct {
	mu sync.Mutex
	n  map[any]int
}

// options are client options that count into p.
func (p *progressCounts) options() *mcp.ClientOptions {
	return &mcp.ClientOptions{ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.n == nil {
			p.n = map[any]int{}
		}
		p.n[req.Params.ProgressToken]++
	}}
}

// counts waits up to 2 s for notifications of tokens tokens (the SDK
// client hands them to the handler on another goroutine than results)
// and returns the counts.
func (p *progressCounts) counts(tokens int) map[any]int {
	seen := func() map[any]int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return maps.Clone(p.n)
	}
	wait.Until(context.Background(), 2*time.Second, func() bool { return len(seen()) >= tokens })
	return seen()
}

func rpcCode(out map[string]any) int {
	e, _ := out["error"].(map[string]any)
	c, _ := e["code"].(float64)
	return int(c)
}
