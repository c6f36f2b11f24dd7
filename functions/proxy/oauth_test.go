package proxy_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/functions/flushlogs"
	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/functions/proxy/configcache"
	"mcpproxy.dev/mcpproxy/functions/proxy/oauth"
	"mcpproxy.dev/mcpproxy/internal/firestoretest"
	"mcpproxy.dev/mcpproxy/internal/testenv"
	"mcpproxy.dev/mcpproxy/internal/wait"
	"mcpproxy.dev/mcpproxy/shared/logbuffer"
)

// oauthEnv is acme's proxy with the authorization server, and a second
// instance of the same organization.
func oauthEnv(t *testing.T, opts proxy.Options) (e *testenv.Env, keyB, instanceB string) {
	t.Helper()
	e = testenv.New(t, testenv.Options{Tenant: acme(), Proxy: opts, OAuth: &oauth.Options{}})
	keyB = e.AddInstance(t, "second", acmeServers(e), []string{"echo"})
	return e, keyB, instanceOf(t, e, keyB)
}

func hashKey(k string) [32]byte { return sha256.Sum256([]byte(k)) }

// browser is what a user agent does on the consent page, by plain HTTP:
// it keeps cookies and does not follow the redirect to the client.
type browser struct {
	*http.Client
}

func newBrowser() browser {
	jar, _ := cookiejar.New(nil)
	return browser{&http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// pkce is a code verifier and its S256 challenge.
func pkce() (verifier, challenge string) {
	verifier = strings.Repeat("v", 20) + base64.RawURLEncoding.EncodeToString([]byte(time.Now().String()))[:30]
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

func getJSON(t testing.TB, u string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func postForm(t testing.TB, u string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// register registers a client with redirect URIs and returns its ID.
func register(t testing.TB, base string, redirects ...string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"client_name": "Test client", "redirect_uris": redirects})
	resp, err := http.Post(base+"/oauth/register", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register: %d %v", resp.StatusCode, out)
	}
	return out["client_id"].(string)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// authorize goes through the consent page with key and returns the
// redirect's query.
func authorize(t testing.TB, base string, params url.Values, key string) url.Values {
	t.Helper()
	b := newBrowser()
	resp, err := b.Get(base + "/oauth/authorize?" + params.Encode())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfField.FindSubmatch(page)
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("consent page: %d\n%s", resp.StatusCode, page)
	}
	form := url.Values{"csrf": {string(m[1])}, "api_key": {key}, "decision": {"allow"}}
	for k, v := range params {
		form[k] = v
	}
	resp, err = b.PostForm(base+"/oauth/authorize", form)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("consent answer: %d; want 303\n%s", resp.StatusCode, body)
	}
	u, _ := url.Parse(resp.Header.Get("Location"))
	return u.Query()
}

// tokens is a token response.
type tokens struct{ access, refresh string }

// grant runs the authorization code flow for the resource at path with
// key, as client clientID, and returns the tokens.
func grant(t testing.TB, e *testenv.Env, clientID, redirect, path, key string) tokens {
	t.Helper()
	base := e.Proxy.URL
	verifier, challenge := pkce()
	q := authorize(t, base, url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect},
		"state": {"st-1"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}, "resource": {base + path}}, key)
	if q.Get("state") != "st-1" || q.Get("iss") != base || q.Get("code") == "" {
		t.Fatalf("redirect query %v; want the state, iss %s and a code", q, base)
	}
	status, out := postForm(t, base+"/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")},
		"redirect_uri": {redirect}, "code_verifier": {verifier}, "client_id": {clientID}, "resource": {base + path}})
	if status != http.StatusOK {
		t.Fatalf("token: %d %v", status, out)
	}
	return tokens{out["access_token"].(string), out["refresh_token"].(string)}
}

const toolsList = `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`

