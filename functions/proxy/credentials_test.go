package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/oauth2"

	"mcpproxy.dev/mcpproxy/internal/demo/demotest"
	"mcpproxy.dev/mcpproxy/internal/stack"
	"mcpproxy.dev/mcpproxy/internal/testenv"
	"mcpproxy.dev/mcpproxy/shared/credentials"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// Secrets of the credential tests: none may appear in a log line.
const (
	upstreamKey  = "api-key-of-gamma"
	clientSecret = "client-secret-of-gamma"
)

// authEnv is a proxy in front of one demo upstream, gamma, reached with
// the given auth type and credentials.
type authEnv struct {
	*testenv.Env
	gate   *demotest.Gate
	server postgres.Server
	cfg    postgres.Config
	url    string // of the upstream
}

// newAuthEnv seeds the database and starts the proxy. The pool's
// credentials save refreshed tokens to the database and log to the
// proxy's log, as functions/proxy wires them, unless opts says otherwise.
func newAuthEnv(t *testing.T, auth tenant.AuthType, creds tenant.Credentials, opts credentials.Options) *authEnv {
	t.Helper()
	gamma := demotest.StartUpstream(t, "gamma")
	url := gamma.URL() + "/mcp"
	env := testenv.New(t, testenv.Options{Credentials: opts, Tenant: stack.Tenant{Servers: []stack.Server{{
		Server: postgres.Server{Name: "Gamma", Transport: tenant.TransportStreamableHTTP, URL: url, AuthType: auth},
		Tools:  []postgres.Tool{{Name: "echo"}, {Name: "add"}}, Credentials: creds}}}})
	return &authEnv{Env: env, gate: gamma.Gate, url: url, server: env.Seeded.Servers[0], cfg: env.Seeded.Configs[0]}
}

// assertNoSecrets fails when a log line holds one of the secrets.
func (e *authEnv) assertNoSecrets(t *testing.T, secrets ...string) {
	t.Helper()
	logs := e.Logs.String()
	if logs == "" {
		t.Fatal("the proxy logged nothing: the check below would prove nothing")
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("a log line holds the secret %q:\n%s", s, logs)
		}
	}
}

func oauthCreds(tokenURL string, expiry time.Time) tenant.Credentials {
	return tenant.Credentials{OAuth: &tenant.OAuthCredentials{TokenURL: tokenURL, ClientID: "client-1", ClientSecret: clientSecret,
		Scopes: []string{"files.read"}, OAuthToken: tenant.OAuthToken{AccessToken: "access-token-1", RefreshToken: "refresh-token-1",
			TokenType: "Bearer", Expiry: expiry}}}
}

// TestOAuthRefreshThroughProxy: 50 concurrent tools/call reach an OAUTH
// upstream whose access token is about to expire (within the refresh
// margin, not yet expired). The token is refreshed exactly once, before
// it expired, every call carries the new token, the new tokens are stored
// sealed, and no token reaches a log line.
func TestOAuthRefreshThroughProxy(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, version string) {
		ctx := context.Background()
		te := demotest.StartTokenEndpoint(t, "client-1", clientSecret)
		stored := time.Now().Add(30 * time.Second)
		e := newAuthEnv(t, tenant.AuthOAuth, oauthCreds(te.URL, stored), credentials.Options{})
		s := e.Client(t, "/mcp", e.Key, version, nil)
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() {
				want := fmt.Sprint("call-", i)
				res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "gamma__echo", Arguments: map[string]any{"text": want}})
				if err != nil {
					t.Errorf("call %d: %v", i, err)
					return
				}
				if got := text(t, res); got != want {
					t.Errorf("call %d answered %q; want %q", i, got, want)
				}
			})
		}
		wg.Wait()

		if got := te.Presented(); !slices.Equal(got, []string{"refresh-token-1"}) {
			t.Errorf("refreshes with %v; want exactly one, with refresh-token-1", got)
		}
		if got := e.gate.Authorizations(); !slices.Equal(got, []string{"Bearer access-token-2"}) {
			t.Errorf("the upstream got %q; want only the refreshed Bearer access-token-2", got)
		}
		creds, err := e.DB.ConfigCredentials(ctx, e.cfg.ID, e.server.ID)
		if err != nil {
			t.Fatal(err)
		}
		if o := creds.OAuth; o == nil || o.AccessToken != "access-token-2" || o.RefreshToken != "refresh-token-2" ||
			!o.Expiry.After(stored) || o.ClientSecret != clientSecret || !slices.Equal(o.Scopes, []string{"files.read"}) {
			t.Errorf("stored OAuth credentials after the refresh: %+v", o)
		}
		var sealed []byte
		if err := e.DB.Pool.QueryRow(ctx, `SELECT encrypted_credentials FROM user_mcp_server_configs WHERE id = $1`, e.cfg.ID).Scan(&sealed); err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{"access-token-2", "refresh-token-2", clientSecret} {
			if bytes.Contains(sealed, []byte(secret)) {
				t.Errorf("encrypted_credentials hold %q in clear", secret)
			}
		}
		e.assertNoSecrets(t, "access-token-1", "refresh-token-1", "access-token-2", "refresh-token-2", clientSecret, e.Key)
	})
}

