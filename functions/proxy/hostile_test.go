package proxy_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/functions/flushlogs"
	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/functions/proxy/configcache"
	"mcpproxy.dev/mcpproxy/internal/demo/demotest"
	"mcpproxy.dev/mcpproxy/internal/firestoretest"
	"mcpproxy.dev/mcpproxy/internal/hostile"
	"mcpproxy.dev/mcpproxy/internal/stack"
	"mcpproxy.dev/mcpproxy/internal/testenv"
	"mcpproxy.dev/mcpproxy/shared/budget"
	"mcpproxy.dev/mcpproxy/shared/logbuffer"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/upstream"
)

// hostileUpstream serves a hostile upstream in mode over HTTP.
func hostileUpstream(t *testing.T, mode hostile.Mode) (*httptest.Server, *hostile.Server) {
	s := &hostile.Server{Mode: mode}
	srv := httptest.NewServer(s)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv, s
}

// TestHostileLists: upstreams whose lists hold null, mistyped and
// nameless entries, beside a good one, on every route and protocol:
// initialize, tools, prompts, resources and templates are answered, the
// bad entries are left out and the good ones served, and the process
// lives on. (The first initialize on /mcp used to kill the process: a nil
// template dereferenced in the catalog loader, re-panicked by
// singleflight on a goroutine no recover sees.)
func TestHostileLists(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, version string) {
		nulls, _ := hostileUpstream(t, hostile.Nulls)
		malformed, _ := hostileUpstream(t, hostile.Malformed)
		e := testenv.New(t, testenv.Options{Tenant: testenv.Tenant([]postgres.Server{
			{Name: "Nulls", Transport: tenant.TransportStreamableHTTP, URL: nulls.URL},
			{Name: "Malformed", Transport: tenant.TransportStreamableHTTP, URL: malformed.URL},
			{Name: "Stdio", Transport: tenant.TransportStdio, Command: hostile.Binary(t), Args: []string{"--mode", "nulls"}},
		}, []string{"echo"})})
		ctx := context.Background()
		inst := e.Seeded.Instance.ID
		for _, path := range []string{"/mcp", "/mcp/" + inst + "/nulls", "/mcp/" + inst + "/stdio"} {
			s := e.Client(t, path, e.Key, version, nil)
			tools := toolNames(t, s)
			if len(tools) == 0 || !slices.ContainsFunc(tools, func(n string) bool { return n == "echo" || n == "nulls__echo" || n == "stdio__echo" }) {
				t.Errorf("%s: tools = %v; want the good echo tool", path, tools)
			}
			prompts, err := s.ListPrompts(ctx, nil)
			if err != nil {
				t.Errorf("%s: prompts/list: %v", path, err)
			} else if slices.ContainsFunc(prompts.Prompts, func(p *mcp.Prompt) bool { return p == nil || p.Name == "" }) {
				t.Errorf("%s: prompts/list passed on a bad entry: %v", path, prompts.Prompts)
			}
			resources, err := s.ListResources(ctx, nil)
			if err != nil {
				t.Errorf("%s: resources/list: %v", path, err)
			} else if slices.ContainsFunc(resources.Resources, func(r *mcp.Resource) bool { return r == nil || r.URI == "" }) {
				t.Errorf("%s: resources/list passed on a bad entry: %v", path, resources.Resources)
			}
			templates, err := s.ListResourceTemplates(ctx, nil)
			if err != nil {
				t.Errorf("%s: resources/templates/list: %v", path, err)
			} else if slices.ContainsFunc(templates.ResourceTemplates, func(r *mcp.ResourceTemplate) bool { return r == nil || r.URITemplate == "" }) {
				t.Errorf("%s: resources/templates/list passed on a bad entry: %v", path, templates.ResourceTemplates)
			}
			res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: tools[0], Arguments: map[string]any{"text": "still here"}})
			if err != nil || text(t, res) != "still here" {
				t.Errorf("%s: call after the lists: %v %v", path, res, err)
			}
		}
	})
}