func TestOAuthDiscovery(t *testing.T) {
	e, _, _ := oauthEnv(t, proxy.Options{})
	base := e.Proxy.URL
	id := e.Seeded.Instance.ID
	for _, path := range []string{"/mcp", "/mcp/" + id, "/mcp/" + id + "/alpha"} {
		resp, _ := e.Post(t, path, map[string]string{"Authorization": ""}, toolsList)
		want := `resource_metadata="` + base + `/.well-known/oauth-protected-resource` + path + `"`
		if got := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(got, want) ||
			resp.Header.Get("Access-Control-Expose-Headers") != "WWW-Authenticate" {
			t.Errorf("%s without credentials: %d %q; want 401 with %s, exposed to browsers", path, resp.StatusCode, got, want)
		}
		status, prm := getJSON(t, base+"/.well-known/oauth-protected-resource"+path)
		if status != http.StatusOK || prm["resource"] != base+path || prm["authorization_servers"].([]any)[0] != base {
			t.Errorf("metadata of %s: %d %v", path, status, prm)
		}
	}
	if status, _ := getJSON(t, base+"/.well-known/oauth-protected-resource/elsewhere"); status != http.StatusNotFound {
		t.Errorf("metadata of a path that is no route: %d; want 404", status)
	}
	for _, p := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
		status, md := getJSON(t, base+p)
		if status != http.StatusOK || md["issuer"] != base || md["authorization_endpoint"] != base+"/oauth/authorize" ||
			md["code_challenge_methods_supported"].([]any)[0] != "S256" || md["client_id_metadata_document_supported"] != true {
			t.Errorf("%s: %d %v", p, status, md)
		}
	}
	// An API key keeps working as before.
	if resp, _ := e.Post(t, "/mcp", nil, toolsList); resp.StatusCode != http.StatusOK {
		t.Errorf("with the API key: %d; want 200", resp.StatusCode)
	}
}

func TestOAuthTokens(t *testing.T) {
	// A short cache TTL: a revoked grant stops its tokens within it.
	e, keyB, instanceB := oauthEnv(t, proxy.Options{Cache: configcache.Options{TTL: 300 * time.Millisecond, StaleIfError: -1}})
	base, id := e.Proxy.URL, e.Seeded.Instance.ID
	redirect := "http://127.0.0.1/callback"
	client := register(t, base, redirect)
	call := func(path, token string) int {
		resp, _ := e.Post(t, path, map[string]string{"Authorization": "Bearer " + token}, toolsList)
		return resp.StatusCode
	}
	tok := grant(t, e, client, "http://127.0.0.1:53124/callback", "/mcp/"+id, e.Key) // any loopback port
	if got := call("/mcp/"+id, tok.access); got != http.StatusOK {
		t.Fatalf("tools/list with the access token: %d; want 200", got)
	}
	// Warm, a token request makes no Postgres statement.
	e.Queries.Reset()
	if got := call("/mcp/"+id, tok.access); got != http.StatusOK || e.Queries.Count() != 0 {
		t.Errorf("warm token request: %d with %d statements %v; want 200 and none", got, e.Queries.Count(), e.Queries.Queries())
	}
	// The token is for its resource only: not another route form, not
	// another instance.
	for _, path := range []string{"/mcp/" + instanceB, "/mcp", "/mcp/" + id + "/alpha"} {
		if got := call(path, tok.access); got != http.StatusUnauthorized {
			t.Errorf("token of /mcp/%s on %s: %d; want 401", id, path, got)
		}
	}
	// A key of instance B cannot consent to instance A.
	verifier, challenge := pkce()
	_ = verifier
	b := newBrowser()
	params := url.Values{"response_type": {"code"}, "client_id": {client}, "redirect_uri": {redirect}, "state": {"s"},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "resource": {base + "/mcp/" + id}}
	resp, _ := b.Get(base + "/oauth/authorize?" + params.Encode())
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	form := url.Values{"csrf": {string(csrfField.FindSubmatch(page)[1])}, "api_key": {keyB}, "decision": {"allow"}}
	for k, v := range params {
		form[k] = v
	}
	resp, _ = b.PostForm(base+"/oauth/authorize", form)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("consent to instance A with a key of B: %d; want 400 (the page again)", resp.StatusCode)
	}

	// Refresh rotates; the replaced token used again revokes the grant.
	status, out := postForm(t, base+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.refresh}, "client_id": {client}})
	if status != http.StatusOK || out["refresh_token"] == tok.refresh {
		t.Fatalf("refresh: %d %v", status, out)
	}
	next := tokens{out["access_token"].(string), out["refresh_token"].(string)}
	if got := call("/mcp/"+id, next.access); got != http.StatusOK {
		t.Errorf("refreshed access token: %d; want 200", got)
	}
	if status, out := postForm(t, base+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.refresh}, "client_id": {client}}); status != http.StatusBadRequest || out["error"] != "invalid_grant" {
		t.Errorf("replaced refresh token again: %d %v; want invalid_grant", status, out)
	}
	if status, _ := postForm(t, base+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {next.refresh}, "client_id": {client}}); status != http.StatusBadRequest {
		t.Errorf("the family's newest refresh token after reuse: %d; want 400", status)
	}
	time.Sleep(400 * time.Millisecond)
	if got := call("/mcp/"+id, next.access); got != http.StatusUnauthorized {
		t.Errorf("access token of the revoked family after the cache TTL: %d; want 401", got)
	}

	// Revocation of a refresh token ends its grant's access tokens.
	tok = grant(t, e, client, redirect, "/mcp", e.Key)
	if got := call("/mcp", tok.access); got != http.StatusOK {
		t.Fatalf("token for /mcp: %d; want 200", got)
	}
	if status, _ := postForm(t, base+"/oauth/revoke", url.Values{"token": {tok.refresh}, "client_id": {client}}); status != http.StatusOK {
		t.Errorf("revoke: %d; want 200", status)
	}
	time.Sleep(400 * time.Millisecond)
	if got := call("/mcp", tok.access); got != http.StatusUnauthorized {
		t.Errorf("access token after revocation and the cache TTL: %d; want 401", got)
	}

	// Revoking the key the grant is bound to ends it too.
	row, key2, err := e.DB.CreateAPIKey(t.Context(), id, "", "second", nil)
	if err != nil {
		t.Fatal(err)
	}
	tok = grant(t, e, client, redirect, "/mcp", key2)
	e.DB.RevokeAPIKey(t.Context(), row.ID)
	time.Sleep(400 * time.Millisecond)
	if got := call("/mcp", tok.access); got != http.StatusUnauthorized {
		t.Errorf("access token of a revoked key's grant: %d; want 401", got)
	}
}