// TestOAuthSaveFailure: tokens that cannot be stored are logged as such,
// without a token, and the calls go on with them.
func TestOAuthSaveFailure(t *testing.T) {
	te := demotest.StartTokenEndpoint(t, "client-1", clientSecret)
	e := newAuthEnv(t, tenant.AuthOAuth, oauthCreds(te.URL, time.Now().Add(-time.Minute)), credentials.Options{
		SaveToken: func(context.Context, string, tenant.OAuthToken) error {
			return errors.New("the database is unreachable")
		},
	})
	s := e.Client(t, "/mcp", e.Key, "2025-11-25", nil)
	for range 2 {
		if _, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "gamma__echo", Arguments: map[string]any{"text": "x"}}); err != nil {
			t.Fatalf("call with a token that could not be stored: %v", err)
		}
	}
	if n := len(te.Presented()); n != 1 {
		t.Errorf("%d refreshes; want 1", n)
	}
	if !strings.Contains(e.Logs.String(), "refreshed OAuth token not stored") {
		t.Errorf("the failure to store was not logged:\n%s", e.Logs.String())
	}
	e.assertNoSecrets(t, "access-token-1", "refresh-token-1", "access-token-2", "refresh-token-2", clientSecret)
}

// TestUpstreamUnauthorized: an upstream that answers 401 makes a call
// fail with the re-authorisation error, on the direct tools/call and on
// a request relayed through the SDK session alike. Each call reaches the
// upstream once; the session stays; tools/list leaves the upstream out.
func TestUpstreamUnauthorized(t *testing.T) {
	te := demotest.StartTokenEndpoint(t, "client-1", clientSecret)
	for _, tt := range []struct {
		auth  tenant.AuthType
		creds tenant.Credentials
		fix   string
	}{
		{tenant.AuthAPIKey, tenant.Credentials{Headers: map[string]string{"X-API-Key": upstreamKey}}, "update the credentials"},
		{tenant.AuthOAuth, oauthCreds(te.URL, time.Now().Add(time.Hour)), "mcpadmin config oauth"},
	} {
		t.Run(string(tt.auth), func(t *testing.T) {
			e := newAuthEnv(t, tt.auth, tt.creds, credentials.Options{})
			call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"gamma__echo","arguments":{"text":"x"}}}`
			if _, out := e.Post(t, "/mcp", nil, call); out["result"] == nil {
				t.Fatalf("call with the upstream accepting: %v", out)
			}
			e.gate.Refuse(true)
			for _, req := range []struct{ path, body string }{
				{"/mcp", call}, // direct tools/call
				{"/mcp", call}, // again: no loop, no reconnect
				{"/mcp/" + e.Seeded.Instance.ID + "/gamma", `{"jsonrpc":"2.0","id":2,"method":"prompts/list"}`}, // through the SDK session
			} {
				before := e.gate.Refusals()
				resp, out := e.Post(t, req.path, nil, req.body)
				e2, _ := out["error"].(map[string]any)
				data, _ := e2["data"].(map[string]any)
				msg, _ := e2["message"].(string)
				if resp.StatusCode != http.StatusOK || rpcCode(out) != -32004 || data["reason"] != "upstream_unauthorized" || data["upstream"] != "gamma" ||
					!strings.Contains(msg, "gamma") || !strings.Contains(msg, "re-authorisation") || !strings.Contains(msg, tt.fix) {
					t.Errorf("%s %s: HTTP %d %v; want -32004 with reason upstream_unauthorized for gamma, telling to %s",
						req.path, req.body, resp.StatusCode, out, tt.fix)
				}
				if n := e.gate.Refusals() - before; n != 1 {
					t.Errorf("%s: the upstream was asked %d times; want once", req.body, n)
				}
			}
			if e.Pool.Len() != 1 {
				t.Errorf("%d sessions; want the one session kept", e.Pool.Len())
			}
			_, out := e.Post(t, "/mcp", nil, `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`)
			if res, _ := out["result"].(map[string]any); res == nil || len(res["tools"].([]any)) != 0 {
				t.Errorf("tools/list = %v; want a result without gamma's tools", out)
			}
			if !strings.Contains(e.Logs.String(), "upstream needs re-authorisation") {
				t.Error("the refusal was not logged")
			}
			e.assertNoSecrets(t, upstreamKey, "access-token-1", "refresh-token-1", clientSecret, e.Key)
		})
	}
}

// idTokens is an injected Google ID token source maker.
type idTokens struct {
	fail error

	mu        sync.Mutex
	audiences []string // one per source made
}

func (f *idTokens) source(_ context.Context, audience string) (oauth2.TokenSource, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	f.audiences = append(f.audiences, audience)
	return oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "id-token-for-" + audience, Expiry: time.Now().Add(time.Hour)}), nil
}

// TestCloudRunIAMThroughProxy: the SDK's requests and the direct
// tools/call to a CLOUD_RUN_IAM upstream carry a Google ID token for the
// upstream's origin, from one source; the token is never logged. Without
// a token the call fails naming the upstream.
func TestCloudRunIAMThroughProxy(t *testing.T) {
	ids := &idTokens{}
	e := newAuthEnv(t, tenant.AuthCloudRunIAM, tenant.Credentials{}, credentials.Options{IDTokenSource: ids.source})
	s := e.Client(t, "/mcp", e.Key, "2025-11-25", nil)
	if got := toolNames(t, s); !slices.Equal(got, []string{"gamma__add", "gamma__echo"}) {
		t.Errorf("tools = %v", got)
	}
	res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "gamma__echo", Arguments: map[string]any{"text": "hi"}})
	if err != nil || text(t, res) != "hi" {
		t.Fatalf("call = %v, %v", res, err)
	}
	origin := strings.TrimSuffix(e.url, "/mcp")
	if !slices.Equal(ids.audiences, []string{origin}) {
		t.Errorf("ID token sources for %v; want one for %s", ids.audiences, origin)
	}
	if got := e.gate.Authorizations(); !slices.Equal(got, []string{"Bearer id-token-for-" + origin}) {
		t.Errorf("the upstream got %q; want only the ID token for %s", got, origin)
	}
	e.assertNoSecrets(t, "id-token-for-", e.Key)

	failing := newAuthEnv(t, tenant.AuthCloudRunIAM, tenant.Credentials{}, credentials.Options{
		IDTokenSource: (&idTokens{fail: errors.New("no default credentials")}).source})
	_, out := failing.Post(t, "/mcp", map[string]string{"Authorization": "Bearer " + failing.Key},
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"gamma__echo","arguments":{"text":"x"}}}`)
	rpcErr, _ := out["error"].(map[string]any)
	if msg, _ := rpcErr["message"].(string); rpcCode(out) != -32000 || !strings.Contains(msg, "gamma") {
		t.Errorf("call without an ID token = %v; want -32000 naming gamma", out)
	}
	if logs := failing.Logs.String(); !strings.Contains(logs, "ID token") {
		t.Errorf("the missing ID token was not logged:\n%s", logs)
	}
}
