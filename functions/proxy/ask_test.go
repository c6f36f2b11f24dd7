package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/internal/firestoretest"
	"mcpproxy.dev/mcpproxy/internal/testbin"
	"mcpproxy.dev/mcpproxy/internal/testenv"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/rendezvous"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// askingServer is an upstream whose tools ask the client: ask
// (elicitation), sample (sampling) and roots (roots/list). Each returns
// the client's answer, or the error it got, as text.
func askingServer() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "asking", Version: "1"}, nil)
	started, ended := newMeeting(2), newMeeting(2) // of pair's calls
	text := func(format string, a ...any) *mcp.CallToolResult {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf(format, a...)}}}
	}
	mcp.AddTool(s, &mcp.Tool{Name: "plain", Description: "Asks nothing."}, func(context.Context, *mcp.CallToolRequest, any) (*mcp.CallToolResult, any, error) {
		return text("plain"), nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "pair", Description: "Asks the client for a name while a second call of pair does; both end together."},
		func(ctx context.Context, req *mcp.CallToolRequest, _ any) (*mcp.CallToolResult, any, error) {
			if !started.arrive() {
				return text("alone"), nil, nil
			}
			res, err := req.Session.Elicit(ctx, &mcp.ElicitParams{Message: "Your name?", RequestedSchema: json.RawMessage(
				`{"type":"object","properties":{"name":{"type":"string"}}}`)})
			ended.arrive()
			if err != nil {
				return text("error: %v", err), nil, nil
			}
			return text("%s %v", res.Action, res.Content["name"]), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "ask", Description: "Asks the client for a name."}, func(ctx context.Context, req *mcp.CallToolRequest, _ any) (*mcp.CallToolResult, any, error) {
		res, err := req.Session.Elicit(ctx, &mcp.ElicitParams{Message: "Your name?", RequestedSchema: json.RawMessage(
			`{"type":"object","properties":{"name":{"type":"string"}},"required":["name"]}`)})
		if err != nil {
			return text("error: %v", err), nil, nil
		}
		return text("%s %v", res.Action, res.Content["name"]), nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "sample", Description: "Asks the client's model."}, func(ctx context.Context, req *mcp.CallToolRequest, _ any) (*mcp.CallToolResult, any, error) {
		res, err := req.Session.CreateMessage(ctx, &mcp.CreateMessageParams{MaxTokens: 10,
			Messages: []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: "2+2?"}}}})
		if err != nil {
			return text("error: %v", err), nil, nil
		}
		return text("model %s: %s", res.Model, res.Content.(*mcp.TextContent).Text), nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "roots", Description: "Lists the client's roots."}, func(ctx context.Context, req *mcp.CallToolRequest, _ any) (*mcp.CallToolResult, any, error) {
		res, err := req.Session.ListRoots(ctx, nil)
		if err != nil {
			return text("error: %v", err), nil, nil
		}
		var uris []string
		for _, r := range res.Roots {
			uris = append(uris, r.URI)
		}
		return text("roots %s", strings.Join(uris, ",")), nil, nil
	})
	return s
}

// askEnv is a proxy with a rendezvous in front of askingServer over
// Streamable HTTP ("http") and SSE ("sse"), and of the go-sdk's
// everything-server over stdio ("stdio"); its clock runs ahead by *skew.
func askEnv(t testing.TB) (e *testenv.Env, httpUpstream string, skew *atomic.Int64, store *rendezvous.Store) {
	t.Helper()
	streamable := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return askingServer() }, nil))
	t.Cleanup(streamable.Close)
	sse := httptest.NewServer(mcp.NewSSEHandler(func(*http.Request) *mcp.Server { return askingServer() }, nil))
	t.Cleanup(sse.Close)
	servers := []postgres.Server{
		{Name: "Http", Transport: tenant.TransportStreamableHTTP, URL: streamable.URL},
		{Name: "Sse", Transport: tenant.TransportSSE, URL: sse.URL},
		{Name: "Stdio", Transport: tenant.TransportStdio, Command: testbin.Build(t, everythingServer)},
	}
	store = rendezvous.New(firestoretest.Client(t, firestoretest.Host(t)), rendezvous.Options{Collection: firestoretest.Collection(t)})
	skew = &atomic.Int64{}
	e = testenv.New(t, testenv.Options{
		Tenant: testenv.Tenant(servers, []string{"plain", "ask", "pair", "sample", "roots", "test_elicitation", "test_sampling"}),
		Proxy: proxy.Options{Rendezvous: store, SealKey: bytes.Repeat([]byte{7}, 32),
			Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }},
	})
	return e, streamable.URL, skew, store
}