// TestOAuthAttacks: what a hostile page, client or thief tries against
// the authorization server is refused.
func TestOAuthAttacks(t *testing.T) {
	e, _, _ := oauthEnv(t, proxy.Options{})
	base, id := e.Proxy.URL, e.Seeded.Instance.ID
	redirect := "http://127.0.0.1/callback"
	client := register(t, base, redirect)
	verifier, challenge := pkce()
	params := url.Values{"response_type": {"code"}, "client_id": {client}, "redirect_uri": {redirect}, "state": {"s"},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "resource": {base + "/mcp/" + id}}
	with := func(k, v string) url.Values {
		q := url.Values{}
		for key, vals := range params {
			q[key] = vals
		}
		q.Set(k, v)
		return q
	}
	b := newBrowser()
	get := func(q url.Values) *http.Response {
		resp, err := b.Get(base + "/oauth/authorize?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	// A redirect URI the client did not register is never redirected to
	// (no open redirector), not even with an error.
	for _, r := range []string{"https://evil.example/cb", "http://127.0.0.1/other", "http://evil.example/callback"} {
		if resp := get(with("redirect_uri", r)); resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Errorf("redirect_uri %s: %d to %q; want 400 on the page", r, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	// PKCE is required, S256 only; a resource of another server is refused.
	for name, q := range map[string]url.Values{"plain PKCE": with("code_challenge_method", "plain"), "no PKCE": with("code_challenge", ""),
		"other resource": with("resource", "https://evil.example/mcp"), "token response": with("response_type", "token")} {
		resp := get(q)
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusSeeOther || loc.Query().Get("error") == "" || loc.Query().Get("iss") != base {
			t.Errorf("%s: %d to %q; want an error sent to the client with iss", name, resp.StatusCode, loc)
		}
	}
	// The page cannot be framed.
	resp := get(params)
	if resp.Header.Get("X-Frame-Options") != "DENY" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("consent page headers %v; want framing refused", resp.Header)
	}

	// CSRF: a form posted from another site, or without the page's
	// cookie, is refused.
	form := url.Values{"api_key": {e.Key}, "decision": {"allow"}, "csrf": {"guessed"}}
	for k, v := range params {
		form[k] = v
	}
	resp, _ = http.PostForm(base+"/oauth/authorize", form) // no cookie
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("consent posted without the page's cookie: %d; want 403", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/oauth/authorize", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	req.AddCookie(&http.Cookie{Name: "mcp_consent_csrf", Value: "guessed"})
	if resp, _ = http.DefaultClient.Do(req); resp.StatusCode != http.StatusForbidden {
		t.Errorf("consent posted from another origin: %d; want 403", resp.StatusCode)
	}

	// Deny sends access_denied.
	q := authorizeWith(t, base, params, "deny", "")
	if q.Get("error") != "access_denied" || q.Get("code") != "" {
		t.Errorf("deny: %v; want access_denied", q)
	}

	// A code redeemed with a wrong verifier fails; one used twice
	// revokes the grant it made.
	q = authorizeWith(t, base, params, "allow", e.Key)
	token := func(code, v string) (int, map[string]any) {
		return postForm(t, base+"/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"redirect_uri": {redirect}, "code_verifier": {v}, "client_id": {client}})
	}
	if status, out := token(q.Get("code"), strings.Repeat("x", 43)); status != http.StatusBadRequest || out["error"] != "invalid_grant" {
		t.Errorf("wrong code_verifier: %d %v; want invalid_grant", status, out)
	}
	q = authorizeWith(t, base, params, "allow", e.Key)
	status, out := token(q.Get("code"), verifier)
	if status != http.StatusOK {
		t.Fatalf("token: %d %v", status, out)
	}
	if status, _ := token(q.Get("code"), verifier); status != http.StatusBadRequest {
		t.Errorf("code used twice: %d; want 400", status)
	}
	if status, _ := postForm(t, base+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {out["refresh_token"].(string)}, "client_id": {client}}); status != http.StatusBadRequest {
		t.Errorf("refresh of the grant whose code was used twice: %d; want 400 (revoked)", status)
	}
	// Another client cannot redeem a code or refresh a token it was not given.
	other := register(t, base, redirect)
	q = authorizeWith(t, base, params, "allow", e.Key)
	if status, out := postForm(t, base+"/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")},
		"redirect_uri": {redirect}, "code_verifier": {verifier}, "client_id": {other}}); status != http.StatusBadRequest {
		t.Errorf("code redeemed by another client: %d %v; want 400", status, out)
	}

	// Registration refuses a redirect URI a page could abuse, and is
	// rate-limited.
	for _, r := range []string{"javascript:alert(1)", "http://evil.example/cb", "data:text/html,x"} {
		body := `{"redirect_uris":["` + r + `"]}`
		resp, _ := http.Post(base+"/oauth/register", "application/json", strings.NewReader(body))
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("register %s: %d; want 400", r, resp.StatusCode)
		}
	}
	limited := false
	for range 20 {
		resp, _ := http.Post(base+"/oauth/register", "application/json", strings.NewReader(`{"redirect_uris":["https://a.example/cb"]}`))
		if resp.StatusCode == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Errorf("20 registrations in a row: none refused; want 429")
	}
}

