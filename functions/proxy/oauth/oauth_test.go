package oauth

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

func testKeys(t *testing.T, spec string) *Keys {
	t.Helper()
	k, err := ParseKeys(spec)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestForgedTokens: tokens this server did not sign, or signed for
// something else, are refused.
func TestForgedTokens(t *testing.T) {
	keys := testKeys(t, NewKeySpec("a"))
	other := testKeys(t, NewKeySpec("a")) // same key ID, another key
	now := time.Unix(1_800_000_000, 0)
	good := Claims{Issuer: "https://proxy.example", Audience: "https://proxy.example/mcp/i1", ExpiresAt: now.Unix() + 60,
		Scope: "mcp", Grant: "g", ClientID: "c"}
	enc := base64.RawURLEncoding
	signed := keys.Sign(&good)
	parts := strings.Split(signed, ".")
	payload := func(c Claims) string { b, _ := json.Marshal(c); return enc.EncodeToString(b) }
	evil := good
	evil.Audience = "https://proxy.example/mcp/i2"
	tests := []struct {
		name, token, path string
		want              error
	}{
		{"valid", signed, "/mcp/i1", nil},
		{"another instance", signed, "/mcp/i2", ErrAudience},
		{"another route form", signed, "/mcp", ErrAudience},
		{"signed by another key", other.Sign(&good), "/mcp/i1", ErrSignature},
		{"payload swapped", parts[0] + "." + payload(evil) + "." + parts[2], "/mcp/i2", ErrSignature},
		{"alg none", enc.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt","kid":"a"}`)) + "." + parts[1] + ".", "/mcp/i1", ErrMalformed},
		{"alg HS256", enc.EncodeToString([]byte(`{"alg":"HS256","typ":"at+jwt","kid":"a"}`)) + "." + parts[1] + "." + parts[2], "/mcp/i1", ErrMalformed},
		{"unknown kid", enc.EncodeToString([]byte(`{"alg":"EdDSA","typ":"at+jwt","kid":"b"}`)) + "." + parts[1] + "." + parts[2], "/mcp/i1", ErrSignature},
		{"extra header field", enc.EncodeToString([]byte(`{"alg":"EdDSA","typ":"at+jwt","kid":"a","jku":"https://evil"}`)) + "." + parts[1] + "." + parts[2], "/mcp/i1", ErrMalformed},
		{"expired", keys.Sign(&Claims{Issuer: good.Issuer, Audience: good.Audience, ExpiresAt: now.Unix(), Scope: "mcp"}), "/mcp/i1", ErrExpired},
		{"other issuer", keys.Sign(&Claims{Issuer: "https://evil.example", Audience: good.Audience, ExpiresAt: now.Unix() + 60, Scope: "mcp"}), "/mcp/i1", ErrIssuer},
		{"no scope", keys.Sign(&Claims{Issuer: good.Issuer, Audience: good.Audience, ExpiresAt: now.Unix() + 60}), "/mcp/i1", ErrScope},
		{"too long", signed + strings.Repeat("A", maxTokenBytes), "/mcp/i1", ErrMalformed},
		{"other unused bits", parts[0] + "." + parts[1] + "." + flipUnusedBits(parts[2]), "/mcp/i1", ErrMalformed},
	}
	v := NewVerifier(keys, 100)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Check(tt.token, "https://proxy.example", tt.path, now)
			if !errors.Is(err, tt.want) {
				t.Errorf("got %v; want %v", err, tt.want)
			}
		})
	}
}

// TestKeyRotation: a token signed by the previous key verifies while the
// key is still listed after the new one.
func TestKeyRotation(t *testing.T) {
	old := NewKeySpec("old")
	before := testKeys(t, old)
	after := testKeys(t, NewKeySpec("new")+","+old)
	c := &Claims{Issuer: "i", Audience: "i/mcp", ExpiresAt: time.Now().Unix() + 60, Scope: "mcp"}
	if _, err := after.Verify(before.Sign(c)); err != nil {
		t.Errorf("token of the old key after rotation: %v", err)
	}
	var jwks struct{ Keys []struct{ Kid string } }
	json.Unmarshal(after.JWKS(), &jwks)
	if len(jwks.Keys) != 2 || jwks.Keys[0].Kid != "new" || jwks.Keys[1].Kid != "old" {
		t.Errorf("JWKS after rotation: %s", after.JWKS())
	}
	if _, err := testKeys(t, NewKeySpec("new")).Verify(before.Sign(c)); !errors.Is(err, ErrSignature) {
		t.Errorf("token of a dropped key: %v; want %v", err, ErrSignature)
	}
}

