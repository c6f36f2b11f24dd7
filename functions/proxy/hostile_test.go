package proxy_test

import (
	"context"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/functions/flushlogs"
	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/internal/hostile"
	"mcpproxy.dev/mcpproxy/shared/fstest"
	"mcpproxy.dev/mcpproxy/shared/logbuffer"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
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
		e := newEnv(t, proxy.Options{})
		nulls, _ := hostileUpstream(t, hostile.Nulls)
		malformed, _ := hostileUpstream(t, hostile.Malformed)
		key := e.instanceWith(t, "hostile", []postgres.Server{
			{Name: "Nulls", Transport: tenant.TransportStreamableHTTP, URL: nulls.URL},
			{Name: "Malformed", Transport: tenant.TransportStreamableHTTP, URL: malformed.URL},
		}, []string{"echo"})
		ctx := context.Background()
		for _, path := range []string{"/mcp", "/mcp/" + instanceOf(t, e, key) + "/nulls"} {
			s := e.client(t, path, key, version)
			tools := toolNames(t, s)
			if len(tools) == 0 || !slices.ContainsFunc(tools, func(n string) bool { return n == "echo" || n == "nulls__echo" }) {
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

// instanceOf is the instance of key.
func instanceOf(t *testing.T, e *env, key string) string {
	t.Helper()
	k, err := e.db.LookupAPIKey(context.Background(), tenant.HashKey(key))
	if err != nil {
		t.Fatal(err)
	}
	return k.InstanceID
}

// TestHostileClients: what one tenant's client can send that must cost
// the process no more than a refusal, and what it can no longer hide
// from the request log.
func TestHostileClients(t *testing.T) {
	ctx := context.Background()
	store := &logbuffer.Firestore{Client: fstest.Client(t, fstest.Host(t)), Collection: fstest.Collection(t)}
	buf := logbuffer.New(store, logbuffer.Options{BatchEntries: 40, MaxAge: 50 * time.Millisecond})
	e := newEnv(t, proxy.Options{RequestLog: buf})
	old := map[string]string{"Authorization": "Bearer " + e.key, "MCP-Protocol-Version": "2025-03-26"}
	ping := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	bomb := func(open, closing string, n int) string {
		return `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":` + strings.Repeat(open, n) + strings.Repeat(closing, n) + `}}`
	}
	batch := func(n int, msg string) string { return "[" + strings.TrimSuffix(strings.Repeat(msg+",", n), ",") + "]" }
	tests := []struct {
		name   string
		body   string
		status int
		code   int
	}{
		{"4 MiB of nested arrays", bomb("[", "]", 2<<20-40), 400, -32600},
		{"4 MiB of nested objects, unclosed", bomb(`{"a":`, "", (4<<20-60)/5), 400, -32600},
		{"nested arrays in a batch", "[" + bomb("[", "]", 5000) + "]", 400, -32600},
		{"deep but within the limit", bomb("[", "]", 900), 200, 0},
		{"batch over the limit", batch(51, ping), 400, -32600},
		{"batch of 50,000 calls", batch(50000, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha__echo"}}`), 400, -32600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, out := e.post(t, "/mcp", old, tt.body)
			if resp.StatusCode != tt.status || rpcCode(out) != tt.code {
				t.Errorf("got HTTP %d code %d (%.200v); want HTTP %d code %d", resp.StatusCode, rpcCode(out), out, tt.status, tt.code)
			}
		})
	}

	// A batch is logged as the requests it holds, each with its tool.
	const calls = `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"a"}}},` +
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha__add","arguments":{"a":1,"b":2}}},` +
		`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"beta__echo","arguments":{"text":"b"}}}]`
	if resp, _ := e.post(t, "/mcp", old, calls); resp.StatusCode != 200 {
		t.Fatalf("batch of three calls: HTTP %d", resp.StatusCode)
	}
	if err := buf.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := flushlogs.NewFlusher(e.db.Pool, store, flushlogs.Options{}).Run(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := e.db.Pool.Query(ctx, `SELECT tool_name FROM mcp_server_request_logs WHERE method = 'tools/call' ORDER BY tool_name`)
	if err != nil {
		t.Fatal(err)
	}
	tools, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if want := []string{"alpha__add", "alpha__echo", "beta__echo"}; err != nil || !slices.Equal(tools, want) {
		t.Errorf("logged calls %v (%v); want %v", tools, err, want)
	}
}
