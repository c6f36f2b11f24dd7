package upstream_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/internal/demo"
	"mcpproxy.dev/mcpproxy/internal/demo/demotest"
	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/upstream"
)

// TestSSEFallback: a server registered as Streamable HTTP that speaks
// only HTTP+SSE is reached over SSE, and a new session after the first
// goes to SSE at once; a Streamable HTTP server is not taken for one.
func TestSSEFallback(t *testing.T) {
	srv, refused := demotest.StartSSEUpstream(t, "old")
	modern := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return demo.NewServer("new") }, nil))
	t.Cleanup(modern.Close)

	p := upstream.NewPool(upstream.PoolOptions{})
	t.Cleanup(p.Close)
	up := tenant.Upstream{ConfigID: "c1", Name: "Old", Transport: tenant.TransportStreamableHTTP, URL: srv.URL}
	if !p.Direct(up) {
		t.Error("a Streamable HTTP upstream not yet tried is not Direct")
	}
	s, err := p.Session(context.Background(), up)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.InitializeResult().ServerInfo.Name; got != "old" {
		t.Errorf("connected to %q", got)
	}
	first := refused.Load()
	if first == 0 {
		t.Fatal("the Streamable HTTP way was never tried")
	}
	if p.Direct(up) {
		t.Error("an SSE-only upstream is still Direct: tools/call would be posted the Streamable HTTP way")
	}
	p.Drop(up, s)
	s2, err := p.Session(context.Background(), up)
	if err != nil {
		t.Fatal(err)
	}
	if s2 == s {
		t.Fatal("Drop kept the session")
	}
	if _, err := s2.ListTools(context.Background(), nil); err != nil {
		t.Errorf("list over the second SSE session: %v", err)
	}
	if n := refused.Load(); n != first {
		t.Errorf("the second session tried Streamable HTTP again (%d refused POSTs, then %d)", first, n)
	}

	m := tenant.Upstream{ConfigID: "c2", Name: "New", Transport: tenant.TransportStreamableHTTP, URL: modern.URL}
	if _, err := p.Session(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if !p.Direct(m) {
		t.Error("a Streamable HTTP server was taken for an SSE-only one")
	}
}
