package proxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/internal/firestoretest"
	"mcpproxy.dev/mcpproxy/internal/logcapture"
	"mcpproxy.dev/mcpproxy/internal/pgtest"
	"mcpproxy.dev/mcpproxy/internal/procgroup"
	"mcpproxy.dev/mcpproxy/internal/stack"
	"mcpproxy.dev/mcpproxy/internal/testbin"
	"mcpproxy.dev/mcpproxy/internal/testenv"
	"mcpproxy.dev/mcpproxy/internal/wait"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/upstream"
	"mcpproxy.dev/mcpproxy/shared/wire"
)

// inputEnv is a proxy in front of the go-sdk's everything-server, which
// it speaks 2026-07-28 to, with a clock the test moves.
type inputEnv struct {
	*testenv.Env
	single, aggregated string // the routes' paths
	skew               *atomic.Int64
	upstreamURL        string
}

const inputTTL = time.Minute

func newInputEnv(t *testing.T) *inputEnv {
	t.Helper()
	url := startEverything(t)
	reader := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return readerServer() },
		&mcp.StreamableHTTPOptions{Stateless: true}))
	t.Cleanup(reader.Close)
	skew := &atomic.Int64{}
	e := testenv.New(t, testenv.Options{
		Tenant: stack.Tenant{Organization: "Tenant A", Instance: "a", Key: "a",
			Servers: []stack.Server{
				{Server: postgres.Server{Name: "everything", Transport: tenant.TransportStreamableHTTP, URL: url}},
				{Server: postgres.Server{Name: "reader", Transport: tenant.TransportStreamableHTTP, URL: reader.URL}},
			}},
		Pool:  upstream.PoolOptions{ProtocolVersion: wire.V20260728},
		Proxy: proxy.Options{StateTTL: inputTTL, Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }},
	})
	inst := e.Seeded.Instance.ID
	return &inputEnv{Env: e, single: "/mcp/" + inst + "/everything", aggregated: "/mcp/" + inst, skew: skew, upstreamURL: url}
}

// readerServer has a resource whose read asks the client to confirm
// first, which the everything-server has not.
func readerServer() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "reader", Version: "1"}, nil)
	// An instance needs a tool of each server.
	s.AddTool(&mcp.Tool{Name: "noop", InputSchema: json.RawMessage(`{"type":"object"}`)},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{}, nil
		})
	// An input-required result larger than the proxy holds of a result
	// before it relays it as it comes.
	s.AddTool(&mcp.Tool{Name: "big_ask", InputSchema: json.RawMessage(`{"type":"object"}`)},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{RequestState: "big", InputRequests: mcp.InputRequestMap{
				"confirm": &mcp.ElicitParams{Message: strings.Repeat("Really? ", 20000), RequestedSchema: &jsonschema.Schema{Type: "object"}}}}, nil
		})
	s.AddResource(&mcp.Resource{URI: "test://needs-input", Name: "needs-input", MIMEType: "text/plain"},
		func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			if r, ok := req.Params.InputResponses["confirm"].(*mcp.ElicitResult); ok && r.Action == "accept" && req.Params.RequestState == "asked" {
				return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: "test://needs-input", MIMEType: "text/plain", Text: "confirmed"}}}, nil
			}
			return &mcp.ReadResourceResult{RequestState: "asked", InputRequests: mcp.InputRequestMap{
				"confirm": &mcp.ElicitParams{Message: "Read it?", RequestedSchema: &jsonschema.Schema{Type: "object",
					Properties: map[string]*jsonschema.Schema{"ok": {Type: "boolean"}}}}}}, nil
		})
	return s
}

// call posts one 2026-07-28 request with key (the env's when ""),
// declaring caps (a JSON object), and returns the HTTP status, the
// result or the error, and the body as it came.
func (e *inputEnv) call(t *testing.T, path, key, method, name string, params map[string]any, caps string) (int, map[string]any, map[string]any) {
	t.Helper()
	p := map[string]any{"_meta": map[string]any{
		"io.modelcontextprotocol/protocolVersion":    "2026-07-28",
		"io.modelcontextprotocol/clientCapabilities": json.RawMessage(caps),
		"io.modelcontextprotocol/clientInfo":         map[string]string{"name": "input-test", "version": "1"},
	}}
	for k, v := range params {
		p[k] = v
	}
	if method == "resources/read" {
		p["uri"] = name
	} else {
		p["name"] = name
	}
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": time.Now().UnixNano(), "method": method, "params": p})
	header := map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method, "Mcp-Name": name}
	if key != "" {
		header["Authorization"] = "Bearer " + key
	}
	resp, out := e.Post(t, path, header, string(body))
	res, _ := out["result"].(map[string]any)
	errObj, _ := out["error"].(map[string]any)
	return resp.StatusCode, res, errObj
}