// authorizeWith posts the consent form with a decision and returns the
// query the client is sent back with.
func authorizeWith(t *testing.T, base string, params url.Values, decision, key string) url.Values {
	t.Helper()
	if decision == "allow" {
		return authorize(t, base, params, key)
	}
	b := newBrowser()
	resp, _ := b.Get(base + "/oauth/authorize?" + params.Encode())
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	form := url.Values{"csrf": {string(csrfField.FindSubmatch(page)[1])}, "decision": {decision}}
	for k, v := range params {
		form[k] = v
	}
	resp, _ = b.PostForm(base+"/oauth/authorize", form)
	resp.Body.Close()
	u, _ := url.Parse(resp.Header.Get("Location"))
	return u.Query()
}

// TestOAuthRequestLog: a request made with an access token reaches the
// request log in Postgres like a keyed one, naming its grant (and the key
// the grant is bound to).
func TestOAuthRequestLog(t *testing.T) {
	ctx := t.Context()
	store := &logbuffer.Firestore{Client: firestoretest.Client(t, firestoretest.Host(t)), Collection: firestoretest.Collection(t)}
	buf := logbuffer.New(store, logbuffer.Options{BatchEntries: 40, MaxAge: time.Minute}) // written by Drain
	e, _, _ := oauthEnv(t, proxy.Options{RequestLog: buf})
	base := e.Proxy.URL
	client := register(t, base, "http://127.0.0.1/callback")
	tok := grant(t, e, client, "http://127.0.0.1/callback", "/mcp", e.Key)
	resp, _ := e.Post(t, "/mcp", map[string]string{"Authorization": "Bearer " + tok.access},
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"hi"}}}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("tools/call with the token: %d", resp.StatusCode)
	}
	// The entry is appended once the response is written: wait for it.
	wait.For(t, "the request log entry", 5*time.Second, func() bool { return buf.Stats().Appended == 1 })
	if err := buf.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := flushlogs.NewFlusher(e.DB, store, flushlogs.Options{}).Run(ctx)
	if err != nil || rep.Entries != 1 {
		t.Fatalf("flush: %+v %v; want 1 entry", rep, err)
	}
	grants, _ := e.DB.ListOAuthGrants(ctx, e.Seeded.Instance.ID)
	var user, instance, key, grantID, tool string
	err = e.DB.Pool.QueryRow(ctx, `SELECT user_id::text, mcp_server_instance_id::text, coalesce(api_key_id::text, ''), coalesce(oauth_grant_id::text, ''), tool_name
FROM mcp_server_request_logs`).Scan(&user, &instance, &key, &grantID, &tool)
	if err != nil {
		t.Fatal(err)
	}
	if len(grants) != 1 || grantID != grants[0].ID || key != e.Seeded.KeyID || instance != e.Seeded.Instance.ID || user != grants[0].UserID || tool != "alpha__echo" {
		t.Errorf("request log row: user %s instance %s key %s grant %s tool %s; want the grant %v", user, instance, key, grantID, tool, grants)
	}
}
