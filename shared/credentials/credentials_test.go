package credentials_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"mcpproxy.dev/mcpproxy/internal/demo/demotest"
	"mcpproxy.dev/mcpproxy/internal/hostile"
	"mcpproxy.dev/mcpproxy/shared/credentials"
	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/upstream"
)

// authorize syncs up as a call to it does, then returns the
// Authorization header of a request to url authorised for up.
func authorize(p *credentials.Presenter, up tenant.Upstream, url string) (string, error) {
	if err := p.Sync(up); err != nil {
		return "", err
	}
	r := httptest.NewRequest(http.MethodPost, url, nil)
	if err := p.Authorize(up, r); err != nil {
		return "", err
	}
	return r.Header.Get("Authorization"), nil
}

// TestHeaders: the config's headers go on every request; the bearer
// token of an OAUTH config replaces an Authorization header of its own.
func TestHeaders(t *testing.T) {
	headers := map[string]string{"X-API-Key": "the-key", "Authorization": "Basic configured"}
	up := oauthUpstream("https://drive.example/mcp", "https://auth.example/token",
		tenant.OAuthToken{AccessToken: "access-token-1", TokenType: "Bearer", Expiry: time.Now().Add(time.Hour)})
	up.Credentials.Headers = headers
	keyed := tenant.Upstream{Name: "keyed", URL: "https://keyed.example/mcp", AuthType: tenant.AuthAPIKey,
		Credentials: tenant.Credentials{Headers: headers}}
	for _, tt := range []struct {
		name       string
		creds      upstream.Credentials // what the pool asks of them
		up         tenant.Upstream
		wantBearer string
	}{
		{"Presenter, API key", credentials.New(credentials.Options{}), keyed, "Basic configured"},
		{"Presenter, OAuth", credentials.New(credentials.Options{}), up, "Bearer access-token-1"},
		{"HeadersOnly, OAuth", credentials.HeadersOnly{}, up, "Basic configured"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.creds.Sync(tt.up); err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest(http.MethodPost, tt.up.URL, nil)
			if err := tt.creds.Authorize(tt.up, r); err != nil {
				t.Fatal(err)
			}
			if got := r.Header.Get("X-API-Key"); got != "the-key" {
				t.Errorf("X-API-Key = %q; want the-key", got)
			}
			if got := r.Header.Get("Authorization"); got != tt.wantBearer {
				t.Errorf("Authorization = %q; want %q", got, tt.wantBearer)
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

// TestCloudRunIAM: every request to a CLOUD_RUN_IAM upstream carries a
// Google ID token whose audience is the upstream's origin, from one
// source per origin, fetched once while it is not about to expire.
func TestCloudRunIAM(t *testing.T) {
	const url, audience = "https://run.example/mcp", "https://run.example"
	ids := &fakeIDTokens{lifetime: time.Hour}
	p := credentials.New(credentials.Options{IDTokenSource: ids.make})
	up := tenant.Upstream{ConfigID: "c1", Name: "run", Transport: tenant.TransportStreamableHTTP, URL: url, AuthType: tenant.AuthCloudRunIAM}
	other := up
	other.ConfigID, other.URL = "c2", audience+"/other"
	want := "Bearer id-token-1-for-" + audience
	for _, u := range []tenant.Upstream{up, up, up, other, other, other} {
		got, err := authorize(p, u, u.URL)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s: Authorization = %q; want %q", u.URL, got, want)
		}
	}
	if len(ids.sources) != 1 || ids.sources[audience] != 1 || ids.fetches != 1 {
		t.Errorf("sources %v, %d fetches; want one source for %s and one fetch", ids.sources, ids.fetches, audience)
	}

	// A token within the refresh margin of its expiry is not reused.
	short := &fakeIDTokens{lifetime: 30 * time.Second}
	p2 := credentials.New(credentials.Options{IDTokenSource: short.make})
	for range 3 {
		if _, err := authorize(p2, up, url); err != nil {
			t.Fatal(err)
		}
	}
	if short.fetches != 3 {
		t.Errorf("%d fetches of a token about to expire for three requests; want one per request", short.fetches)
	}
}

func TestCloudRunIAMFailures(t *testing.T) {
	up := tenant.Upstream{ConfigID: "c1", Name: "run", Transport: tenant.TransportStreamableHTTP, URL: "https://run.example/mcp", AuthType: tenant.AuthCloudRunIAM}
	noSource := credentials.New(credentials.Options{IDTokenSource: (&fakeIDTokens{fail: errors.New("no credentials found")}).make})
	noToken := credentials.New(credentials.Options{IDTokenSource: func(context.Context, string) (oauth2.TokenSource, error) {
		return tokenFunc(func() (*oauth2.Token, error) { return nil, errors.New("metadata server unreachable") }), nil
	}})
	for name, p := range map[string]*credentials.Presenter{"no source": noSource, "no token": noToken} {
		t.Run(name, func(t *testing.T) {
			_, err := authorize(p, up, up.URL)
			if _, ok := errors.AsType[*credentials.Error](err); !ok || !strings.Contains(err.Error(), "upstream run") || !strings.Contains(err.Error(), "ID token") {
				t.Errorf("err = %v; want a *credentials.Error, a failure to get an ID token naming upstream run", err)
			}
		})
	}
}

func oauthUpstream(url, tokenURL string, tok tenant.OAuthToken) tenant.Upstream {
	return tenant.Upstream{ConfigID: "cfg-1", Name: "drive", Transport: tenant.TransportStreamableHTTP, URL: url, AuthType: tenant.AuthOAuth,
		Credentials: tenant.Credentials{OAuth: &tenant.OAuthCredentials{TokenURL: tokenURL, ClientID: "client-1", ClientSecret: "client-secret",
			Scopes: []string{"read"}, OAuthToken: tok}}}
}

// TestOAuthRefresh: an access token about to expire is refreshed once,
// before it is used by concurrent requests, the new tokens are handed to
// SaveToken, and the source survives the instance cache still holding the
// old tokens; tokens an operator stores replace it.
func TestOAuthRefresh(t *testing.T) {
	const url = "https://drive.example/mcp"
	te := demotest.StartTokenEndpoint(t, "client-1", "client-secret")
	var saved []string
	var mu sync.Mutex
	p := credentials.New(credentials.Options{SaveToken: func(_ context.Context, configID string, tok tenant.OAuthToken) error {
		mu.Lock()
		defer mu.Unlock()
		saved = append(saved, configID+" "+tok.AccessToken+" "+tok.RefreshToken)
		return nil
	}})
	stored := tenant.OAuthToken{AccessToken: "access-token-1", RefreshToken: "refresh-token-1", TokenType: "Bearer", Expiry: time.Now().Add(30 * time.Second)}
	up := oauthUpstream(url, te.URL, stored)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			got, err := authorize(p, up, url)
			if err != nil || got != "Bearer access-token-2" {
				t.Errorf("Authorization = %q, %v; want the refreshed Bearer access-token-2", got, err)
			}
		})
	}
	wg.Wait()
	if got := te.Presented(); len(got) != 1 || got[0] != "refresh-token-1" {
		t.Errorf("refreshes with %v; want one with refresh-token-1", got)
	}
	if len(saved) != 1 || saved[0] != "cfg-1 access-token-2 refresh-token-2" {
		t.Errorf("saved %q; want the refreshed tokens of cfg-1", saved)
	}

	// What the database holds after the save: the same source goes on.
	up = oauthUpstream(url, te.URL, tenant.OAuthToken{AccessToken: "access-token-2", RefreshToken: "refresh-token-2", Expiry: time.Now().Add(time.Hour)})
	if _, err := authorize(p, up, url); err != nil {
		t.Fatal(err)
	}
	// The cache may still hold the tokens the source replaced.
	if got, err := authorize(p, oauthUpstream(url, te.URL, stored), url); err != nil || got != "Bearer access-token-2" {
		t.Errorf("with the old tokens cached: Authorization = %q, %v; want Bearer access-token-2", got, err)
	}
	if n := len(te.Presented()); n != 1 {
		t.Errorf("%d refreshes; want still 1", n)
	}

	// An operator stores new tokens: used at once.
	up = oauthUpstream(url, te.URL, tenant.OAuthToken{AccessToken: "access-op", RefreshToken: "refresh-op", Expiry: time.Now().Add(time.Hour)})
	if got, err := authorize(p, up, url); err != nil || got != "Bearer access-op" {
		t.Errorf("Authorization = %q, %v; want the operator's Bearer access-op", got, err)
	}
}