// TestBatchLogged: a batch cannot hide its calls from the request log.
// (What a client can send that costs no more than a refusal, depth
// bombs and oversized batches, is in testdata/input.txtar and
// batch.txtar.)
func TestBatchLogged(t *testing.T) {
	ctx := context.Background()
	store := &logbuffer.Firestore{Client: firestoretest.Client(t, firestoretest.Host(t)), Collection: firestoretest.Collection(t)}
	buf := logbuffer.New(store, logbuffer.Options{BatchEntries: 40, MaxAge: 50 * time.Millisecond})
	e := newEnv(t, proxy.Options{RequestLog: buf})
	old := map[string]string{"Authorization": "Bearer " + e.Key, "MCP-Protocol-Version": "2025-03-26"}
	// A batch is logged as the requests it holds, each with its tool.
	const calls = `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"a"}}},` +
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha__add","arguments":{"a":1,"b":2}}},` +
		`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"beta__echo","arguments":{"text":"b"}}}]`
	if resp, _ := e.Post(t, "/mcp", old, calls); resp.StatusCode != 200 {
		t.Fatalf("batch of three calls: HTTP %d", resp.StatusCode)
	}
	if err := buf.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := flushlogs.NewFlusher(e.DB, store, flushlogs.Options{}).Run(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := e.DB.Pool.Query(ctx, `SELECT tool_name FROM mcp_server_request_logs WHERE method = 'tools/call' ORDER BY tool_name`)
	if err != nil {
		t.Fatal(err)
	}
	tools, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if want := []string{"alpha__add", "alpha__echo", "beta__echo"}; err != nil || !slices.Equal(tools, want) {
		t.Errorf("logged calls %v (%v); want %v", tools, err, want)
	}
}

// TestProgressTenantLines: one tenant's upstream sends progress for the
// tokens the proxy would give other calls (it used to number them
// mcp-proxy-progress-1, -2, …) while another tenant's call waits for its
// own progress; the victim sees only its own upstream's progress. And a
// client's own progress token never reaches a shared upstream session,
// streamed or not.
func TestProgressTenantLines(t *testing.T) {
	e := newEnv(t, proxy.Options{})
	ctx := context.Background()
	victimKey := e.AddInstance(t, "victim", []postgres.Server{
		{Name: "Local", Transport: tenant.TransportStdio, Command: demotest.Binary(t), Args: []string{"--transport", "stdio", "--name", "local"}},
	}, []string{"slow"})
	attackerKey := e.AddInstance(t, "attacker", []postgres.Server{
		{Name: "Evil", Transport: tenant.TransportStdio, Command: hostile.Binary(t)},
	}, []string{"guess", "meta"})

	var mu sync.Mutex
	var forged []string
	victim := e.Client(t, "/mcp", victimKey, "2025-11-25", &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			if req.Params.Message == "from hostile" || req.Params.ProgressToken != "victim-token" {
				mu.Lock()
				forged = append(forged, fmt.Sprintf("%v %q", req.Params.ProgressToken, req.Params.Message))
				mu.Unlock()
			}
		}})
	attacker := e.Client(t, "/mcp", attackerKey, "2025-11-25", nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		params := &mcp.CallToolParams{Name: "local__slow", Arguments: map[string]any{"ms": 1500, "steps": 3}}
		params.SetProgressToken("victim-token")
		if _, err := victim.CallTool(ctx, params); err != nil {
			t.Errorf("victim's call: %v", err)
		}
	}()
	for guessing := true; guessing; {
		select {
		case <-done:
			guessing = false
		default:
			if _, err := attacker.CallTool(ctx, &mcp.CallToolParams{Name: "evil__guess", Arguments: map[string]any{"count": 100}}); err != nil {
				t.Fatalf("attacker's call: %v", err)
			}
		}
	}
	time.Sleep(50 * time.Millisecond) // notifications reach the handler after the result
	mu.Lock()
	if len(forged) > 0 {
		t.Errorf("the victim got %d progress notifications it never asked for, e.g. %s", len(forged), forged[0])
	}
	mu.Unlock()

	// A client's token on a shared stdio session: neither with an event
	// stream (the proxy's own token goes instead) nor without one.
	for _, accept := range []string{"application/json, text/event-stream", "application/json"} {
		_, out := e.Post(t, "/mcp", map[string]string{"Authorization": "Bearer " + attackerKey, "Accept": accept},
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"evil__meta","arguments":{},"_meta":{"progressToken":"client-token"}}}`)
		if got := fmt.Sprint(out["result"]); out["result"] == nil || strings.Contains(got, "client-token") {
			t.Errorf("Accept %s: the upstream saw %s; want a result without the client's token", accept, got)
		}
	}
}

// TestKeyFlood: a flood of made-up keys costs Postgres nothing for values
// that are not shaped like a key, a bounded rate of lookups for values
// that are, and never evicts a valid key from the warm cache.
func TestKeyFlood(t *testing.T) {
	e := newEnv(t, proxy.Options{Cache: configcache.Options{Size: 50}, KeyLookupRate: 20})
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	if resp, _ := e.Post(t, "/mcp", nil, list); resp.StatusCode != 200 {
		t.Fatalf("valid key: HTTP %d", resp.StatusCode)
	}

	e.Queries.Reset()
	floodStart := time.Now()
	for i := range 300 {
		for _, v := range []string{fmt.Sprintf("not-a-key-%d", i), "Basic dXNlcjpwYXNz", fmt.Sprintf("mcpk_%d", i)} {
			resp, out := e.Post(t, "/mcp", map[string]string{"Authorization": "Bearer " + v}, list)
			if resp.StatusCode != 401 || rpcCode(out) != -32001 {
				t.Fatalf("malformed key %q: HTTP %d %v; want 401", v, resp.StatusCode, out)
			}
		}
	}
	if n := e.Queries.Count(); n != 0 {
		t.Errorf("900 malformed keys made %d queries; want 0", n)
	}

	// Well-formed unknown keys: the lookups beyond the rate are refused
	// with 429 before they reach Postgres.
	start := time.Now()
	refused := 0
	for range 300 {
		k, _, err := tenant.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		resp, out := e.Post(t, "/mcp", map[string]string{"Authorization": "Bearer " + k}, list)
		switch {
		case resp.StatusCode == 429 && resp.Header.Get("Retry-After") != "":
			refused++
		case resp.StatusCode != 401 || rpcCode(out) != -32001:
			t.Fatalf("unknown key: HTTP %d %v; want 401 or 429", resp.StatusCode, out)
		}
	}
	elapsed := time.Since(start)
	maxLookups := int64(20 + 20*elapsed.Seconds() + 1) // the burst, then the rate
	if n := e.Queries.Count(); n > maxLookups || refused == 0 {
		t.Errorf("300 unknown keys in %v made %d queries (at most %d) and %d refusals", elapsed, n, maxLookups, refused)
	}

	// The refusals' log lines are bounded too (20 a second), and say
	// how many were left out.
	lines := strings.Count(e.Logs.String(), `"authentication failed"`)
	if most := 20 + int(20*time.Since(floodStart).Seconds()) + 1; lines > most || !strings.Contains(e.Logs.String(), `"leftOutBefore":`) {
		t.Errorf("%d log lines for 1,200 refused keys; want at most %d, with the count left out", lines, most)
	}
	if regexp.MustCompile(`"leftOutBefore":[1-9]`).FindString(e.Logs.String()) == "" {
		t.Error("no log line says how many refusals were left out")
	}

	// The valid key is still warm: the flood's negative entries did not
	// evict it.
	e.Queries.Reset()
	if resp, _ := e.Post(t, "/mcp", nil, list); resp.StatusCode != 200 {
		t.Fatalf("valid key after the flood: HTTP %d", resp.StatusCode)
	}
	if n := e.Queries.Count(); n != 0 {
		t.Errorf("the valid key after the flood made %d queries; want 0 (evicted): %q", n, e.Queries.Queries())
	}
}

// TestLargeResults: an answer over the message limit fails its call with
// an error naming the upstream and the limit when its length says so, and
// is abandoned at the limit when it comes as one event; answers within it wait for room in the process's budget and
// arrive whole, however many are asked for at once.
func TestLargeResults(t *testing.T) {
	srv, _ := hostileUpstream(t, hostile.Good)
	e := testenv.New(t, testenv.Options{Tenant: testenv.Tenant([]postgres.Server{
		{Name: "Big", Transport: tenant.TransportStreamableHTTP, URL: srv.URL}}, []string{"huge"}),
		Proxy: proxy.Options{Budget: budget.New(6<<20, 30*time.Second)}, Pool: upstream.PoolOptions{MaxMessageBytes: 2 << 20}})
	call := func(bytes int, sse bool) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"big__huge","arguments":{"bytes":%d,"sse":%v}}}`, bytes, sse)
	}
	// As JSON, the answer's length says it is over the limit before it
	// is read: a clean error.
	_, out := e.Post(t, "/mcp", nil, call(3<<20, false))
	msg, _ := out["error"].(map[string]any)["message"].(string)
	if rpcCode(out) != -32000 || !strings.Contains(msg, "big") || !strings.Contains(msg, "2097152") {
		t.Errorf("3 MiB answer: %.300v; want -32000 naming the upstream and the limit", out)
	}
	// As one event, it is relayed as it comes until the limit, then the
	// response is abandoned: the client never takes it for whole.
	if resp, out := e.Post(t, "/mcp", nil, call(3<<20, true)); out != nil {
		t.Errorf("3 MiB event: HTTP %d, %.300v; want the response abandoned", resp.StatusCode, out)
	}
	if logs := e.Logs.String(); !strings.Contains(logs, `"relayed result abandoned"`) || !strings.Contains(logs, `"bytesSent":2097`) {
		t.Errorf("no log line of the abandoned result after 2 MiB: %.2000s", logs)
	}
	// Through the SDK client (resources/read on the upstream's own
	// route): the same bound.
	path := "/mcp/" + e.Seeded.Instance.ID + "/big"
	read := func(n int) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"hostile://huge/%d"}}`, n)
	}
	if _, out := e.Post(t, path, nil, read(3<<20)); out["error"] == nil {
		t.Errorf("3 MiB resource through the SDK client: %.200v; want an error", out)
	}
	if _, out := e.Post(t, path, nil, read(1<<20)); out["result"] == nil {
		t.Errorf("1 MiB resource through the SDK client: %.200v; want it read", out)
	}
	// A 2026-07-28 client gets the large result relayed as a stream with
	// the resultType the upstream's result lacks, under its own ID, and
	// with the progress it asked for before it.
	stateless := func(bytes int, sse bool) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":"s-1","method":"tools/call","params":{"name":"big__huge","arguments":{"bytes":%d,"sse":%v},`+
			`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`, bytes, sse)
	}
	for _, sse := range []bool{false, true} {
		resp, out := e.Post(t, "/mcp", map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call",
			"Mcp-Name": "big__huge", "Accept": "application/json"}, stateless(1<<20, sse))
		res, _ := out["result"].(map[string]any)
		content, _ := res["content"].([]any)
		if resp.StatusCode != 200 || out["id"] != "s-1" || res["resultType"] != "complete" || len(content) != 1 ||
			len(content[0].(map[string]any)["text"].(string)) != 1<<20 {
			t.Errorf("1 MiB result to a 2026-07-28 client (sse %v): HTTP %d, id %v, resultType %v, %d content", sse, resp.StatusCode, out["id"], res["resultType"], len(content))
		}
	}
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Go(func() {
			resp, out := e.Post(t, "/mcp", nil, call(1800<<10, i%2 == 0))
			res, _ := out["result"].(map[string]any)
			content, _ := res["content"].([]any)
			if resp.StatusCode != 200 || len(content) != 1 || len(content[0].(map[string]any)["text"].(string)) != 1800<<10 {
				t.Errorf("call %d within the limit: HTTP %d, %.200v", i, resp.StatusCode, out)
			}
		})
	}
	wg.Wait()
}

