package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/oauth2"

	"mcpproxy.dev/mcpproxy/internal/demo/demotest"
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

// TestUnauthorized: a 401 is ErrUnauthorized through every path the SDK
// and the pool wrap it in, is sent once (no retry, no reconnect loop) and
// leaves the session in the pool, so the upstream is reached again once
// it accepts the credentials.
func TestUnauthorized(t *testing.T) {
	for _, tt := range []struct {
		name string
		call func(*Pool, tenant.Upstream) error
	}{
		{"direct tools/call", callDirect},
		{"SDK tools/list", listTools},
		{"SDK tools/call", callSDK},
	} {
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

// fakeIDTokens is an injected ID token source maker that counts what is
// asked of it.
type fakeIDTokens struct {
	lifetime time.Duration
	fail     error

	mu      sync.Mutex
	sources map[string]int // audience → sources made
	fetches int
}

func (f *fakeIDTokens) make(_ context.Context, audience string) (oauth2.TokenSource, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	if f.sources == nil {
		f.sources = map[string]int{}
	}
	f.sources[audience]++
	return tokenFunc(func() (*oauth2.Token, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.fetches++
		return &oauth2.Token{AccessToken: fmt.Sprintf("id-token-%d-for-%s", f.fetches, audience), Expiry: time.Now().Add(f.lifetime)}, nil
	}), nil
}

type tokenFunc func() (*oauth2.Token, error)

func (f tokenFunc) Token() (*oauth2.Token, error) { return f() }

// TestCloudRunIAM: every request to a CLOUD_RUN_IAM upstream, the SDK's
// and the direct tools/call, carries a Google ID token whose audience is
// the upstream's origin, fetched once while it is not about to expire.
func TestCloudRunIAM(t *testing.T) {
	demoUp := demotest.StartUpstream(t, "")
	g, url := demoUp.Gate, demoUp.URL()+"/mcp"
	ids := &fakeIDTokens{lifetime: time.Hour}
	p := newTestPool(t, PoolOptions{IDTokenSource: ids.make})
	up := tenant.Upstream{ConfigID: "c1", Name: "run", Transport: tenant.TransportStreamableHTTP, URL: url, AuthType: tenant.AuthCloudRunIAM}
	for range 3 {
		if err := listTools(p, up); err != nil {
			t.Fatal(err)
		}
		if err := callDirect(p, up); err != nil {
			t.Fatal(err)
		}
	}
	audience := strings.TrimSuffix(url, "/mcp")
	want := "Bearer id-token-1-for-" + audience
	if got := g.Authorizations(); len(got) != 1 || got[0] != want {
		t.Errorf("Authorization headers = %q; want only %q", got, want)
	}
	if len(ids.sources) != 1 || ids.sources[audience] != 1 || ids.fetches != 1 {
		t.Errorf("sources %v, %d fetches; want one source for %s and one fetch", ids.sources, ids.fetches, audience)
	}

	// A token within the refresh margin of its expiry is not reused.
	short := &fakeIDTokens{lifetime: 30 * time.Second}
	p2 := newTestPool(t, PoolOptions{IDTokenSource: short.make})
	for range 2 {
		if err := callDirect(p2, up); err != nil {
			t.Fatal(err)
		}
	}
	if short.fetches < 3 {
		t.Errorf("%d fetches of a token about to expire for a connect and two calls; want one per request", short.fetches)
	}
}

func TestCloudRunIAMFailures(t *testing.T) {
	demoUp := demotest.StartUpstream(t, "")
	url := demoUp.URL() + "/mcp"
	up := tenant.Upstream{ConfigID: "c1", Name: "run", Transport: tenant.TransportStreamableHTTP, URL: url, AuthType: tenant.AuthCloudRunIAM}
	noSource := newTestPool(t, PoolOptions{IDTokenSource: (&fakeIDTokens{fail: errors.New("no credentials found")}).make})
	noToken := newTestPool(t, PoolOptions{IDTokenSource: func(context.Context, string) (oauth2.TokenSource, error) {
		return tokenFunc(func() (*oauth2.Token, error) { return nil, errors.New("metadata server unreachable") }), nil
	}})
	for name, p := range map[string]*Pool{"no source": noSource, "no token": noToken} {
		t.Run(name, func(t *testing.T) {
			err := listTools(p, up)
			if err == nil || !strings.Contains(err.Error(), "upstream run") || !strings.Contains(err.Error(), "ID token") {
				t.Errorf("err = %v; want a failure to get an ID token naming upstream run", err)
			}
		})
	}
}

func oauthUpstream(url, tokenURL string, tok tenant.OAuthToken) tenant.Upstream {
	return tenant.Upstream{ConfigID: "cfg-1", Name: "drive", Transport: tenant.TransportStreamableHTTP, URL: url, AuthType: tenant.AuthOAuth,
		Credentials: tenant.Credentials{OAuth: &tenant.OAuthCredentials{TokenURL: tokenURL, ClientID: "client-1", ClientSecret: "client-secret",
			Scopes: []string{"read"}, OAuthToken: tok}}}
}

// TestOAuthRefresh: an access token about to expire is refreshed before
// it is used, the new tokens are handed to SaveToken, and the source
// survives the instance cache still holding the old tokens; tokens an
// operator stores replace it without a new session.
func TestOAuthRefresh(t *testing.T) {
	demoUp := demotest.StartUpstream(t, "")
	g, url := demoUp.Gate, demoUp.URL()+"/mcp"
	te := demotest.StartTokenEndpoint(t, "client-1", "client-secret")
	var saved []string
	var mu sync.Mutex
	p := newTestPool(t, PoolOptions{SaveToken: func(_ context.Context, configID string, tok tenant.OAuthToken) error {
		mu.Lock()
		defer mu.Unlock()
		saved = append(saved, configID+" "+tok.AccessToken+" "+tok.RefreshToken)
		return nil
	}})
	stored := tenant.OAuthToken{AccessToken: "access-token-1", RefreshToken: "refresh-token-1", TokenType: "Bearer", Expiry: time.Now().Add(30 * time.Second)}
	up := oauthUpstream(url, te.URL, stored)
	for range 2 {
		if err := callDirect(p, up); err != nil {
			t.Fatal(err)
		}
		if err := listTools(p, up); err != nil {
			t.Fatal(err)
		}
	}
	if got := te.Presented(); len(got) != 1 || got[0] != "refresh-token-1" {
		t.Errorf("refreshes with %v; want one with refresh-token-1", got)
	}
	if got := g.Authorizations(); len(got) != 1 || got[0] != "Bearer access-token-2" {
		t.Errorf("the upstream got %q; want only the refreshed Bearer access-token-2", got)
	}
	if len(saved) != 1 || saved[0] != "cfg-1 access-token-2 refresh-token-2" {
		t.Errorf("saved %q; want the refreshed tokens of cfg-1", saved)
	}

	// What the database holds after the save: the same source goes on.
	up = oauthUpstream(url, te.URL, tenant.OAuthToken{AccessToken: "access-token-2", RefreshToken: "refresh-token-2", Expiry: time.Now().Add(time.Hour)})
	if err := callDirect(p, up); err != nil {
		t.Fatal(err)
	}
	if n := len(te.Presented()); n != 1 {
		t.Errorf("%d refreshes; want still 1", n)
	}

	// An operator stores new tokens: used at once, on the same session.
	up = oauthUpstream(url, te.URL, tenant.OAuthToken{AccessToken: "access-op", RefreshToken: "refresh-op", Expiry: time.Now().Add(time.Hour)})
	if err := callDirect(p, up); err != nil {
		t.Fatal(err)
	}
	if got := g.Authorizations(); got[len(got)-1] != "Bearer access-op" {
		t.Errorf("last Authorization %q; want the operator's Bearer access-op", got[len(got)-1])
	}
	if p.Len() != 1 {
		t.Errorf("%d sessions; want one: new tokens are no reason to reconnect", p.Len())
	}
}

func TestOAuthFailures(t *testing.T) {
	demoUp := demotest.StartUpstream(t, "")
	url := demoUp.URL() + "/mcp"
	refusing := demotest.StartTokenEndpoint(t, "client-1", "client-secret")
	refusing.Refuse(true)
	for _, tt := range []struct {
		name string
		up   tenant.Upstream
		want string
	}{
		{"refresh refused", oauthUpstream(url, refusing.URL, tenant.OAuthToken{AccessToken: "old", RefreshToken: "revoked", Expiry: time.Now().Add(-time.Minute)}), "refused the refresh"},
		{"expired without refresh token", oauthUpstream(url, refusing.URL, tenant.OAuthToken{AccessToken: "old", Expiry: time.Now().Add(-time.Minute)}), "no refresh token"},
		{"no OAuth stored", tenant.Upstream{ConfigID: "c", Name: "drive", Transport: tenant.TransportStreamableHTTP, URL: url, AuthType: tenant.AuthOAuth}, "no OAuth tokens"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestPool(t, PoolOptions{})
			err := callDirect(p, tt.up)
			if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "upstream drive") {
				t.Errorf("err = %v; want ErrUnauthorized naming upstream drive and %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "revoked") || strings.Contains(err.Error(), "old") {
				t.Errorf("err = %v holds a token", err)
			}
		})
	}
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
