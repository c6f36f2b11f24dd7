package demotest

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/internal/demo"
)

// Handler serves one demo server named name over Streamable HTTP, with
// the SDK's defaults (a session per client).
func Handler(name string) http.Handler {
	server := demo.NewServer(name)
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
}

// Upstream is the demo server over Streamable HTTP, behind a Gate, on a
// loopback address it keeps when stopped and started again; a restart
// loses its sessions as a real one does.
type Upstream struct {
	// Gate records the Authorization of every request and refuses them
	// on demand; it lives as long as the Upstream, across restarts.
	Gate *Gate

	t    testing.TB
	name string
	addr string
	srv  *httptest.Server
}

// StartUpstream starts the demo server named name, stopped when the test
// ends.
func StartUpstream(t testing.TB, name string) *Upstream {
	t.Helper()
	u := &Upstream{Gate: &Gate{Next: Handler(name)}, t: t, name: name}
	u.Start()
	t.Cleanup(u.Stop)
	return u
}

// URL is the server's root, http://host:port; it serves MCP on any path.
func (u *Upstream) URL() string { return "http://" + u.addr }

// Start serves again on the address of the first start, with a new demo
// server (no sessions, the same tools).
func (u *Upstream) Start() {
	u.t.Helper()
	u.Gate.Next = Handler(u.name)
	u.srv = httptest.NewUnstartedServer(u.Gate)
	if u.addr != "" {
		l, err := net.Listen("tcp", u.addr)
		if err != nil {
			u.t.Fatalf("restart upstream on %s: %v", u.addr, err)
		}
		u.srv.Listener = l
	}
	u.srv.Start()
	u.addr = u.srv.Listener.Addr().String()
}

// Stop closes every connection and stops serving. It does nothing when
// stopped.
func (u *Upstream) Stop() {
	if u.srv != nil {
		u.srv.CloseClientConnections()
		u.srv.Close()
		u.srv = nil
	}
}

// SSEHandler serves one demo server named name over the 2024-11-05
// HTTP+SSE transport.
func SSEHandler(name string) http.Handler {
	server := demo.NewServer(name)
	return mcp.NewSSEHandler(func(*http.Request) *mcp.Server { return server }, nil)
}

// StartSSEUpstream serves the demo server over HTTP+SSE only, stopped
// when the test ends, counting the POSTs it refuses (those without a
// session: a Streamable HTTP client's).
func StartSSEUpstream(t testing.TB, name string) (*httptest.Server, *atomic.Int32) {
	sse := SSEHandler(name)
	var refused atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Query().Get("sessionid") == "" {
			refused.Add(1)
		}
		sse.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		// A client's session holds an SSE stream open: end it, or Close
		// waits for it.
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv, &refused
}
