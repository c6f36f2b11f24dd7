package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/internal/demo/demotest"
	"mcpproxy.dev/mcpproxy/internal/logcapture"
	"mcpproxy.dev/mcpproxy/internal/pgtest"
	"mcpproxy.dev/mcpproxy/internal/stack"
	"mcpproxy.dev/mcpproxy/shared/logging"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/upstream"
)

// env is a proxy in front of two upstreams, with its database seeded.
type env struct {
	db        *postgres.DB
	counter   *pgtest.Counter
	alpha     *demotest.Upstream
	beta      *demotest.Upstream
	org       postgres.Organization
	inst      postgres.Instance
	key       string
	proxy     *httptest.Server
	handler   *proxy.Handler
	logs      *logcapture.Buffer
	alphaCfg  postgres.Config
	betaCfg   postgres.Config
	betaSrvID string
}

func newEnv(t *testing.T, opts proxy.Options) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{counter: &pgtest.Counter{}, logs: &logcapture.Buffer{}}
	e.db = pgtest.Open(t, e.counter)
	e.alpha = demotest.StartUpstream(t, "alpha")
	e.beta = demotest.StartUpstream(t, "beta")
	headers := tenant.Credentials{Headers: map[string]string{"X-Upstream-Key": "upstream-secret"}}
	seeded, err := stack.Seed(ctx, e.db, stack.Tenant{Organization: "Acme", Instance: "main", Key: "test", Servers: []stack.Server{
		{Server: postgres.Server{Name: "Alpha", Transport: tenant.TransportStreamableHTTP, URL: e.alpha.URL()},
			Credentials: headers, Select: []string{"echo", "add"}},
		{Server: postgres.Server{Name: "Beta", Transport: tenant.TransportStreamableHTTP, URL: e.beta.URL()},
			Credentials: headers, Select: []string{"echo", "slow", "fail"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	e.org, e.inst, e.key = seeded.Organization, seeded.Instance, seeded.Key
	e.alphaCfg, e.betaCfg, e.betaSrvID = seeded.Configs[0], seeded.Configs[1], seeded.Servers[1].ID
	e.startProxy(t, opts)
	return e
}

// instanceWith registers servers (each offering tools, all selected)
// with an empty config each, in an instance of the env's organization, and
// returns a key of that instance.
func (e *env) instanceWith(t *testing.T, name string, servers []postgres.Server, tools []string) string {
	t.Helper()
	ctx := context.Background()
	var rows []postgres.Tool
	for _, n := range tools {
		rows = append(rows, postgres.Tool{Name: n})
	}
	var selections []postgres.Selection
	for _, s := range servers {
		s.OrganizationID = e.org.ID
		created, err := e.db.CreateServer(ctx, s, rows)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := e.db.CreateConfig(ctx, e.org.ID, created.ID, "", tenant.Credentials{Env: map[string]string{"DEMO_REGION": "eu-" + tenant.Namespace(s.Name)}})
		if err != nil {
			t.Fatal(err)
		}
		selections = append(selections, postgres.Selection{ConfigID: cfg.ID, Tools: tools})
	}
	inst, err := e.db.CreateInstance(ctx, e.org.ID, "", name, selections)
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := e.db.CreateAPIKey(ctx, inst.ID, "", name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// startProxy serves a new Handler, with caches and upstream sessions of
// its own, over the env's database.
func (e *env) startProxy(t *testing.T, opts proxy.Options) {
	e.startProxyWith(t, opts, upstream.PoolOptions{})
}

// startProxyWith is startProxy with a pool of the given options.
func (e *env) startProxyWith(t *testing.T, opts proxy.Options, poolOpts upstream.PoolOptions) {
	pool := upstream.NewPool(poolOpts)
	t.Cleanup(pool.Close)
	e.handler = proxy.New(e.db, pool, logging.New(e.logs, slog.LevelDebug), opts)
	e.proxy = httptest.NewServer(e.handler)
	t.Cleanup(e.proxy.Close)
}

// newEnvSharing is a second proxy process over the same database: a cold
// cache that sees what the first one cached before.
func newEnvSharing(t *testing.T, e *env) *env {
	e2 := *e
	e2.logs = &logcapture.Buffer{}
	e2.startProxy(t, proxy.Options{})
	return &e2
}

func decodeJSON(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("decode answer: %v", err)
	}
}

// headerRT adds a header to every request of an MCP client.
type headerRT struct{ key, value string }

func (h headerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(h.key, h.value)
	return http.DefaultTransport.RoundTrip(r)
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

// client connects a real go-sdk MCP client to a proxy path with a key,
// speaking the given protocol version.
func (e *env) client(t *testing.T, path, key, version string) *mcp.ClientSession {
	t.Helper()
	return e.clientWith(t, path, key, version, nil)
}

// clientWith is client with client options (notification handlers).
func (e *env) clientWith(t *testing.T, path, key, version string, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	transport := &mcp.StreamableClientTransport{Endpoint: e.proxy.URL + path,
		HTTPClient: &http.Client{Transport: headerRT{"Authorization", "Bearer " + key}}, MaxRetries: -1}
	s, err := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, opts).Connect(context.Background(), transport,
		&mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("connect to the proxy: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if got := s.InitializeResult().ProtocolVersion; got != version {
		t.Fatalf("negotiated %s; want %s", got, version)
	}
	return s
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
		s := e.client(t, "/mcp", e.key, version)
		want := []string{"alpha__add", "alpha__echo", "beta__echo", "beta__fail", "beta__slow"}
		if got := toolNames(t, s); !slices.Equal(got, want) {
			t.Errorf("tools = %v; want %v", got, want)
		}
		if got := s.InitializeResult().ServerInfo.Name; got != "mcp-proxy" {
			t.Errorf("server name = %q", got)
		}
		// The same through /mcp/{instanceId}.
		s2 := e.client(t, "/mcp/"+e.inst.ID, e.key, version)
		if got := toolNames(t, s2); !slices.Equal(got, want) {
			t.Errorf("tools on /mcp/{id} = %v; want %v", got, want)
		}
	})
}

func TestRoutedCalls(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, version string) {
		e := newEnv(t, proxy.Options{})
		s := e.client(t, "/mcp", e.key, version)
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
		s := e.client(t, "/mcp/"+e.inst.ID+"/beta", e.key, version)
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
		s := e.client(t, "/mcp", e.key, version)
		e.beta.Stop()
		if got, want := toolNames(t, s), []string{"alpha__add", "alpha__echo"}; !slices.Equal(got, want) {
			t.Errorf("tools with beta down = %v; want %v", got, want)
		}
		_, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "beta__echo", Arguments: map[string]any{"text": "x"}})
		if err == nil || !strings.Contains(err.Error(), "beta") {
			t.Errorf("call to a down upstream: err = %v; want an error naming beta", err)
		}
		if !strings.Contains(e.logs.String(), `"upstream":"beta"`) {
			t.Error("the failing upstream was not logged")
		}
	})
}

