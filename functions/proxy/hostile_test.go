package proxy_test

import (
	"context"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/internal/hostile"
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