// wantRefused checks an answer is the JSON-RPC error code with a message
// containing msg, and no result.
func wantRefused(t *testing.T, status int, res, e map[string]any, code float64, msg string) {
	t.Helper()
	if res != nil || e == nil {
		t.Fatalf("got result %v, error %v; want error %v", res, e, code)
	}
	if e["code"] != code || !strings.Contains(fmt.Sprint(e["message"]), msg) {
		t.Errorf("got error %v %q; want %v containing %q", e["code"], e["message"], code, msg)
	}
	if status != http.StatusBadRequest {
		t.Errorf("got HTTP %d; want 400", status)
	}
}

const (
	elicitCaps   = `{"elicitation":{}}`
	samplingCaps = `{"sampling":{}}`
	accept       = `{"action":"accept","content":{"%s":"%s"}}`
)

func answer(key, field, value string) map[string]any {
	return map[string]any{key: json.RawMessage(fmt.Sprintf(accept, field, value))}
}

// TestInputRequiredMultiRound answers the upstream's two rounds of
// elicitation on each route, and with each round on another proxy
// process: the upstream's state travels sealed in the proxy's, which
// hides it, changes each round and opens on every process.
func TestInputRequiredMultiRound(t *testing.T) {
	e := newInputEnv(t)
	other := &inputEnv{Env: e.Process(t, testenv.Options{Pool: upstream.PoolOptions{ProtocolVersion: wire.V20260728}}),
		single: e.single, aggregated: e.aggregated, skew: e.skew}
	for _, c := range []struct {
		name, path, tool string
		rounds           [3]*inputEnv
	}{
		{"single-upstream route", e.single, "test_input_required_result_multi_round", [3]*inputEnv{e, e, e}},
		{"aggregated route", e.aggregated, "everything__test_input_required_result_multi_round", [3]*inputEnv{e, e, e}},
		{"each round on another process", e.single, "test_input_required_result_multi_round", [3]*inputEnv{e, other, e}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, r1, err := c.rounds[0].call(t, c.path, "", "tools/call", c.tool, nil, elicitCaps)
			if r1 == nil || r1["resultType"] != "input_required" {
				t.Fatalf("round 1: got %v, error %v; want an input_required result", r1, err)
			}
			s1, _ := r1["requestState"].(string)
			if !strings.HasPrefix(s1, "mcpp1.") || strings.Contains(s1, "round") {
				t.Errorf("round 1 requestState %q: want the proxy's sealed one, not the upstream's", s1)
			}
			if _, ok := r1["inputRequests"].(map[string]any)["step1"]; !ok {
				t.Fatalf("round 1: inputRequests %v lack step1", r1["inputRequests"])
			}
			_, r2, err := c.rounds[1].call(t, c.path, "", "tools/call", c.tool,
				map[string]any{"inputResponses": answer("step1", "name", "Ada"), "requestState": s1}, elicitCaps)
			if r2 == nil || r2["resultType"] != "input_required" {
				t.Fatalf("round 2: got %v, error %v; want input_required", r2, err)
			}
			s2, _ := r2["requestState"].(string)
			if s2 == s1 || !strings.HasPrefix(s2, "mcpp1.") {
				t.Errorf("round 2 requestState %q: want a new sealed one", s2)
			}
			_, r3, err := c.rounds[2].call(t, c.path, "", "tools/call", c.tool,
				map[string]any{"inputResponses": answer("step2", "color", "blue"), "requestState": s2}, elicitCaps)
			if got := fmt.Sprint(r3["content"]); r3 == nil || !strings.Contains(got, "Multi-round complete: Ada likes blue") {
				t.Fatalf("round 3: got %v, error %v; want Ada likes blue", r3, err)
			}
			if r3["resultType"] != "complete" {
				t.Errorf("round 3 resultType %v; want complete", r3["resultType"])
			}
		})
	}
}