// TestRelayedRequests calls tools that ask the client, through the proxy,
// from a go-sdk client that declares elicitation, sampling and roots, over
// each upstream transport: the client's answers reach the upstream.
func TestRelayedRequests(t *testing.T) {
	e, _, _, store := askEnv(t)
	s := relayingClient(t, e.Proxy.URL+"/mcp", e.Key)
	for _, c := range []struct{ tool, want string }{
		{"http__ask", "accept Ada"},
		{"http__sample", "model m1: 4"},
		{"http__roots", "roots file:///work"},
		{"sse__ask", "accept Ada"},
		{"sse__sample", "model m1: 4"},
		{"sse__roots", "roots file:///work"},
		{"stdio__test_elicitation", "ada"},
		{"stdio__test_sampling", "4"},
	} {
		t.Run(c.tool, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			args := map[string]any{}
			switch c.tool {
			case "stdio__test_elicitation":
				args["message"] = "Name?"
			case "stdio__test_sampling":
				args["prompt"] = "2+2?"
			}
			res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: c.tool, Arguments: args})
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(res.Content)
			if !strings.Contains(string(got), c.want) {
				t.Fatalf("got %s; want the client's answer %q", got, c.want)
			}
		})
	}

	// What a call costs in Firestore: nothing without a relayed request,
	// at most three reads and two writes with one (rendezvous.Store).
	time.Sleep(200 * time.Millisecond) // the last taken marks
	r0, w0 := store.Ops()
	for _, tool := range []string{"http__plain", "sse__plain", "http__ask"} {
		if _, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: tool, Arguments: map[string]any{}}); err != nil {
			t.Fatal(err)
		}
		if tool == "sse__plain" {
			if r, w := store.Ops(); r != r0 || w != w0 {
				t.Fatalf("plain calls made %d reads and %d writes in Firestore; want none", r-r0, w-w0)
			}
		}
	}
	time.Sleep(200 * time.Millisecond)
	// Fewer reads when the answer is there before the listener's first
	// snapshot; a write more when the emulator failed a create.
	if r, w := store.Ops(); r-r0 < 1 || r-r0 > 3 || w-w0 < 2 || w-w0 > 3 {
		t.Fatalf("a relayed elicitation made %d reads and %d writes; want 1 to 3 and 2", r-r0, w-w0)
	}
}

// relayingClient is a go-sdk client of url, with key, that declares
// elicitation, sampling and the root file:///work, and answers at once.
func relayingClient(t testing.TB, url, key string) *mcp.ClientSession {
	t.Helper()
	opts := &mcp.ClientOptions{
		ElicitationHandler: func(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"name": "Ada", "username": "ada"}}, nil
		},
		CreateMessageHandler: func(_ context.Context, req *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			return &mcp.CreateMessageResult{Model: "m1", Role: "assistant", Content: &mcp.TextContent{Text: "4"}}, nil
		},
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "c", Version: "1"}, opts)
	client.AddRoots(&mcp.Root{URI: "file:///work", Name: "work"})
	s, err := client.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: url,
		HTTPClient: &http.Client{Transport: withKey(key)}, MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkRelayedElicitation times a tools/call whose upstream asks the