// TestDocumentFetch: the client metadata document fetch reaches public
// https servers only. The document server here is on a loopback address,
// as an internal service would be: the default fetcher must refuse it.
func TestDocumentFetch(t *testing.T) {
	var docURL string
	var body string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, "/client.json", http.StatusFound)
		case "/large":
			w.Write([]byte(`{"client_id":"` + docURL + `","redirect_uris":["https://a.example/cb"],"x":"` + strings.Repeat("a", maxDocumentBytes) + `"}`))
		default:
			w.Write([]byte(body))
		}
	}))
	defer srv.Close()
	docURL = srv.URL + "/client.json"
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	keys := testKeys(t, NewKeySpec("k"))
	public := New(nil, Options{Keys: keys, DocumentRoots: roots})
	loopback := New(nil, Options{Keys: keys, DocumentRoots: roots, AllowDocumentAddr: func(a netip.Addr) bool { return a.IsLoopback() }})
	localhost := strings.Replace(docURL, "127.0.0.1", "localhost", 1)

	body = `{"client_id":"` + docURL + `","client_name":"Doc","redirect_uris":["https://a.example/cb"]}`
	if _, err := public.fetchDocument(t.Context(), docURL); err == nil || !strings.Contains(err.Error(), "not a public address") {
		t.Errorf("document on a loopback address with the default fetcher: %v; want refused", err)
	}
	if _, err := public.fetchDocument(t.Context(), localhost); err == nil || !strings.Contains(err.Error(), "not a public address") {
		t.Errorf("document at a name that resolves to loopback: %v; want refused", err)
	}
	if c, err := loopback.fetchDocument(t.Context(), docURL); err != nil || c.Name != "Doc" {
		t.Fatalf("document where loopback is allowed: %v %v", c, err)
	}
	for _, bad := range []string{
		strings.Replace(docURL, "https", "http", 1), // not https
		srv.URL + "/",           // no path
		srv.URL + "/redirect",   // redirects are not followed
		srv.URL + "/large",      // larger than the bound
		srv.URL + "/other.json", // its client_id is another URL
		"https://user:pw@" + strings.TrimPrefix(docURL, "https://"),
	} {
		if _, err := loopback.fetchDocument(t.Context(), bad); err == nil {
			t.Errorf("document %s: accepted", bad)
		}
	}
	body = `{"client_id":"` + docURL + `","redirect_uris":["javascript:alert(1)"]}`
	if _, err := loopback.fetchDocument(t.Context(), docURL); err == nil {
		t.Errorf("document with a javascript: redirect URI: accepted")
	}
	// A flood of made-up client_ids fetches at most the burst, then the
	// rate.
	slow := New(nil, Options{Keys: keys, DocumentRoots: roots, DocumentFetchRate: 0.001,
		AllowDocumentAddr: func(a netip.Addr) bool { return a.IsLoopback() }})
	limited := false
	for i := range 25 {
		if _, err := slow.client(t.Context(), srv.URL+"/flood/"+strconv.Itoa(i)); errors.Is(err, errFetchRate) {
			limited = true
			break
		}
	}
	if !limited {
		t.Errorf("25 client_ids in a row: all fetched; want the fetch rate to refuse some")
	}
	for _, a := range []string{"127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "::1", "fc00::1", "fe80::1", "::ffff:127.0.0.1", "0.0.0.0", "64:ff9b::a9fe:a9fe"} {
		if PublicAddr(netip.MustParseAddr(a).Unmap()) {
			t.Errorf("PublicAddr(%s) = true", a)
		}
	}
	if !PublicAddr(netip.MustParseAddr("8.8.8.8")) {
		t.Errorf("PublicAddr(8.8.8.8) = false")
	}
}

// TestRedirectMatch: redirect URIs match exactly; a loopback one on any
// port (RFC 8252 section 7.3), and nothing else varies.
func TestRedirectMatch(t *testing.T) {
	c := &client{RedirectURIs: []string{"https://app.example/cb", "http://127.0.0.1/callback", "cursor://oauth/cb"}}
	for uri, want := range map[string]bool{
		"https://app.example/cb":              true,
		"https://app.example/cb?x=1":          false,
		"https://app.example/cb/":             false,
		"https://app.example:444/cb":          false,
		"https://evil.example/cb":             false,
		"http://127.0.0.1:5555/callback":      true,
		"http://127.0.0.1:5555/other":         false,
		"http://localhost:5555/callback":      false,
		"http://127.0.0.1:5555/callback#frag": false,
		"cursor://oauth/cb":                   true,
		"cursor://oauth/cb2":                  false,
	} {
		if got := c.matchRedirect(uri); got != want {
			t.Errorf("matchRedirect(%s) = %v; want %v", uri, got, want)
		}
	}
	for _, bad := range [][]string{{"http://app.example/cb"}, {"javascript:alert(1)"}, {"https://a.example/cb#x"}, {}, {"data:text/html,x"}} {
		if checkRedirectURIs(bad) == nil {
			t.Errorf("checkRedirectURIs(%v) accepted", bad)
		}
	}
	if err := checkRedirectURIs([]string{"https://a.example/cb", "http://[::1]/cb", "vscode://x/cb"}); err != nil {
		t.Errorf("good redirect URIs refused: %v", err)
	}
}

// flipUnusedBits changes the last character of unpadded base64url whose
// length leaves unused bits, so that a lax decoder reads the same bytes.
func flipUnusedBits(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, s[len(s)-1])
	return s[:len(s)-1] + string(alphabet[last^1])
}