// TestInputRequiredStateRefused presents sealed states where they do not
// belong: altered, with another tenant's key, for another tool or route,
// and after they expired. The upstream's own check would not catch any
// of them (its state is plain text).
func TestInputRequiredStateRefused(t *testing.T) {
	e := newInputEnv(t)
	const tool = "test_input_required_result_request_state"
	round1 := func(t *testing.T) string {
		_, r, err := e.call(t, e.single, "", "tools/call", tool, nil, elicitCaps)
		s, _ := r["requestState"].(string)
		if s == "" {
			t.Fatalf("round 1: got %v, error %v; want a requestState", r, err)
		}
		return s
	}
	retry := map[string]any{"inputResponses": answer("confirm", "ok", "yes")}
	with := func(state string) map[string]any {
		return map[string]any{"inputResponses": retry["inputResponses"], "requestState": state}
	}

	t.Run("as issued", func(t *testing.T) {
		_, r, err := e.call(t, e.single, "", "tools/call", tool, with(round1(t)), elicitCaps)
		if !strings.Contains(fmt.Sprint(r["content"]), "state-ok") {
			t.Fatalf("got %v, error %v; want state-ok", r, err)
		}
	})
	t.Run("tampered", func(t *testing.T) {
		s := []byte(round1(t))
		i := len(s) / 2
		s[i] ^= 1
		if s[i] == '.' || s[i] > 'z' {
			s[i] = 'A'
		}
		status, r, err := e.call(t, e.single, "", "tools/call", tool, with(string(s)), elicitCaps)
		wantRefused(t, status, r, err, -32602, "invalid requestState")
		status, r, err = e.call(t, e.single, "", "tools/call", tool, with(string(round1(t))+"-TAMPERED"), elicitCaps)
		wantRefused(t, status, r, err, -32602, "invalid requestState")
		status, r, err = e.call(t, e.single, "", "tools/call", tool, with("request_state"), elicitCaps)
		wantRefused(t, status, r, err, -32602, "invalid requestState")
	})
	t.Run("another tenant", func(t *testing.T) {
		b, err := stack.Seed(context.Background(), e.DB, stack.Tenant{Organization: "Tenant B", Instance: "b", Key: "b",
			Servers: []stack.Server{{Server: postgres.Server{Name: "everything", Transport: tenant.TransportStreamableHTTP, URL: e.upstreamURL}}}})
		if err != nil {
			t.Fatal(err)
		}
		s := round1(t)
		status, r, rpcErr := e.call(t, "/mcp/"+b.Instance.ID+"/everything", b.Key, "tools/call", tool, with(s), elicitCaps)
		wantRefused(t, status, r, rpcErr, -32602, "another API key")
		// The same state is still good for tenant A.
		if _, r, _ := e.call(t, e.single, "", "tools/call", tool, with(s), elicitCaps); !strings.Contains(fmt.Sprint(r["content"]), "state-ok") {
			t.Errorf("tenant A's own retry: got %v; want state-ok", r)
		}
	})
	t.Run("another tool or route", func(t *testing.T) {
		s := round1(t)
		status, r, err := e.call(t, e.single, "", "tools/call", "test_input_required_result_tampered_state", with(s), elicitCaps)
		wantRefused(t, status, r, err, -32602, "invalid requestState")
		status, r, err = e.call(t, e.aggregated, "", "tools/call", "everything__"+tool, with(s), elicitCaps)
		wantRefused(t, status, r, err, -32602, "invalid requestState")
		status, r, err = e.call(t, e.single, "", "prompts/get", tool, with(s), elicitCaps)
		wantRefused(t, status, r, err, -32602, "invalid requestState")
	})
	t.Run("expired", func(t *testing.T) {
		s := round1(t)
		e.skew.Store(int64(inputTTL + 2*time.Second))
		defer e.skew.Store(0)
		status, r, err := e.call(t, e.single, "", "tools/call", tool, with(s), elicitCaps)
		wantRefused(t, status, r, err, -32602, "expired")
	})
}

