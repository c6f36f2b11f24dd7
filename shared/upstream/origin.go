package upstream

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"mcpproxy.dev/mcpproxy/shared/credentials"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// An upstream's credentials go only to the origin (scheme, host and port)
// of the URL an operator configured. The SDK's SSE transport posts to
// whatever URL the upstream's endpoint event names, and http.Client
// follows redirects with the same headers (guard adds them again
// on every hop), so the guard is in the HTTP layer the pool controls:
// guard refuses a request to any other origin, and every client the
// package builds refuses redirects. (The OAuth token endpoint's client,
// in package credentials, refuses them too.)

// target is where an upstream's requests may go, parsed once per URL.
type target struct {
	scheme, host string // as url.Parse gives them, for the fast comparison
	canonical    string // lower case scheme://host:port, default port filled in
	origin       string // scheme://host, as an error names it
	loopback     bool
	err          error // the URL is not an absolute http or https URL
}

func parseTarget(rawURL string) *target {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return &target{err: errors.New("its URL is not an absolute http or https URL")}
	}
	return &target{scheme: u.Scheme, host: u.Host, canonical: canonicalOrigin(u),
		origin: u.Scheme + "://" + u.Host, loopback: isLoopback(u.Hostname())}
}

// target returns the parsed target of rawURL, parsing it only the first
// time: the pool's own tools/call builds a guard per call.
func (p *Pool) target(rawURL string) *target {
	if t, ok := p.targets.Load(rawURL); ok {
		return t.(*target)
	}
	t, _ := p.targets.LoadOrStore(rawURL, parseTarget(rawURL))
	return t.(*target)
}

// allows reports whether u is at the target's origin.
func (t *target) allows(u *url.URL) bool {
	return u.Scheme == t.scheme && u.Host == t.host || canonicalOrigin(u) == t.canonical
}

func canonicalOrigin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		switch scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// isLoopback reports whether host names this machine without DNS having
// a say: localhost, 127.0.0.0/8 or ::1.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// refusal is why no request may go to up at all, or nil: a URL that is
// not absolute, or plain http to a host other than this machine, which
// would carry the credentials and the calls unencrypted, unless an
// operator let the server use http.
func (t *target) refusal(up tenant.Upstream) error {
	if t.err != nil {
		return t.err
	}
	if t.scheme != "http" || t.loopback || up.AllowHTTP {
		return nil
	}
	optOut := "mcpadmin server create ... --allow-http"
	if up.ServerID != "" {
		optOut = "mcpadmin server update --server " + up.ServerID + " --allow-http"
	}
	return fmt.Errorf("refused plain http to %s, which is not a loopback address: use an https URL, or let this server use http with %s",
		t.host, optOut)
}

// originOf names u's origin for an error: no userinfo, path or query.
func originOf(u *url.URL) string {
	if u == nil {
		return "an unknown location"
	}
	return u.Scheme + "://" + u.Host
}

// foreignOrigin is the refusal of a request to u, another origin than
// the upstream's.
func foreignOrigin(upstream string, u *url.URL, t *target) *credentials.Error {
	return &credentials.Error{Upstream: upstream, Err: fmt.Errorf("refused a request to %s: the upstream's credentials go only to its own origin %s",
		originOf(u), t.origin)}
}

// record keeps err as g's first refusal and returns it.
func (g *guard) record(err *credentials.Error) error {
	g.refused.CompareAndSwap(nil, err)
	return err
}

// firstRefusal is the first request g refused for where it was going,
// or nil (also for a nil g, a stdio upstream's).
func (g *guard) firstRefusal() error {
	if g == nil {
		return nil
	}
	if err := g.refused.Load(); err != nil {
		return err
	}
	return nil
}

// checkRedirect is the CheckRedirect of a client with g as transport
// (guardedClient). A redirect is never followed: http.Client would send
// the credentials on to wherever the upstream names, and the URL an
// operator configured is the only place they are meant for. The request
// it refuses is not sent.
func (g *guard) checkRedirect(req *http.Request, _ []*http.Request) error {
	return g.record(redirectRefused(g.up.Name, req.URL))
}

func redirectRefused(upstream string, to *url.URL) *credentials.Error {
	return &credentials.Error{Upstream: upstream, Err: fmt.Errorf("refused to follow a redirect to %s: credentials go only to the configured URL; configure the URL it redirects to instead",
		originOf(to))}
}

// isRedirect reports whether status asks the client to go elsewhere.
func isRedirect(status int) bool {
	switch status {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}
