package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/internal/demo/demotest"
	"mcpproxy.dev/mcpproxy/shared/credentials"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

func newTestPool(t *testing.T, opts PoolOptions) *Pool {
	p := NewPool(opts)
	t.Cleanup(p.Close)
	return p
}

func listTools(p *Pool, up tenant.Upstream) error {
	return p.Do(context.Background(), up, Idempotent, func(ctx context.Context, s *mcp.ClientSession) error {
		_, err := ListTools(ctx, s)
		return err
	})
}

func callDirect(p *Pool, up tenant.Upstream) error {
	return p.Do(context.Background(), up, Once, func(ctx context.Context, s *mcp.ClientSession) error {
		res, err := p.postTool(ctx, up, s, toolPost{Name: "echo", Arguments: json.RawMessage(`{"text":"x"}`)})
		res.Close()
		return err
	})
}

func callSDK(p *Pool, up tenant.Upstream) error {
	return p.Do(context.Background(), up, Idempotent, func(ctx context.Context, s *mcp.ClientSession) error {
		_, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "x"}})
		return err
	})
}

// callPaths are the ways a request reaches an upstream: the pool's own
// tools/call and the SDK's requests.
var callPaths = []struct {
	name string
	call func(*Pool, tenant.Upstream) error
}{
	{"direct tools/call", callDirect},
	{"SDK tools/list", listTools},
	{"SDK tools/call", callSDK},
}

// TestUnauthorized: a 401 is ErrUnauthorized through every path the SDK
// and the pool wrap it in, is sent once (no retry, no reconnect loop) and
// leaves the session in the pool, so the upstream is reached again once
// it accepts the credentials.
func TestUnauthorized(t *testing.T) {
	for _, tt := range callPaths {
		t.Run(tt.name, func(t *testing.T) {
			demoUp := demotest.StartUpstream(t, "")
			g, url := demoUp.Gate, demoUp.URL()+"/mcp"
			up := tenant.Upstream{ConfigID: "c1", Name: "locked", Transport: tenant.TransportStreamableHTTP, URL: url, AuthType: tenant.AuthAPIKey,
				Credentials: tenant.Credentials{Headers: map[string]string{"X-API-Key": "k"}}}
			p := newTestPool(t, PoolOptions{})

			g.Refuse(true)
			_, err := p.Session(context.Background(), up)
			if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "locked") {
				t.Errorf("connect: err = %v; want ErrUnauthorized naming the upstream", err)
			}
			if p.Len() != 0 {
				t.Errorf("%d sessions after a refused connect; want 0", p.Len())
			}

			g.Refuse(false)
			if err := tt.call(p, up); err != nil {
				t.Fatalf("call with the upstream accepting: %v", err)
			}
			g.Refuse(true)
			before := g.Refusals()
			err = tt.call(p, up)
			if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "locked") {
				t.Errorf("call: err = %v; want ErrUnauthorized naming the upstream", err)
			}
			if n := g.Refusals() - before; n != 1 {
				t.Errorf("the refused call reached the upstream %d times; want once", n)
			}
			if p.Len() != 1 {
				t.Errorf("%d sessions after a refused call; want the session kept", p.Len())
			}
			g.Refuse(false)
			if err := tt.call(p, up); err != nil {
				t.Errorf("call after the upstream accepts again: %v", err)
			}
		})
	}
}

// fakeCredentials is an injected Credentials: it presents a bearer token
// of its own, counts what is asked of it, and fails while told to.
type fakeCredentials struct {
	mu                sync.Mutex
	syncs, authorised int
	syncErr, authErr  error
}

func (f *fakeCredentials) Sync(tenant.Upstream) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.syncs++
	return f.syncErr
}

func (f *fakeCredentials) Authorize(up tenant.Upstream, r *http.Request) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.authErr != nil {
		return f.authErr
	}
	f.authorised++
	r.Header.Set("Authorization", "Bearer fake-for-"+up.ConfigID)
	return nil
}

func (f *fakeCredentials) fail(syncErr, authErr error) {
	f.mu.Lock()
	f.syncErr, f.authErr = syncErr, authErr
	f.mu.Unlock()
}

func (f *fakeCredentials) counts() (syncs, authorised int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.syncs, f.authorised
}

