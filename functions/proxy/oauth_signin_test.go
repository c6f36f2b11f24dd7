package proxy_test

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"

	"mcpproxy.dev/mcpproxy/functions/proxy/oauth"
	"mcpproxy.dev/mcpproxy/internal/chromium"
	"mcpproxy.dev/mcpproxy/internal/testenv"
)

// TestOAuthOpenIDSignIn: on the consent page a user signs in through a
// real OpenID Connect provider (zitadel/oidc's OpenID-certified op
// package, run by its example server, with its example users), is
// matched by verified email to a users row, picks an instance of the
// organization, and the client's token works there; a user whose email
// matches no users row is refused.
func TestOAuthOpenIDSignIn(t *testing.T) {
	// The proxy's address is needed before the provider's client (its
	// redirect URI) is registered.
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + front.Addr().String()
	idp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + idp.Addr().String()
	users := storage.NewUserStore(issuer)
	clients := map[string]*storage.Client{"mcp-proxy": storage.WebClient("mcp-proxy", "idp-secret", base+"/oauth/callback")}
	provider := &httptest.Server{Listener: idp, Config: &http.Server{
		Handler: exampleop.SetupServer(issuer, storage.NewStorageWithClients(users, clients), slog.New(slog.DiscardHandler), false)}}
	provider.Start()
	t.Cleanup(provider.Close)

	e := testenv.New(t, testenv.Options{Tenant: acme(), OAuth: &oauth.Options{
		OIDC: &oauth.OIDC{Issuer: issuer, ClientID: "mcp-proxy", ClientSecret: "idp-secret", Name: "Test IdP"}}})
	proxySrv := &httptest.Server{Listener: front, Config: &http.Server{Handler: e.Handler}}
	proxySrv.Start()
	t.Cleanup(proxySrv.Close)
	// The example provider's first user has the verified email
	// test-user@zitadel.ch; the organization gets a users row for it.
	u, err := e.DB.CreateUser(t.Context(), e.Seeded.Organization.ID, "Test User", "Test-User@zitadel.ch", "member")
	if err != nil {
		t.Fatal(err)
	}

	b := chromium.Start(t)
	callback := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("done")) }))
	t.Cleanup(callback.Close)
	redirect := "http://127.0.0.1/callback"
	redirectAt := callback.URL + "/callback" // the registered URI on another port
	client := register(t, base, redirect)
	id := e.Seeded.Instance.ID
	verifier, challenge := pkce()
	params := url.Values{"response_type": {"code"}, "client_id": {client}, "redirect_uri": {redirectAt}, "state": {"st"},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "resource": {base + "/mcp/" + id}}
	loc, err := b.ConsentSignIn(base+"/oauth/authorize?"+params.Encode(), "test-user@127.0.0.1", "verysecure", "")
	if err != nil {
		t.Fatal(err)
	}
	back, _ := url.Parse(loc)
	q := back.Query()
	if q.Get("state") != "st" || q.Get("iss") != base || q.Get("code") == "" {
		t.Fatalf("sent back to %s; want the state, iss and a code", loc)
	}
	status, out := postForm(t, base+"/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")},
		"redirect_uri": {redirectAt}, "code_verifier": {verifier}, "client_id": {client}})
	if status != http.StatusOK {
		t.Fatalf("token: %d %v", status, out)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/mcp/"+id, strings.NewReader(toolsList))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+out["access_token"].(string))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("tools/list with the token of a signed-in user: %d; want 200", resp.StatusCode)
	}
	grants, _ := e.DB.ListOAuthGrants(t.Context(), id)
	if len(grants) != 1 || grants[0].UserID != u.ID || grants[0].APIKeyID != "" {
		t.Errorf("grants %+v; want one of user %s, bound to no key", grants, u.ID)
	}

	// The provider's second user has no users row here.
	params.Set("state", "st2")
	if _, err := b.ConsentSignIn(base+"/oauth/authorize?"+params.Encode(), "test-user2", "verysecure", ""); err == nil || !strings.Contains(err.Error(), "No instance here may be used by test-user2@zitadel.ch") {
		t.Errorf("sign-in of an email without a users row: %v; want refused for it", err)
	}
}
