package upstream

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"mcpproxy.dev/mcpproxy/internal/demo/demotest"
	"mcpproxy.dev/mcpproxy/internal/hostile"
	"mcpproxy.dev/mcpproxy/shared/credentials"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// The secrets of the tests below; none may reach another origin or appear
// in an error.
const (
	testAPIKey      = "the-api-key"
	testAccessToken = "the-access-token"
)

// thief is a hostile.Thief at an origin of its own, with its URL.
type thief struct {
	*hostile.Thief
	url string
}

func startThief(t *testing.T, next http.Handler) *thief {
	th := &thief{Thief: &hostile.Thief{Next: next}}
	srv := httptest.NewServer(th.Thief)
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close() })
	th.url = srv.URL
	return th
}

// check fails t if anything reached the thief.
func (th *thief) check(t *testing.T) {
	t.Helper()
	if reqs, seen := th.Seen(); reqs != 0 || len(seen) != 0 {
		t.Errorf("the other origin got %d request(s) with credentials %q; want none", reqs, seen)
	}
}

// startHostileSSE serves a demo server over SSE whose endpoint event
// names a thief serving the same sessions.
func startHostileSSE(t *testing.T) (*thief, string) {
	sse := demotest.SSEHandler("sse")
	th := startThief(t, sse)
	srv := httptest.NewServer(hostile.EndpointElsewhere(sse, th.url))
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close() })
	return th, srv.URL
}

// startRedirecting serves a demo server over Streamable HTTP that, once
// switched on, redirects every request to a thief serving the same
// sessions.
func startRedirecting(t *testing.T) (*hostile.Redirector, *thief, string) {
	h := demotest.Handler("redirecting")
	th := startThief(t, h)
	rd := &hostile.Redirector{To: th.url, Next: h}
	srv := httptest.NewServer(rd)
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close() })
	return rd, th, srv.URL + "/mcp"
}

// credentialed is an upstream at url that presents one kind of
// credential, with the pool options that kind needs.
type credentialed struct {
	name string
	up   func(url string) tenant.Upstream
	opts func(t *testing.T) PoolOptions
}

func credentialKinds() []credentialed {
	noOpts := func(*testing.T) PoolOptions { return PoolOptions{} }
	return []credentialed{
		{"API key", func(url string) tenant.Upstream {
			return tenant.Upstream{ConfigID: "c-key", Name: "keyed", Transport: tenant.TransportStreamableHTTP, URL: url, AuthType: tenant.AuthAPIKey,
				Credentials: tenant.Credentials{Headers: map[string]string{"X-API-Key": testAPIKey}}}
		}, noOpts},
		{"OAuth bearer", func(url string) tenant.Upstream {
			up := oauthUpstream(url, "http://127.0.0.1:1/token", tenant.OAuthToken{AccessToken: testAccessToken, TokenType: "Bearer", Expiry: time.Now().Add(time.Hour)})
			up.Name = "oauthed"
			return up
		}, noOpts},
		{"ID token", func(url string) tenant.Upstream {
			return tenant.Upstream{ConfigID: "c-run", Name: "run", Transport: tenant.TransportStreamableHTTP, URL: url, AuthType: tenant.AuthCloudRunIAM}
		}, func(*testing.T) PoolOptions {
			return PoolOptions{Credentials: credentials.New(credentials.Options{IDTokenSource: staticIDTokens})}
		}},
	}
}

// staticIDTokens makes a source of one Google ID token per audience.
func staticIDTokens(_ context.Context, audience string) (oauth2.TokenSource, error) {
	return oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "id-token-for-" + audience, Expiry: time.Now().Add(time.Hour)}), nil
}

// checkRefusal fails t unless err is a clear refusal naming the upstream
// and want, without a secret.
func checkRefusal(t *testing.T, err error, up tenant.Upstream, want ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("no error; want a refusal naming upstream %s and %q", up.Name, want)
		return
	}
	msg := err.Error()
	for _, w := range append([]string{"upstream " + up.Name}, want...) {
		if !strings.Contains(msg, w) {
			t.Errorf("err = %v; want it to name %q", err, w)
		}
	}
	for _, secret := range []string{testAPIKey, testAccessToken, "id-token-", "client-secret"} {
		if strings.Contains(msg, secret) {
			t.Errorf("err = %v holds a secret", err)
		}
	}
}

// TestSSEEndpointOtherOrigin: an SSE upstream whose endpoint event names
// another origin gets no POST there, neither from the pool (the proxy)
// nor from Discover (mcpadmin), and connecting fails naming that origin.
func TestSSEEndpointOtherOrigin(t *testing.T) {
	for _, kind := range credentialKinds() {
		t.Run("pool/"+kind.name, func(t *testing.T) {
			th, url := startHostileSSE(t)
			up := kind.up(url)
			up.Transport = tenant.TransportSSE
			p := newTestPool(t, kind.opts(t))
			_, err := p.Session(context.Background(), up)
			checkRefusal(t, err, up, th.url)
			th.check(t)
		})
	}
	t.Run("Discover", func(t *testing.T) {
		th, url := startHostileSSE(t)
		up := credentialKinds()[0].up(url)
		up.Transport = tenant.TransportSSE
		_, err := Discover(context.Background(), up)
		checkRefusal(t, err, up, th.url)
		th.check(t)
	})
}