// TestInputRequiredUndeclared: an upstream's input request of a kind the
// client did not declare never reaches the client; the client gets
// -32021 naming what it lacks, on every method and route, and a client
// of a 2025 version, which cannot declare it per request, too.
func TestInputRequiredUndeclared(t *testing.T) {
	e := newInputEnv(t)
	cases := []struct{ path, method, name, caps, lacks string }{
		{e.single, "tools/call", "test_input_required_result_elicitation", `{}`, "elicitation"},
		{e.single, "tools/call", "test_input_required_result_elicitation", samplingCaps, "elicitation"},
		{e.aggregated, "tools/call", "everything__test_input_required_result_sampling", elicitCaps, "sampling"},
		{e.single, "tools/call", "test_input_required_result_list_roots", `{"elicitation":{},"sampling":{}}`, "roots"},
		{e.single, "tools/call", "test_input_required_result_multiple_inputs", `{"elicitation":{},"roots":{}}`, "sampling"},
		{e.single, "prompts/get", "test_input_required_result_prompt", `{}`, "elicitation"},
		{e.aggregated, "prompts/get", "everything__test_input_required_result_prompt", samplingCaps, "elicitation"},
	}
	for _, c := range cases {
		t.Run(c.name+" "+c.caps, func(t *testing.T) {
			status, r, err := e.call(t, c.path, "", c.method, c.name, nil, c.caps)
			wantRefused(t, status, r, err, -32021, c.lacks)
			data, _ := err["data"].(map[string]any)
			required, _ := data["requiredCapabilities"].(map[string]any)
			if _, ok := required[c.lacks]; !ok || len(required) != 1 {
				t.Errorf("requiredCapabilities %v; want %s alone", data["requiredCapabilities"], c.lacks)
			}
		})
	}
	t.Run("2025-11-25 client", func(t *testing.T) {
		asked := false
		s := e.Client(t, e.single, e.Key, "2025-11-25", &mcp.ClientOptions{
			ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
				asked = true
				return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"name": "x"}}, nil
			}})
		_, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "test_input_required_result_elicitation"})
		if err == nil || !strings.Contains(err.Error(), "elicitation") || asked {
			t.Errorf("got error %v, elicitation handler called %v; want -32021 and no elicitation", err, asked)
		}
	})
}

// TestInputRequiredSDKClient has the go-sdk's own client answer input
// requests through the aggregated route, as an application would: the
// tools/call and prompts/get it makes once come back complete.
func TestInputRequiredSDKClient(t *testing.T) {
	e := newInputEnv(t)
	s := e.Client(t, e.aggregated, e.Key, "2026-07-28", &mcp.ClientOptions{
		ElicitationHandler: func(_ context.Context, r *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"name": "Ada", "context": "tests"}}, nil
		},
		CreateMessageHandler: func(context.Context, *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			return &mcp.CreateMessageResult{Role: "assistant", Model: "test", Content: &mcp.TextContent{Text: "Hello"}}, nil
		},
		Capabilities: &mcp.ClientCapabilities{Elicitation: &mcp.ElicitationCapabilities{}, Sampling: &mcp.SamplingCapabilities{},
			RootsV2: &mcp.RootCapabilities{}},
	})
	res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "everything__test_input_required_result_multiple_inputs"})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Content[0].(*mcp.TextContent).Text; !strings.Contains(got, "Hello Ada") {
		t.Errorf("tools/call: got %q; want Hello Ada", got)
	}
	prompt, err := s.GetPrompt(context.Background(), &mcp.GetPromptParams{Name: "everything__test_input_required_result_prompt"})
	if err != nil {
		t.Fatal(err)
	}
	if got := prompt.Messages[0].Content.(*mcp.TextContent).Text; got != "Context: tests" {
		t.Errorf("prompts/get: got %q; want Context: tests", got)
	}
}

// TestInputRequiredResourceRead: resources/read of an upstream that asks
// for input first, on both routes, refused without the capability and
// with a state of another resource.
func TestInputRequiredResourceRead(t *testing.T) {
	e := newInputEnv(t)
	const uri = "test://needs-input"
	for _, path := range []string{e.aggregated, "/mcp/" + e.Seeded.Instance.ID + "/reader"} {
		t.Run(path, func(t *testing.T) {
			status, r, err := e.call(t, path, "", "resources/read", uri, nil, `{}`)
			wantRefused(t, status, r, err, -32021, "elicitation")
			_, r1, err := e.call(t, path, "", "resources/read", uri, nil, elicitCaps)
			s1, _ := r1["requestState"].(string)
			if r1["resultType"] != "input_required" || !strings.HasPrefix(s1, "mcpp1.") {
				t.Fatalf("round 1: got %v, error %v; want input_required with the proxy's requestState", r1, err)
			}
			retry := map[string]any{"inputResponses": answer("confirm", "ok", "true"), "requestState": s1}
			// Another resource, of another upstream on the aggregated route.
			status, r, err = e.call(t, path, "", "resources/read", "test://static-text", retry, elicitCaps)
			wantRefused(t, status, r, err, -32602, "invalid requestState")
			_, r2, err := e.call(t, path, "", "resources/read", uri, retry, elicitCaps)
			if got := fmt.Sprint(r2["contents"]); r2 == nil || !strings.Contains(got, "confirmed") || r2["resultType"] != "complete" {
				t.Fatalf("round 2: got %v, error %v; want the contents, complete", r2, err)
			}
		})
	}
}