// TestHostileCalls: an upstream that drips its answer past the deadline,
// or floods the call with requests to the client: the call fails (or,
// for the flood, succeeds) with an answer naming the upstream, the flood
// costs at most 16 refusals, and the process serves on. (Invalid, cut
// and too deep answers are in testdata/hostile.txtar.)
func TestHostileCalls(t *testing.T) {
	srv, hs := hostileUpstream(t, hostile.Good)
	e := testenv.New(t, testenv.Options{Tenant: testenv.Tenant([]postgres.Server{
		{Name: "Evil", Transport: tenant.TransportStreamableHTTP, URL: srv.URL}}, []string{"echo", "drip", "flood"}),
		Proxy: proxy.Options{RequestTimeout: 2 * time.Second}})
	call := func(tool, args string) map[string]any {
		_, out := e.Post(t, "/mcp", nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"evil__`+tool+`","arguments":`+args+`}}`)
		return out
	}
	out := call("drip", `{"bytes":1000,"delayMs":50}`)
	msg, _ := out["error"].(map[string]any)["message"].(string)
	if want := "did not answer within the request deadline"; rpcCode(out) != -32000 || !strings.Contains(msg, want) {
		t.Errorf("drip: %.300v; want -32000 with %q", out, want)
	}
	if out := call("flood", `{"count":1000}`); !strings.Contains(fmt.Sprint(out["result"]), "flood sent") {
		t.Errorf("flood: %.300v; want the result after the flood", out)
	}
	if n := hs.Responses.Load(); n > 16 {
		t.Errorf("the proxy answered %d of the flood's requests; want at most 16", n)
	}
	if out := call("echo", `{"text":"alive"}`); !strings.Contains(fmt.Sprint(out["result"]), "alive") {
		t.Errorf("echo after the hostile calls: %.300v", out)
	}
}

// TestCredentialsStayHome: an upstream whose SSE endpoint names another
// origin, and one that redirects to another origin: the calls through the
// proxy fail, and the other origin never receives the tenant's key.
func TestCredentialsStayHome(t *testing.T) {
	thief := &hostile.Thief{}
	thiefSrv := httptest.NewServer(thief)
	t.Cleanup(thiefSrv.Close)
	sse := httptest.NewServer(hostile.EndpointElsewhere(demotest.SSEHandler("sse"), thiefSrv.URL))
	t.Cleanup(func() { sse.CloseClientConnections(); sse.Close() })
	redirecting := &hostile.Redirector{To: thiefSrv.URL, Next: http.NotFoundHandler()}
	redirecting.On.Store(true)
	red := httptest.NewServer(redirecting)
	t.Cleanup(red.Close)

	var servers []stack.Server
	for _, s := range []postgres.Server{
		{Name: "Elsewhere", Transport: tenant.TransportSSE, URL: sse.URL},
		{Name: "Redirecting", Transport: tenant.TransportStreamableHTTP, URL: red.URL},
	} {
		s.AuthType = tenant.AuthAPIKey
		servers = append(servers, stack.Server{Server: s, Tools: []postgres.Tool{{Name: "echo"}},
			Credentials: tenant.Credentials{Headers: map[string]string{"X-API-Key": "tenant-secret"}}})
	}
	e := testenv.New(t, testenv.Options{Tenant: stack.Tenant{Servers: servers}})
	for _, tool := range []string{"elsewhere__echo", "redirecting__echo"} {
		_, out := e.Post(t, "/mcp", nil,
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"`+tool+`","arguments":{"text":"x"}}}`)
		if out["error"] == nil {
			t.Errorf("%s: %.300v; want an error", tool, out)
		}
	}
	if reqs, seen := thief.Seen(); reqs != 0 || len(seen) != 0 {
		t.Errorf("the other origin got %d request(s), credentials %q; want none", reqs, seen)
	}
}

