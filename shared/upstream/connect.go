// Package upstream connects to upstream MCP servers with the official SDK's
// client transports: Streamable HTTP, SSE and stdio, presenting the
// credentials of a config (package credentials) to its origin only.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/shared/credentials"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// ClientName is how the proxy introduces itself to upstreams.
const ClientName = "mcp-proxy"

// ConnectTimeout bounds connecting to an upstream and its initialize
// handshake.
const ConnectTimeout = 10 * time.Second

// inheritedEnv are the only variables of the proxy's own environment a
// stdio upstream inherits: the proxy's environment may hold the database
// URL and the encryption key (locally; in deployment they are in files),
// which no upstream may see.
var inheritedEnv = []string{"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ"}

// headersTransport is the SDK transport that reaches up, with the guard
// of an HTTP upstream (nil for stdio). httpClient is used for HTTP
// upstreams (nil for a default one); the config's headers are added to
// every request, and a 401 is ErrUnauthorized. Requests go only to the
// origin of up's URL and redirects are refused, whatever httpClient's own
// CheckRedirect. (The bearer tokens of OAUTH and CLOUD_RUN_IAM come from a
// Pool's Credentials.)
func headersTransport(up tenant.Upstream, httpClient *http.Client) (mcp.Transport, *guard, error) {
	if up.Transport == tenant.TransportStdio {
		t, err := transport(up, nil, defaultIsolation())
		return t, nil, err
	}
	c, g := withHeaders(httpClient, up)
	if g.refuse != nil {
		return nil, nil, g.refuse
	}
	t, err := transport(up, c, defaultIsolation())
	return t, g, err
}

// transport is headersTransport with client as it is; stdio upstreams start
// under iso.
func transport(up tenant.Upstream, client *http.Client, iso *isolation) (mcp.Transport, error) {
	switch up.Transport {
	case tenant.TransportStreamableHTTP, tenant.TransportSSE:
		if up.URL == "" {
			return nil, errors.New("no URL")
		}
		if up.Transport == tenant.TransportSSE {
			return detachedStream{&mcp.SSEClientTransport{Endpoint: up.URL, HTTPClient: client}}, nil
		}
		// The proxy asks, the upstream answers: no standalone stream.
		return &mcp.StreamableClientTransport{Endpoint: up.URL, HTTPClient: client, MaxRetries: -1, DisableStandaloneSSE: true}, nil
	case tenant.TransportStdio:
		cmd, err := stdioCommand(up, iso)
		if err != nil {
			return nil, err
		}
		return &mcp.CommandTransport{Command: cmd, TerminateDuration: stdioTerminate}, nil
	}
	return nil, fmt.Errorf("unknown transport %q", up.Transport)
}

// StdioEnv is the environment of a stdio upstream: a few harmless
// variables of the proxy's own, then the config's.
func StdioEnv(configEnv map[string]string) []string {
	var env []string
	for _, name := range inheritedEnv {
		if v, ok := os.LookupEnv(name); ok {
			env = append(env, name+"="+v)
		}
	}
	names := make([]string, 0, len(configEnv))
	for k := range configEnv {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		env = append(env, k+"="+configEnv[k])
	}
	return env
}

// withHeaders is c sending the headers of up's config, to up's origin
// only.
func withHeaders(c *http.Client, up tenant.Upstream) (*http.Client, *guard) {
	if c == nil {
		c = &http.Client{}
	}
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	g := newGuard(base, up, credentials.HeadersOnly{}, parseTarget(up.URL), DefaultMaxMessageBytes)
	return guardedClient(c, g), g
}

// Connect opens a client session to up, initialize included, within
// ConnectTimeout.
func Connect(ctx context.Context, up tenant.Upstream, httpClient *http.Client) (*mcp.ClientSession, error) {
	t, g, err := headersTransport(up, httpClient)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", up.Name, err)
	}
	client := mcp.NewClient(&mcp.Implementation{Name: ClientName, Version: "1"}, nil)
	cctx, cancel := context.WithTimeout(ctx, ConnectTimeout)
	defer cancel()
	session, err := client.Connect(cctx, t, nil)
	if err != nil {
		if refused := g.firstRefusal(); refused != nil {
			err = refused
		}
		return nil, fmt.Errorf("upstream %s: connect: %w", up.Name, err)
	}
	return session, nil
}

// Discover connects to up, lists its tools and disconnects. It presents
// the config's headers only; Pool.Discover also presents OAuth and Cloud
// Run IAM tokens.
func Discover(ctx context.Context, up tenant.Upstream) ([]*mcp.Tool, error) {
	s, err := Connect(ctx, up, nil)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	tools, err := ListTools(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: tools/list: %w", up.Name, err)
	}
	return tools, nil
}

// detachedStream connects an SSE transport with a context of its own: the
// transport's GET stream lives as long as the connection, which outlives
// the connect call, while connecting is still bounded by the caller's
// context.
type detachedStream struct{ mcp.Transport }

func (d detachedStream) Connect(ctx context.Context) (mcp.Connection, error) {
	streamCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	type result struct {
		conn mcp.Connection
		err  error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := d.Transport.Connect(streamCtx)
		done <- result{conn, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			cancel()
			return nil, r.err
		}
		return &cancelOnClose{Connection: r.conn, cancel: cancel}, nil
	case <-ctx.Done():
		cancel()
		if r := <-done; r.conn != nil {
			r.conn.Close()
		}
		return nil, ctx.Err()
	}
}

// cancelOnClose ends the stream's context when the connection closes.
type cancelOnClose struct {
	mcp.Connection
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.Connection.Close()
	c.cancel()
	return err
}