// TestInputRequiredLarge: an input-required result too large for the
// proxy to have read whole before relaying is still examined: refused
// without the capability, its state sealed with it.
func TestInputRequiredLarge(t *testing.T) {
	e := newInputEnv(t)
	path := "/mcp/" + e.Seeded.Instance.ID + "/reader"
	status, r, err := e.call(t, path, "", "tools/call", "big_ask", nil, `{}`)
	wantRefused(t, status, r, err, -32021, "elicitation")
	_, r, err = e.call(t, path, "", "tools/call", "big_ask", nil, elicitCaps)
	s, _ := r["requestState"].(string)
	ask, _ := r["inputRequests"].(map[string]any)["confirm"].(map[string]any)
	msg, _ := ask["params"].(map[string]any)["message"].(string)
	if r["resultType"] != "input_required" || !strings.HasPrefix(s, "mcpp1.") || len(msg) != 8*20000 {
		t.Fatalf("got resultType %v, requestState %.20q, message of %d bytes, error %v; want input_required, the proxy's state, 160000 bytes",
			r["resultType"], s, len(msg), err)
	}
}

// TestInputRequiredTwoProcesses runs the proxy as two real processes (the
// dev server binary), each configured from its environment as deployed
// (MCP_ENCRYPTION_KEY, from which each derives the key of its
// requestStates), and answers a three-round call with the middle round
// on the other process.
func TestInputRequiredTwoProcesses(t *testing.T) {
	e := newInputEnv(t)
	bin := testbin.Build(t, "mcpproxy.dev/mcpproxy/cmd/devserver")
	var procs [2]*inputEnv
	for i := range procs {
		free, err := stack.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		port := fmt.Sprint(free)
		cmd := exec.Command(bin)
		var stderr logcapture.Buffer
		cmd.Stderr = &stderr
		cmd.Env = append(os.Environ(),
			"HOST=127.0.0.1", "PORT="+port,
			"DATABASE_URL="+e.DB.Pool.Config().ConnString(),
			"MCP_ENCRYPTION_KEY="+pgtest.KeyringSpec,
			"UPSTREAM_PROTOCOL_VERSION=2026-07-28",
			"FIRESTORE_EMULATOR_HOST="+firestoretest.Host(t), "GOOGLE_CLOUD_PROJECT="+firestoretest.Project,
			"REQUEST_LOG_COLLECTION="+firestoretest.Collection(t),
		)
		p, err := procgroup.Start(cmd)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Stop(syscall.SIGTERM, 10*time.Second) })
		env := *e.Env
		env.Proxy = &httptest.Server{URL: "http://127.0.0.1:" + port}
		procs[i] = &inputEnv{Env: &env, single: e.single, aggregated: e.aggregated}
		if err := wait.Until(context.Background(), 30*time.Second, func() bool {
			resp, err := http.Get(env.Proxy.URL + "/mcp")
			if err == nil {
				resp.Body.Close()
			}
			return err == nil
		}); err != nil {
			t.Fatalf("dev server %d did not start: %v\n%s", i, err, stderr.String())
		}
	}
	const tool = "test_input_required_result_multi_round"
	a, b := procs[0], procs[1]
	_, r1, err := a.call(t, a.single, "", "tools/call", tool, nil, elicitCaps)
	s1, _ := r1["requestState"].(string)
	if !strings.HasPrefix(s1, "mcpp1.") {
		t.Fatalf("round 1 on process A: got %v, error %v; want input_required with the proxy's state", r1, err)
	}
	_, r2, err := b.call(t, b.single, "", "tools/call", tool,
		map[string]any{"inputResponses": answer("step1", "name", "Ada"), "requestState": s1}, elicitCaps)
	s2, _ := r2["requestState"].(string)
	if r2["resultType"] != "input_required" || !strings.HasPrefix(s2, "mcpp1.") {
		t.Fatalf("round 2 on process B: got %v, error %v; want input_required", r2, err)
	}
	_, r3, err := a.call(t, a.single, "", "tools/call", tool,
		map[string]any{"inputResponses": answer("step2", "color", "green"), "requestState": s2}, elicitCaps)
	if !strings.Contains(fmt.Sprint(r3["content"]), "Ada likes green") {
		t.Fatalf("round 3 on process A: got %v, error %v; want Ada likes green", r3, err)
	}
}
