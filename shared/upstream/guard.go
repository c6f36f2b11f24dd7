package upstream

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"

	"mcpproxy.dev/mcpproxy/shared/credentials"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// Credentials present an upstream config's credentials on the pool's
// HTTP requests to it; *credentials.Presenter is the pool's, a test may
// inject its own. An error of either method fails the call without
// reaching the upstream; the pool neither drops the session nor tries
// again (it is a *credentials.Error, or made one). Wrapping
// ErrUnauthorized says only an operator can fix it.
type Credentials interface {
	// Sync is given up as the caller has it, before every call to it,
	// so that credentials stored since the session opened take over.
	Sync(up tenant.Upstream) error
	// Authorize adds up's credentials to r, which the caller owns. The
	// requests of a session are authorised with the up it was opened
	// with: what may change without a new session (see Key: OAuth
	// tokens) must follow the last Sync of up's config.
	Authorize(up tenant.Upstream, r *http.Request) error
}

// ErrUnauthorized is credentials.ErrUnauthorized, for the pool's callers.
var ErrUnauthorized = credentials.ErrUnauthorized

// credentialFailure is err as a *credentials.Error naming upstream.
func credentialFailure(upstream string, err error) error {
	if cerr, ok := errors.AsType[*credentials.Error](err); ok {
		return cerr
	}
	return &credentials.Error{Upstream: upstream, Err: err}
}

// guard is the HTTP layer of every request to one upstream, the SDK's
// and the pool's own. It sends nothing to another origin than the
// upstream's (origin.go), has Credentials authorise the rest, and turns
// a 401 into ErrUnauthorized before the SDK sees it: the SDK would take a
// 401 for a broken connection and fail the session.
type guard struct {
	base   http.RoundTripper
	up     tenant.Upstream
	creds  Credentials
	target *target
	// refuse, when set, is why no request may go to the upstream.
	refuse error
	// refused is the first request refused for where it was going
	// (another origin, a redirect), so that a failed connect reports it:
	// the SDK may report the connection it closed after the failed write
	// instead of the write's error.
	refused atomic.Pointer[credentials.Error]
	// maxMessage bounds one message of what the SDK reads (limitMessages).
	maxMessage int64
}

func newGuard(base http.RoundTripper, up tenant.Upstream, creds Credentials, t *target, maxMessage int64) *guard {
	g := guardOf(base, up, creds, t, maxMessage)
	return &g
}

// guardOf is a guard as a value: the pool's own tools/call keeps it on
// its stack.
func guardOf(base http.RoundTripper, up tenant.Upstream, creds Credentials, t *target, maxMessage int64) guard {
	return guard{base: base, up: up, creds: creds, target: t, refuse: t.refusal(up), maxMessage: maxMessage}
}

func (g *guard) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context()) // a RoundTripper must not change the caller's request
	err := g.admit(r)
	if err == nil {
		if err = g.creds.Authorize(g.up, r); err != nil {
			closeBody(r)
			err = credentialFailure(g.up.Name, err)
		}
	}
	if err != nil {
		return nil, err
	}
	resp, err := g.send(r)
	if err == nil {
		// The SDK's requests: it reads answers without a bound of its
		// own. (The pool's own tools/call meters its reading itself.)
		limitMessages(resp, g.maxMessage)
	}
	return resp, err
}

// admit returns why r may not go where it is going, closing its body,
// or nil.
func (g *guard) admit(r *http.Request) error {
	var err error
	switch {
	case g.refuse != nil:
		err = &credentials.Error{Upstream: g.up.Name, Err: g.refuse}
	case !g.target.allows(r.URL):
		err = g.record(foreignOrigin(g.up.Name, r.URL, g.target))
	default:
		return nil
	}
	closeBody(r)
	return err
}

// send sends r, admitted and authorised, and turns a 401 into
// ErrUnauthorized.
func (g *guard) send(r *http.Request) (*http.Response, error) {
	resp, err := g.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
		resp.Body.Close()
		return nil, &credentials.Error{Upstream: g.up.Name, Err: fmt.Errorf("answered HTTP 401: %w", ErrUnauthorized)}
	}
	return resp, nil
}

func closeBody(r *http.Request) {
	if r.Body != nil {
		r.Body.Close()
	}
}

// guard is the guard of up's requests over the pool's transport.
func (p *Pool) guard(up tenant.Upstream) *guard {
	return newGuard(p.base(), up, p.creds, p.target(up.URL), p.opts.MaxMessageBytes)
}

func (p *Pool) base() http.RoundTripper {
	if p.http.Transport != nil {
		return p.http.Transport
	}
	return http.DefaultTransport
}