func TestUpstreamRestartRecovered(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, version string) {
		e := newEnv(t, proxy.Options{})
		s := e.client(t, "/mcp", e.key, version)
		ctx := context.Background()
		call := func() error {
			_, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "alpha__echo", Arguments: map[string]any{"text": "again"}})
			return err
		}
		if err := call(); err != nil {
			t.Fatal(err)
		}
		// The restarted upstream no longer knows the proxy's session.
		e.alpha.Stop()
		// A real restart takes longer than the proxy's HTTP transport
		// needs to see its idle keep-alive connections closed; without
		// this pause a call can be written to a just-closed connection,
		// which Go does not replay for a POST and the proxy does not retry
		// (a tools/call that may have reached the upstream is never sent
		// twice).
		time.Sleep(200 * time.Millisecond)
		e.alpha.Start()
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
		s := e.client(t, "/mcp", e.key, version)
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
				s := e.clientWith(t, "/mcp", e.key, version, &mcp.ClientOptions{
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
				for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
					mu.Lock()
					n := len(got)
					mu.Unlock()
					if n >= steps {
						break
					}
				}
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

// TestProgressStreamOrder reads the event stream of a call as it comes
// off the wire: every progress notification, with the client's token,
// before the result, which ends the stream. A client that does not take
// an event stream gets the plain JSON result.
func TestProgressStreamOrder(t *testing.T) {
	e := newEnv(t, proxy.Options{})
	body := `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"beta__slow","arguments":{"ms":90,"steps":3},"_meta":{"progressToken":"tok-1"}}}`
	call := func(accept string) (*http.Response, []byte) {
		req, _ := http.NewRequest(http.MethodPost, e.proxy.URL+"/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", accept)
		req.Header.Set("Authorization", "Bearer "+e.key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp, raw
	}
	resp, raw := call("application/json, text/event-stream")
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q; want text/event-stream:\n%s", ct, raw)
	}
	var events []map[string]any
	for _, block := range strings.Split(strings.TrimSpace(string(raw)), "\n\n") {
		data, ok := strings.CutPrefix(block, "event: message\ndata: ")
		if !ok {
			t.Fatalf("not a message event: %q", block)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(data), &m); err != nil {
			t.Fatalf("event data %q: %v", data, err)
		}
		events = append(events, m)
	}
	if len(events) != 4 {
		t.Fatalf("%d events; want 3 progress notifications and the result:\n%s", len(events), raw)
	}
	for i, ev := range events[:3] {
		params, _ := ev["params"].(map[string]any)
		if ev["method"] != "notifications/progress" || params["progressToken"] != "tok-1" || params["progress"] != float64(i+1) {
			t.Errorf("event %d = %v; want progress %d for tok-1", i, ev, i+1)
		}
	}
	if last := events[3]; last["id"] != float64(9) || last["result"] == nil {
		t.Errorf("last event = %v; want the result of request 9", last)
	}

	resp, raw = call("application/json")
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil || resp.Header.Get("Content-Type") != "application/json" || out["result"] == nil {
		t.Errorf("JSON-only client: %s %q: %v", resp.Header.Get("Content-Type"), raw, err)
	}
}

// post sends a raw request to the proxy.
func (e *env) post(t *testing.T, path string, header map[string]string, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.proxy.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	json.Unmarshal(raw, &out)
	return resp, out
}

func rpcCode(out map[string]any) int {
	e, _ := out["error"].(map[string]any)
	c, _ := e["code"].(float64)
	return int(c)
}