// client once (elicitation, answered at once), straight to the upstream
// and through the proxy, whose round trip crosses the Firestore
// rendezvous, and a call of the same upstream that asks nothing through
// the proxy. BENCHMARKS.md quotes it.
func BenchmarkRelayedElicitation(b *testing.B) {
	e, httpUpstream, _, store := askEnv(b)
	for _, c := range []struct{ name, url, key, tool string }{
		{"direct", httpUpstream, "", "ask"},
		{"proxy", e.Proxy.URL + "/mcp", e.Key, "http__ask"},
		{"proxy-no-request", e.Proxy.URL + "/mcp", e.Key, "http__plain"},
	} {
		b.Run(c.name, func(b *testing.B) {
			s := relayingClient(b, c.url, c.key)
			var took []time.Duration
			time.Sleep(200 * time.Millisecond)
			r0, w0 := store.Ops()
			for b.Loop() {
				start := time.Now()
				res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: c.tool, Arguments: map[string]any{}})
				if err != nil || res.IsError {
					b.Fatal(err, "\n", e.Logs.String()[max(0, len(e.Logs.String())-6000):])
				}
				took = append(took, time.Since(start))
			}
			time.Sleep(200 * time.Millisecond)
			r1, w1 := store.Ops()
			slices.Sort(took)
			n := float64(len(took))
			b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(r1-r0)/n, "fs-reads/op")
			b.ReportMetric(float64(w1-w0)/n, "fs-writes/op")
		})
	}
}

// sseEvents reads a response's events as JSON-RPC messages.
func sseEvents(t *testing.T, body io.Reader) <-chan map[string]any {
	out := make(chan map[string]any, 8)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var m map[string]any
				json.Unmarshal([]byte(data), &m)
				out <- m
			}
		}
	}()
	return out
}

// post sends one message to the proxy with key and sessionID (if any)
// and returns the response, its body unread.
func post(t *testing.T, e *testenv.Env, key, sessionID, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.Proxy.URL+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	if sessionID != "" {
		req.Header.Set("Mcp-Session-Id", sessionID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func initialize(t *testing.T, e *testenv.Env, key, caps string) string {
	t.Helper()
	resp := post(t, e, key, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":`+caps+`,"clientInfo":{"name":"t","version":"1"}}}`)
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("initialize: %d", resp.StatusCode)
	}
	return resp.Header.Get("Mcp-Session-Id")
}

// answer posts a client's answer to the relayed request id.
func postAnswer(t *testing.T, e *testenv.Env, key, id string) (int, string) {
	t.Helper()
	idJSON, _ := json.Marshal(id)
	resp := post(t, e, key, "", `{"jsonrpc":"2.0","id":`+string(idJSON)+`,"result":{"action":"accept","content":{"name":"Ada"}}}`)
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRelayedAnswerRefused makes a call whose upstream asks the client,
// and, while the call waits, answers it with a made-up ID, a tampered one,
// the real one with another tenant's key and the real one past its
// expiry: each is refused and the call still waits, until the real
// answer comes, once.
func TestRelayedAnswerRefused(t *testing.T) {
	e, httpUpstream, skew, _ := askEnv(t)
	other := e.AddInstance(t, "other", []postgres.Server{{Name: "Http2", Transport: tenant.TransportStreamableHTTP, URL: httpUpstream}}, []string{"ask"})
	sid := initialize(t, e, e.Key, `{"elicitation":{}}`)
	if !strings.HasPrefix(sid, "mcpp1.") {
		t.Fatalf("a client that declares elicitation got session ID %q; want a sealed one", sid)
	}
	if got := initialize(t, e, e.Key, `{}`); got != "" {
		t.Fatalf("a client that declares nothing to relay got session ID %q; want none", got)
	}

	resp := post(t, e, e.Key, sid, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"http__ask","arguments":{}}}`)
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q; want the call's event stream", ct)
	}
	events := sseEvents(t, resp.Body)
	asked := <-events
	if asked["method"] != "elicitation/create" {
		t.Fatalf("first event %v; want the upstream's elicitation/create", asked)
	}
	id, _ := asked["id"].(string)
	if !strings.HasPrefix(id, "mcp-proxy-ask.") {
		t.Fatalf("relayed request ID %q; want a sealed one of the proxy's", id)
	}

	tampered := []byte(id)
	tampered[len(tampered)-5] ^= 1
	for _, c := range []struct {
		name, key, id string
		skew          time.Duration
	}{
		{"made up", e.Key, "mcp-proxy-ask.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 0},
		{"tampered", e.Key, string(tampered), 0},
		{"other tenant, same upstream", other, id, 0},
		{"expired", e.Key, id, 11 * time.Minute},
	} {
		skew.Store(int64(c.skew))
		code, body := postAnswer(t, e, c.key, c.id)
		skew.Store(0)
		if code != http.StatusBadRequest || !strings.Contains(body, "no relayed request of this client waits for this answer") {
			t.Errorf("%s answer: %d %s; want 400 and the refusal", c.name, code, body)
		}
	}
	select {
	case m := <-events:
		t.Fatalf("the call ended after refused answers: %v", m)
	case <-time.After(300 * time.Millisecond):
	}

	if code, body := postAnswer(t, e, e.Key, id); code != http.StatusAccepted {
		t.Fatalf("the real answer: %d %s; want 202", code, body)
	}
	final := <-events
	got, _ := json.Marshal(final["result"])
	if !strings.Contains(string(got), "accept Ada") {
		t.Fatalf("call result %s; want the client's answer", got)
	}
	if code, _ := postAnswer(t, e, e.Key, id); code != http.StatusBadRequest {
		t.Fatalf("the answer again: %d; want 400", code)
	}
}

// TestUndeclaredCapabilityNotRelayed calls tools that ask for a
// capability the client did not declare, with its session ID, without
// one, and with another tenant's: the upstream gets -32601 and the client
// never sees the request.
func TestUndeclaredCapabilityNotRelayed(t *testing.T) {
	e, httpUpstream, _, _ := askEnv(t)
	other := e.AddInstance(t, "other", []postgres.Server{{Name: "Http2", Transport: tenant.TransportStreamableHTTP, URL: httpUpstream}}, []string{"ask"})
	samplingOnly := initialize(t, e, e.Key, `{"sampling":{}}`)
	elicit := initialize(t, e, e.Key, `{"elicitation":{}}`)
	for _, c := range []struct{ name, key, sid, tool string }{
		{"sampling declared, elicitation asked", e.Key, samplingOnly, "http__ask"},
		{"no roots declared", e.Key, elicit, "http__roots"},
		{"no session ID", e.Key, "", "http__ask"},
		{"another key's session ID", other, elicit, "http2__ask"},
		{"sse, sampling declared, elicitation asked", e.Key, samplingOnly, "sse__ask"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp := post(t, e, c.key, c.sid, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"`+c.tool+`","arguments":{}}}`)
			body, _ := io.ReadAll(resp.Body)
			if bytes.Contains(body, []byte(`"method"`)) {
				t.Fatalf("the client got a request it did not declare: %s", body)
			}
			// The go-sdk's client (the SSE case) words -32601 its own way.
			if !bytes.Contains(body, []byte("error: ")) || !bytes.Contains(body, []byte("does not relay")) && !bytes.Contains(body, []byte("method not found")) {
				t.Fatalf("the tool's result %s; want the upstream's refusal", body)
			}
		})
	}
}

