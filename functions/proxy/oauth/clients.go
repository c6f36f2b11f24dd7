package oauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"time"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// client is who asks for a grant: a client registered here (RFC 7591) or
// one whose client_id is the https URL of its metadata document
// (draft-ietf-oauth-client-id-metadata-document).
type client struct {
	ID           string
	Name         string
	RedirectURIs []string
}

// errUnknownClient is the error of a client_id that names no client.
var errUnknownClient = errors.New("unknown client")

// errFetchRate is the error of a metadata document fetch beyond the rate.
var errFetchRate = errors.New("too many client metadata documents to fetch right now")

// client resolves a client_id.
func (s *Server) client(ctx context.Context, id string) (*client, error) {
	if strings.HasPrefix(id, "https://") {
		c, _, err := s.documents.Get(ctx, id, func(ctx context.Context) (*client, error) {
			// Each new URL is a fetch: a flood of made-up client_ids
			// makes at most DocumentFetchRate of them a second.
			if !s.fetches.Allow() {
				return nil, errFetchRate
			}
			return s.fetchDocument(ctx, id)
		})
		return c, err
	}
	if !strings.HasPrefix(id, registeredPrefix) || len(id) > 64 {
		return nil, errUnknownClient
	}
	row, err := s.db.LookupOAuthClient(ctx, id)
	if errors.Is(err, tenant.ErrNotFound) {
		return nil, errUnknownClient
	}
	if err != nil {
		return nil, err
	}
	return &client{ID: row.ID, Name: row.Name, RedirectURIs: row.RedirectURIs}, nil
}

// registeredPrefix starts the client_id of a client registered here.
const registeredPrefix = "mcpc_"

// Bounds of a client metadata document fetch.
const (
	maxDocumentBytes = 16 << 10
	documentTimeout  = 5 * time.Second
)

// documentError is a client metadata document that cannot be used: a
// stable answer, cached for a while like a found document.
type documentError struct{ reason string }

func (e *documentError) Error() string { return "client metadata document: " + e.reason }

// fetchDocument fetches and checks a client metadata document. The fetch
// goes through s.fetcher, which connects to public addresses only.
func (s *Server) fetchDocument(ctx context.Context, id string) (*client, error) {
	u, err := url.Parse(id)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" ||
		u.Path == "" || u.Path == "/" || strings.Contains(u.Path, "/./") || strings.Contains(u.Path, "/../") || len(id) > 2048 {
		return nil, &documentError{"client_id must be an https URL with a path, without credentials or fragment"}
	}
	ctx, cancel := context.WithTimeout(ctx, documentTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, id, nil)
	if err != nil {
		return nil, &documentError{err.Error()}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.fetcher.Do(req)
	if err != nil {
		return nil, &documentError{"fetch failed: " + err.Error()}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &documentError{fmt.Sprintf("fetch answered %d", resp.StatusCode)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes+1))
	if err != nil {
		return nil, &documentError{"read failed: " + err.Error()}
	}
	if len(body) > maxDocumentBytes {
		return nil, &documentError{fmt.Sprintf("larger than %d bytes", maxDocumentBytes)}
	}
	var doc struct {
		ClientID     string   `json:"client_id"`
		ClientName   string   `json:"client_name"`
		RedirectURIs []string `json:"redirect_uris"`
		AuthMethod   string   `json:"token_endpoint_auth_method"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, &documentError{"not a JSON object of client metadata"}
	}
	switch {
	case doc.ClientID != id:
		return nil, &documentError{"its client_id is not the URL it was fetched from"}
	case doc.AuthMethod != "" && doc.AuthMethod != "none":
		return nil, &documentError{"token_endpoint_auth_method must be none: the server has no client secrets for metadata document clients"}
	}
	if err := checkRedirectURIs(doc.RedirectURIs); err != nil {
		return nil, &documentError{err.Error()}
	}
	return &client{ID: id, Name: clip(doc.ClientName, 100), RedirectURIs: doc.RedirectURIs}, nil
}

// newFetcher makes the HTTP client that fetches metadata documents: https
// only, no redirects, no proxy, and connections only to addresses allow
// accepts, checked on the address dialled (after DNS resolution), so that
// a name that resolves to an internal address cannot be used to reach
// it, however often its DNS answer changes.
func newFetcher(allow func(netip.Addr) bool, roots *x509.CertPool) *http.Client {
	dialer := &net.Dialer{Timeout: documentTimeout, Control: func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil || !allow(ap.Addr().Unmap()) {
			return fmt.Errorf("address %s is not a public address", address)
		}
		return nil
	}}
	return &http.Client{
		Transport: &http.Transport{
			DialContext:            dialer.DialContext,
			TLSClientConfig:        &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:    documentTimeout,
			ResponseHeaderTimeout:  documentTimeout,
			MaxResponseHeaderBytes: 16 << 10,
			MaxIdleConns:           10,
			IdleConnTimeout:        30 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return errors.New("redirects are not followed") },
		Timeout:       documentTimeout,
	}
}

// PublicAddr reports whether an address is on the public internet: not
// loopback, private (RFC 1918, unique local), link-local (cloud metadata
// servers live there), shared (RFC 6598), unspecified, multicast or
// otherwise reserved.
func PublicAddr(a netip.Addr) bool {
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return false
	}
	for _, p := range reserved {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

var reserved = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // shared address space
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"), // NAT64 can reach IPv4 internals
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2002::/16"), // 6to4
	netip.MustParsePrefix("100::/64"),
}

// checkRedirectURIs checks the redirect URIs a client declares: https, or
// http to a loopback address (RFC 8252 section 7.3), or a private-use
// scheme of a native app (section 7.1); no fragment.
func checkRedirectURIs(uris []string) error {
	if len(uris) == 0 || len(uris) > 10 {
		return errors.New("redirect_uris must list 1 to 10 URIs")
	}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil || len(s) > 2048 || u.Scheme == "" || u.Fragment != "" || strings.Contains(s, "#") {
			return fmt.Errorf("redirect URI %q is not an absolute URI without fragment", clip(s, 100))
		}
		switch scheme := strings.ToLower(u.Scheme); scheme {
		case "https":
			if u.Host == "" {
				return fmt.Errorf("redirect URI %q has no host", clip(s, 100))
			}
		case "http":
			if !loopbackRedirect(u) {
				return fmt.Errorf("redirect URI %q: http is allowed only to a loopback address", clip(s, 100))
			}
		case "javascript", "data", "file", "vbscript", "about", "blob", "ftp", "ws", "wss":
			return fmt.Errorf("redirect URI %q: scheme %s is not allowed", clip(s, 100), scheme)
		}
	}
	return nil
}

// loopbackRedirect reports whether u is an http URI of a loopback
// address, whose port a native client picks at each authorization.
func loopbackRedirect(u *url.URL) bool {
	if u.Scheme != "http" {
		return false
	}
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}

// matchRedirect reports whether the redirect URI of a request is one the
// client declared: the same string, or for a loopback redirect the same
// URI on any port (RFC 8252 section 7.3).
func (c *client) matchRedirect(uri string) bool {
	if slices.Contains(c.RedirectURIs, uri) {
		return true
	}
	u, err := url.Parse(uri)
	if err != nil || !loopbackRedirect(u) || u.Fragment != "" || u.User != nil {
		return false
	}
	for _, r := range c.RedirectURIs {
		d, err := url.Parse(r)
		if err == nil && loopbackRedirect(d) && d.Hostname() == u.Hostname() && d.Path == u.Path && d.RawQuery == u.RawQuery {
			return true
		}
	}
	return false
}

// clip bounds a string from outside before it is shown or stored.
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
