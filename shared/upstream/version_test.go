package upstream

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/internal/hostile"
	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/wire"
)

// TestStatelessOnlyUpstream: the pool asks upstreams for 2025-11-25, and
// an upstream of 2026-07-28 alone, which answers initialize "method not
// found", is reached all the same: the pool discovers it and calls its
// tools within 2026-07-28.
func TestStatelessOnlyUpstream(t *testing.T) {
	for _, tt := range []struct {
		name          string
		statelessOnly bool
		want          string
	}{
		{"an upstream with initialize", false, DefaultProtocolVersion},
		{"an upstream of 2026-07-28 alone", true, wire.V20260728},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(&hostile.Server{Mode: hostile.Good, StatelessOnly: tt.statelessOnly})
			defer srv.Close()
			pool := NewPool(PoolOptions{})
			defer pool.Close()
			up := tenant.Upstream{ConfigID: "c", ServerID: "s", Name: "hostile", Transport: tenant.TransportStreamableHTTP, URL: srv.URL, AllowHTTP: true}
			ctx := context.Background()
			s, err := pool.Session(ctx, up)
			if err != nil {
				t.Fatalf("session: %v", err)
			}
			if got := sessionVersion(s); got != tt.want {
				t.Errorf("session speaks %q; want %q", got, tt.want)
			}
			var tools []*mcp.Tool
			if err := pool.Do(ctx, up, Idempotent, func(ctx context.Context, s *mcp.ClientSession) error {
				tools, err = ListTools(ctx, s)
				return err
			}); err != nil || len(tools) != len(hostile.Tools) {
				t.Fatalf("tools/list: %d tools, %v; want %d", len(tools), err, len(hostile.Tools))
			}
			res, err := pool.CallTool(ctx, up, Call{Name: "echo", Arguments: json.RawMessage(`{"text":"hi"}`)})
			if err != nil {
				t.Fatalf("tools/call: %v", err)
			}
			raw, err := pool.ReadAll(ctx, res)
			if err != nil {
				t.Fatalf("tools/call result: %v", err)
			}
			var out mcp.CallToolResult
			if err := json.Unmarshal(raw, &out); err != nil || len(out.Content) != 1 {
				t.Fatalf("tools/call result %s: %v", raw, err)
			}
		})
	}
}
