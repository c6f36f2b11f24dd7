package proxy_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/functions/proxy/configcache"
	"mcpproxy.dev/mcpproxy/functions/proxy/oauth"
	"mcpproxy.dev/mcpproxy/internal/chromium"
	"mcpproxy.dev/mcpproxy/internal/testenv"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// consentScreenshot is where TestOAuthSDKClient saves the consent page
// for docs/oauth.md when run with -update; otherwise into a temporary
// folder, so that a test run leaves the tree as it was.
const consentScreenshot = "docs/images/consent.png"

// sdkClient is a go-sdk MCP client whose OAuth flow goes through the
// consent page in Chromium with key; consents counts the flows.
type sdkClient struct {
	handler  *auth.AuthorizationCodeHandler
	session  *mcp.ClientSession
	consents atomic.Int32
}

// connectSDK connects a go-sdk client with its OAuth handler to the
// proxy route at path: it discovers the authorization server from the
// 401, registers (cfg), and consents in the browser.
func connectSDK(t *testing.T, e *testenv.Env, b *chromium.Browser, path, key, screenshot string, cfg auth.AuthorizationCodeHandlerConfig) *sdkClient {
	t.Helper()
	c := &sdkClient{}
	callback := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("You can close this page."))
	}))
	t.Cleanup(callback.Close)
	if cfg.RedirectURL == "" {
		cfg.RedirectURL = callback.URL + "/callback"
	}
	if d := cfg.DynamicClientRegistrationConfig; d != nil && len(d.Metadata.RedirectURIs) == 0 {
		d.Metadata.RedirectURIs = []string{cfg.RedirectURL}
	}
	cfg.RequestRefreshToken = true
	cfg.AuthorizationCodeFetcher = func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
		if c.consents.Add(1) > 1 {
			return nil, errors.New("the client asked for a second consent")
		}
		loc, err := b.Consent(args.URL, key, screenshot)
		if err != nil {
			return nil, err
		}
		u, err := url.Parse(loc)
		if err != nil {
			return nil, err
		}
		q := u.Query()
		return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
	}
	h, err := auth.NewAuthorizationCodeHandler(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.handler = h
	transport := &mcp.StreamableClientTransport{Endpoint: e.Proxy.URL + path, OAuthHandler: h, MaxRetries: -1}
	s, err := mcp.NewClient(&mcp.Implementation{Name: "oauth-test-client", Version: "1"}, nil).Connect(t.Context(), transport, nil)
	if err != nil {
		t.Fatalf("connect with OAuth: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	c.session = s
	return c
}

// token is the client's current token.
func (c *sdkClient) token(t *testing.T) (access, refresh string) {
	t.Helper()
	ts, err := c.handler.TokenSource(t.Context())
	if err != nil || ts == nil {
		t.Fatalf("token source: %v", err)
	}
	tok, err := ts.Token()
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	return tok.AccessToken, tok.RefreshToken
}

// TestOAuthSDKClient connects the go-sdk's MCP client with its OAuth
// support to the proxy: discovery from the 401, registration by client
// ID metadata document (and, for a second client, dynamically), consent
// in headless Chromium, tools/list and tools/call with the token, refresh
// with rotation, reuse detection, revocation, and a token for instance A
// refused on instance B.
func TestOAuthSDKClient(t *testing.T) {
	// The client metadata document is served over https on a loopback
	// address: this server's fetcher is let reach it (TestDocumentFetch
	// shows the default refuses it).
	var docURL string
	docs := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"client_id": docURL, "client_name": "Example MCP client",
			"redirect_uris": []string{"http://127.0.0.1/callback"}, "token_endpoint_auth_method": "none",
			"grant_types": []string{"authorization_code", "refresh_token"}})
	}))
	t.Cleanup(docs.Close)
	docURL = docs.URL + "/client.json"
	roots := x509.NewCertPool()
	roots.AddCert(docs.Certificate())
	// Access tokens of 12 s: the SDK's oauth2 refreshes a token 10 s
	// before it expires. A short cache TTL: revocation shows within it.
	e := testenv.New(t, testenv.Options{Tenant: acme(),
		Proxy: proxy.Options{Cache: configcache.Options{TTL: 300 * time.Millisecond, StaleIfError: -1}},
		OAuth: &oauth.Options{AccessTTL: 12 * time.Second, DocumentRoots: roots,
			AllowDocumentAddr: func(a netip.Addr) bool { return a.IsLoopback() }}})
	keyB := e.AddInstance(t, "second", acmeServers(e), []string{"echo"})
	instanceB := instanceOf(t, e, keyB)
	b := chromium.Start(t)
	id := e.Seeded.Instance.ID

	shot := filepath.Join(t.TempDir(), "consent.png")
	if *update {
		shot = filepath.Join(repoRoot(t), consentScreenshot)
	}
	c := connectSDK(t, e, b, "/mcp/"+id, e.Key, shot, auth.AuthorizationCodeHandlerConfig{
		ClientIDMetadataDocumentConfig: &auth.ClientIDMetadataDocumentConfig{URL: docURL}})
	if got := toolNames(t, c.session); len(got) != 5 || got[0] != "alpha__add" {
		t.Errorf("tools/list with the token: %v; want alpha's and beta's selected tools", got)
	}
	res, err := c.session.CallTool(t.Context(), &mcp.CallToolParams{Name: "alpha__echo", Arguments: map[string]any{"text": "hi"}})
	if err != nil || res.IsError || text(t, res) != "hi" {
		t.Fatalf("tools/call with the token: %v %v", res, err)
	}
	if png, err := os.ReadFile(shot); err != nil || len(png) < 1000 || string(png[1:4]) != "PNG" {
		t.Errorf("screenshot %s: %d bytes, %v; want a PNG", shot, len(png), err)
	}
	access1, refresh1 := c.token(t)

	// A token for instance A is refused on instance B.
	resp, _ := e.Post(t, "/mcp/"+instanceB, map[string]string{"Authorization": "Bearer " + access1}, toolsList)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("token of instance A on B: %d; want 401", resp.StatusCode)
	}

	// Past 2 s the SDK refreshes before each call: the refresh token
	// rotates and the calls go on.
	time.Sleep(2500 * time.Millisecond)
	if _, err := c.session.CallTool(t.Context(), &mcp.CallToolParams{Name: "alpha__echo", Arguments: map[string]any{"text": "again"}}); err != nil {
		t.Fatalf("tools/call after the refresh: %v", err)
	}
	access2, refresh2 := c.token(t)
	if access2 == access1 || refresh2 == refresh1 || refresh2 == "" {
		t.Fatalf("refresh: the tokens did not rotate")
	}
	if c.consents.Load() != 1 {
		t.Errorf("consents: %d; want 1 (the refresh needs none)", c.consents.Load())
	}

	// The replaced refresh token, used again (as a thief would), is
	// refused and revokes the family: the client's calls stop within the
	// cache TTL, and its refresh fails.
	status, out := postForm(t, e.Proxy.URL+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh1}, "client_id": {docURL}})
	if status != http.StatusBadRequest || out["error"] != "invalid_grant" {
		t.Fatalf("reused refresh token: %d %v; want invalid_grant", status, out)
	}
	time.Sleep(400 * time.Millisecond)
	if _, err := c.session.CallTool(t.Context(), &mcp.CallToolParams{Name: "alpha__echo", Arguments: map[string]any{"text": "stolen"}}); err == nil {
		t.Errorf("tools/call after reuse detection succeeded; want the grant revoked")
	}

	// A client registered dynamically, on instance B with its key;
	// revoking its refresh token (RFC 7009) ends its access.
	d := connectSDK(t, e, b, "/mcp/"+instanceB, keyB, "", auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			ClientName: "Dynamic client", GrantTypes: []string{"authorization_code", "refresh_token"}}}})
	if got := toolNames(t, d.session); len(got) != 1 {
		t.Errorf("tools/list of instance B: %v; want its one tool", got)
	}
	if res, err := d.session.CallTool(t.Context(), &mcp.CallToolParams{Name: "gamma__echo", Arguments: map[string]any{"text": "b"}}); err != nil || text(t, res) != "b" {
		t.Fatalf("tools/call on instance B: %v %v", res, err)
	}
	_, refresh := d.token(t)
	grants, err := e.DB.ListOAuthGrants(t.Context(), instanceB)
	if err != nil || len(grants) != 1 {
		t.Fatalf("grants of instance B: %v %v", grants, err)
	}
	if status, _ := postForm(t, e.Proxy.URL+"/oauth/revoke", url.Values{"token": {refresh}, "client_id": {grants[0].ClientID}}); status != http.StatusOK {
		t.Fatalf("revoke: %d", status)
	}
	time.Sleep(400 * time.Millisecond)
	// tools/call, not tools/list, whose result the SDK may keep.
	if _, err := d.session.CallTool(t.Context(), &mcp.CallToolParams{Name: "gamma__echo", Arguments: map[string]any{"text": "x"}}); err == nil {
		t.Errorf("tools/call after revocation succeeded")
	}
}

// acmeServers are acme's demo upstreams, as servers another instance can
// name.
func acmeServers(e *testenv.Env) []postgres.Server {
	return []postgres.Server{{Name: "Gamma", Transport: tenant.TransportStreamableHTTP, URL: e.Demo["alpha"].URL()}}
}

func instanceOf(t *testing.T, e *testenv.Env, key string) string {
	t.Helper()
	k, err := e.DB.LookupAPIKey(t.Context(), hashKey(key))
	if err != nil {
		t.Fatal(err)
	}
	return k.InstanceID
}

// repoRoot is the module's root, where docs/ is.
func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}