// withKey sends its API key with every request of an MCP client.
type withKey string

func (k withKey) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+string(k))
	return http.DefaultTransport.RoundTrip(r)
}

// TestSharedSessionTwoCalls makes two calls at once on an SSE upstream,
// whose session every call of the process shares, each asking the
// client: nothing ties a request to one of them, so neither client gets
// the other's request; both are refused.
func TestSharedSessionTwoCalls(t *testing.T) {
	e, _, _, _ := askEnv(t)
	s := relayingClient(t, e.Proxy.URL+"/mcp", e.Key)
	got := make(chan string, 2)
	for range 2 {
		go func() {
			res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "sse__pair", Arguments: map[string]any{}})
			if err != nil {
				got <- err.Error()
				return
			}
			b, _ := json.Marshal(res.Content)
			got <- string(b)
		}()
	}
	for range 2 {
		if r := <-got; !strings.Contains(r, "error: ") || strings.Contains(r, "alone") {
			t.Errorf("a call of two in flight on one SSE session: %s; want its request refused", r)
		}
	}
}

// meeting lets n goroutines wait for each other.
type meeting struct {
	mu  sync.Mutex
	n   int
	all chan struct{}
}

func newMeeting(n int) *meeting { return &meeting{n: n, all: make(chan struct{})} }

// arrive waits for the others, 5 s at most, and reports whether they came.
func (m *meeting) arrive() bool {
	m.mu.Lock()
	if m.n--; m.n == 0 {
		close(m.all)
	}
	m.mu.Unlock()
	select {
	case <-m.all:
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}