// TestForgedCancel: a client of another tenant names the JSON-RPC ID of a
// call in flight in notifications/cancelled: the call goes on. The same
// notification with the call's own key cancels it, so the test can tell.
func TestForgedCancel(t *testing.T) {
	e := newEnv(t, proxy.Options{})
	other := e.AddInstance(t, "other", []postgres.Server{
		{Name: "Local", Transport: tenant.TransportStdio, Command: demotest.Binary(t), Args: []string{"--transport", "stdio"}},
	}, []string{"echo"})
	old := func(key string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + key, "MCP-Protocol-Version": "2025-11-25"}
	}
	for _, tt := range []struct {
		name      string
		canceller string
		cancelled bool
	}{{"another tenant's key", other, false}, {"the call's own key", e.Key, true}} {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan map[string]any, 1)
			go func() {
				_, out := e.Post(t, "/mcp", old(e.Key), `{"jsonrpc":"2.0","id":77,"method":"tools/call","params":{"name":"beta__slow","arguments":{"ms":1500}}}`)
				done <- out
			}()
			time.Sleep(300 * time.Millisecond)
			e.Post(t, "/mcp", old(tt.canceller), `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":77}}`)
			out := <-done
			if got := out["result"] == nil; got != tt.cancelled {
				t.Errorf("cancelled by %s: %.300v; want cancelled %v", tt.name, out, tt.cancelled)
			}
		})
	}
}