func TestOAuthFailures(t *testing.T) {
	const url = "https://drive.example/mcp"
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
			_, err := authorize(credentials.New(credentials.Options{}), tt.up, url)
			if !errors.Is(err, credentials.ErrUnauthorized) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "upstream drive") {
				t.Errorf("err = %v; want ErrUnauthorized naming upstream drive and %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "revoked") || strings.Contains(err.Error(), "old") {
				t.Errorf("err = %v holds a token", err)
			}
		})
	}
}

// TestTokenEndpointRedirect: the refresh token and client secret are not
// sent on to where a token endpoint redirects.
func TestTokenEndpointRedirect(t *testing.T) {
	th := &hostile.Thief{}
	thief := httptest.NewServer(th)
	t.Cleanup(thief.Close)
	var seen atomic.Int32
	te := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		http.Redirect(w, r, thief.URL+"/token", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(te.Close)
	up := oauthUpstream("https://drive.example/mcp", te.URL+"/token",
		tenant.OAuthToken{AccessToken: "the-access-token", RefreshToken: "the-refresh-token", Expiry: time.Now().Add(-time.Minute)})
	_, err := authorize(credentials.New(credentials.Options{}), up, up.URL)
	if err == nil || !strings.Contains(err.Error(), "upstream drive") || !strings.Contains(err.Error(), "redirect") || !strings.Contains(err.Error(), thief.URL) {
		t.Errorf("err = %v; want a refused redirect to %s naming upstream drive", err, thief.URL)
	}
	for _, secret := range []string{"the-refresh-token", "the-access-token", "client-secret"} {
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("err = %v holds %s", err, secret)
		}
	}
	if seen.Load() == 0 {
		t.Error("the token endpoint was never asked")
	}
	if reqs, creds := th.Seen(); reqs != 0 {
		t.Errorf("the other origin got %d request(s) with credentials %q; want none", reqs, creds)
	}
}