// TestRedirectOtherOrigin: a Streamable HTTP upstream that redirects to
// another origin gets no request followed there, whatever the request
// (initialize, the SDK's tools/list, the pool's own tools/call) and
// whatever credential it carries; the call fails saying so.
func TestRedirectOtherOrigin(t *testing.T) {
	for _, kind := range credentialKinds() {
		t.Run(kind.name+"/connect", func(t *testing.T) {
			rd, th, url := startRedirecting(t)
			rd.On.Store(true)
			up := kind.up(url)
			_, err := newTestPool(t, kind.opts(t)).Session(context.Background(), up)
			checkRefusal(t, err, up, "redirect", th.url)
			th.check(t)
		})
		for _, call := range callPaths {
			t.Run(kind.name+"/"+call.name, func(t *testing.T) {
				rd, th, url := startRedirecting(t)
				up := kind.up(url)
				p := newTestPool(t, kind.opts(t))
				if _, err := p.Session(context.Background(), up); err != nil {
					t.Fatal(err)
				}
				rd.On.Store(true)
				checkRefusal(t, call.call(p, up), up, "redirect", th.url)
				th.check(t)
			})
		}
	}
	t.Run("Discover", func(t *testing.T) {
		rd, th, url := startRedirecting(t)
		rd.On.Store(true)
		up := credentialKinds()[0].up(url)
		_, err := Discover(context.Background(), up)
		checkRefusal(t, err, up, "redirect", th.url)
		th.check(t)
	})
}

// TestTargetAllows: an origin is the scheme, host and port, however
// the URL spells them.
func TestTargetAllows(t *testing.T) {
	for _, tt := range []struct {
		configured, request string
		want                bool
	}{
		{"https://up.example/mcp", "https://up.example/other?x=1", true},
		{"https://up.example/mcp", "HTTPS://UP.example:443/mcp", true},
		{"http://127.0.0.1:8080/mcp", "http://127.0.0.1:8080/messages?sessionid=1", true},
		{"http://[::1]:8080/mcp", "http://[::1]:8080/x", true},
		{"https://up.example/mcp", "http://up.example/mcp", false},
		{"https://up.example/mcp", "https://up.example:8443/mcp", false},
		{"https://up.example/mcp", "https://up.example.evil/mcp", false},
		{"https://up.example/mcp", "https://evil.example/mcp", false},
		{"http://127.0.0.1:8080/mcp", "http://127.0.0.1:8081/mcp", false},
		{"http://127.0.0.1:8080/mcp", "http://localhost:8080/mcp", false},
	} {
		u, err := url.Parse(tt.request)
		if err != nil {
			t.Fatal(err)
		}
		if got := parseTarget(tt.configured).allows(u); got != tt.want {
			t.Errorf("%s allows %s = %v; want %v", tt.configured, tt.request, got, tt.want)
		}
	}
}

// countingTransport counts the requests it is given and sends none.
type countingTransport struct{ n atomic.Int32 }

var errNotSent = errors.New("not sent: test transport")

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	if r.Body != nil {
		r.Body.Close()
	}
	return nil, errNotSent
}

// TestPlainHTTP: credentials go over plain http only to a loopback
// address or to a server an operator let use http: to any other host the
// request is refused before it is made, by the pool and by Connect alike,
// with the way to opt out.
func TestPlainHTTP(t *testing.T) {
	connects := map[string]func(*http.Client, tenant.Upstream) error{
		"pool": func(c *http.Client, up tenant.Upstream) error {
			p := NewPool(PoolOptions{HTTPClient: c})
			defer p.Close()
			_, err := p.Session(context.Background(), up)
			return err
		},
		"Connect": func(c *http.Client, up tenant.Upstream) error {
			_, err := Connect(context.Background(), up, c)
			return err
		},
	}
	for name, connect := range connects {
		for _, tt := range []struct {
			url  string
			sent bool
		}{
			{"http://upstream.invalid/mcp", false},
			{"http://10.0.0.1:8080/mcp", false},
			{"http://localhost.invalid/mcp", false},
			{"https://upstream.invalid/mcp", true},
			{"http://localhost:1/mcp", true},
			{"http://127.0.0.2:1/mcp", true},
			{"http://[::1]:1/mcp", true},
		} {
			t.Run(name+"/"+tt.url, func(t *testing.T) {
				for _, transport := range []tenant.Transport{tenant.TransportStreamableHTTP, tenant.TransportSSE} {
					c := &countingTransport{}
					up := tenant.Upstream{ConfigID: "c1", ServerID: "srv-1", Name: "plain", Transport: transport, URL: tt.url,
						AuthType: tenant.AuthAPIKey, Credentials: tenant.Credentials{Headers: map[string]string{"X-API-Key": testAPIKey}}}
					err := connect(&http.Client{Transport: c}, up)
					if sent := c.n.Load() > 0; sent != tt.sent {
						t.Errorf("%s: %d request(s) made; want sent = %v (err = %v)", transport, c.n.Load(), tt.sent, err)
					}
					if !tt.sent {
						checkRefusal(t, err, up, "https", "mcpadmin server update --server srv-1 --allow-http")
					} else if !errors.Is(err, errNotSent) {
						t.Errorf("%s: err = %v; want the test transport's", transport, err)
					}

					c = &countingTransport{}
					up.AllowHTTP = true
					if err := connect(&http.Client{Transport: c}, up); c.n.Load() == 0 || !errors.Is(err, errNotSent) {
						t.Errorf("%s with AllowHTTP: %d request(s) made, err = %v; want it sent", transport, c.n.Load(), err)
					}
				}
			})
		}
	}
}

// TestPlainHTTPAtCreate: before a server is stored (mcpadmin server
// create discovers its tools) the refusal names the flag of server create.
func TestPlainHTTPAtCreate(t *testing.T) {
	up := tenant.Upstream{Name: "new", Transport: tenant.TransportStreamableHTTP, URL: "http://upstream.invalid/mcp"}
	_, err := Discover(context.Background(), up)
	checkRefusal(t, err, up, "https", "server create", "--allow-http")
}