// TestListsLeftOut: an upstream whose every list page names another
// (endless, it used to hold the loader and grow its list for ever), and
// one whose tool list is larger than UPSTREAM_MAX_LIST_BYTES (bloated: 10
// tools described in 512 KiB each), are left out of the lists, with a log
// line that says why; the instance's other upstream is listed.
func TestListsLeftOut(t *testing.T) {
	for _, tt := range []struct {
		mode hostile.Mode
		why  string
	}{{hostile.Endless, "past 100 pages"}, {hostile.Bloated, "UPSTREAM_MAX_LIST_BYTES"}} {
		t.Run(string(tt.mode), func(t *testing.T) {
			bad, _ := hostileUpstream(t, tt.mode)
			good, _ := hostileUpstream(t, hostile.Good)
			e := testenv.New(t, testenv.Options{Tenant: testenv.Tenant([]postgres.Server{
				{Name: "Bad", Transport: tenant.TransportStreamableHTTP, URL: bad.URL},
				{Name: "Good", Transport: tenant.TransportStreamableHTTP, URL: good.URL},
			}, []string{"echo"})})
			s := e.Client(t, "/mcp", e.Key, "2025-11-25", nil)
			if got := toolNames(t, s); !slices.Equal(got, []string{"good__echo"}) {
				t.Errorf("tools = %v; want the good upstream's alone", got)
			}
			if !strings.Contains(e.Logs.String(), tt.why) {
				t.Errorf("no log line says %q:\n%.2000s", tt.why, e.Logs)
			}
		})
	}
}

// TestLargeBodiesTakeTurns: requests with large bodies take all the room
// they will hold (the body, its copies and one answer) in one step, so
// that more of them than the budget holds at once take turns instead of
// each holding a body while waiting for the rest: every call is answered.
func TestLargeBodiesTakeTurns(t *testing.T) {
	srv, _ := hostileUpstream(t, hostile.Good)
	e := testenv.New(t, testenv.Options{Tenant: testenv.Tenant([]postgres.Server{
		{Name: "Echo", Transport: tenant.TransportStreamableHTTP, URL: srv.URL}}, []string{"echo"}),
		Proxy: proxy.Options{Budget: budget.New(12<<20, 5*time.Second), MaxAnswerBytes: 2 << 20}, Pool: upstream.PoolOptions{MaxMessageBytes: 2 << 20}})
	text := strings.Repeat("e", 1<<20)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			resp, out := e.Post(t, "/mcp", nil,
				`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo__echo","arguments":{"text":"`+text+`"}}}`)
			if resp.StatusCode != 200 || !strings.Contains(fmt.Sprint(out["result"]), "eeee") {
				t.Errorf("call %d with a 1 MiB body: HTTP %d %.200v", i, resp.StatusCode, out)
			}
		})
	}
	wg.Wait()
}