// TestInjectedCredentials: the Credentials of PoolOptions are synced once
// per call and authorise every request, the SDK's and the direct
// tools/call; an error of theirs, of whatever type, fails the call as a
// *credentials.Error naming the upstream, without losing the session.
func TestInjectedCredentials(t *testing.T) {
	demoUp := demotest.StartUpstream(t, "")
	g, url := demoUp.Gate, demoUp.URL()+"/mcp"
	fake := &fakeCredentials{}
	p := newTestPool(t, PoolOptions{Credentials: fake})
	up := tenant.Upstream{ConfigID: "c1", Name: "faked", Transport: tenant.TransportStreamableHTTP, URL: url}
	for _, path := range callPaths {
		if err := path.call(p, up); err != nil {
			t.Fatal(err)
		}
	}
	if got := g.Authorizations(); len(got) != 1 || got[0] != "Bearer fake-for-c1" {
		t.Errorf("Authorization headers = %q; want only the fake's", got)
	}
	// initialize, notifications/initialized and one request per call.
	if syncs, authorised := fake.counts(); syncs != len(callPaths) || authorised < len(callPaths)+2 {
		t.Errorf("%d syncs, %d requests authorised; want %d syncs and every request", syncs, authorised, len(callPaths))
	}

	for _, tt := range []struct {
		name             string
		syncErr, authErr error
		want             error
	}{
		{"sync", fmt.Errorf("no tokens: %w", ErrUnauthorized), nil, ErrUnauthorized},
		{"authorize", nil, errVaultSealed, errVaultSealed},
	} {
		fake.fail(tt.syncErr, tt.authErr)
		for _, path := range callPaths {
			err := path.call(p, up)
			cerr, ok := errors.AsType[*credentials.Error](err)
			if !ok || !errors.Is(err, tt.want) || cerr.Upstream != "faked" || !strings.Contains(err.Error(), "upstream faked") {
				t.Errorf("%s, %s: err = %v; want a *credentials.Error for upstream faked wrapping %v", tt.name, path.name, err, tt.want)
			}
		}
		if p.Len() != 1 {
			t.Errorf("%s: %d sessions; want the session kept", tt.name, p.Len())
		}
	}
}

var errVaultSealed = errors.New("the vault is sealed")

func oauthUpstream(url, tokenURL string, tok tenant.OAuthToken) tenant.Upstream {
	return tenant.Upstream{ConfigID: "cfg-1", Name: "drive", Transport: tenant.TransportStreamableHTTP, URL: url, AuthType: tenant.AuthOAuth,
		Credentials: tenant.Credentials{OAuth: &tenant.OAuthCredentials{TokenURL: tokenURL, ClientID: "client-1", ClientSecret: "client-secret",
			Scopes: []string{"read"}, OAuthToken: tok}}}
}

// TestKey: the session key follows the target and the credentials the
// upstream sees, but not the OAuth tokens the pool refreshes itself.
func TestKey(t *testing.T) {
	base := oauthUpstream("https://drive.example/mcp", "https://auth.example/token",
		tenant.OAuthToken{AccessToken: "a1", RefreshToken: "r1", Expiry: time.Unix(1e9, 0)})
	edit := func(f func(up *tenant.Upstream, o *tenant.OAuthCredentials)) tenant.Upstream {
		up := base
		o := *base.Credentials.OAuth
		up.Credentials.OAuth = &o
		f(&up, &o)
		return up
	}
	for _, tt := range []struct {
		name string
		up   tenant.Upstream
		same bool
	}{
		{"new access token", edit(func(_ *tenant.Upstream, o *tenant.OAuthCredentials) {
			o.AccessToken = "a2"
			o.Expiry = time.Unix(2e9, 0)
		}), true},
		{"new refresh token", edit(func(_ *tenant.Upstream, o *tenant.OAuthCredentials) { o.RefreshToken = "r2" }), true},
		{"client ID", edit(func(_ *tenant.Upstream, o *tenant.OAuthCredentials) { o.ClientID = "other" }), false},
		{"client secret", edit(func(_ *tenant.Upstream, o *tenant.OAuthCredentials) { o.ClientSecret = "other" }), false},
		{"token URL", edit(func(_ *tenant.Upstream, o *tenant.OAuthCredentials) { o.TokenURL = "https://other/token" }), false},
		{"scopes", edit(func(_ *tenant.Upstream, o *tenant.OAuthCredentials) { o.Scopes = []string{"read", "write"} }), false},
		{"allow http", edit(func(up *tenant.Upstream, _ *tenant.OAuthCredentials) { up.AllowHTTP = true }), false},
		{"auth type", edit(func(up *tenant.Upstream, _ *tenant.OAuthCredentials) { up.AuthType = tenant.AuthCloudRunIAM }), false},
		{"header", edit(func(up *tenant.Upstream, _ *tenant.OAuthCredentials) {
			up.Credentials.Headers = map[string]string{"X": "y"}
		}), false},
	} {
		if same := Key(tt.up) == Key(base); same != tt.same {
			t.Errorf("%s: same key = %v; want %v", tt.name, same, tt.same)
		}
	}
}
