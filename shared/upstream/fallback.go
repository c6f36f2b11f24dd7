package upstream

import (
	"net/http"
	"sync/atomic"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// A server registered as Streamable HTTP may speak only the 2024-11-05
// HTTP+SSE transport: it refuses the POST of initialize with 400, 404 or
// 405 (the status the specification's backwards-compatibility section
// names). The pool then connects once more over SSE, at the same URL,
// and remembers it for that URL for the life of the process.

// legacySSE reports whether url is known to answer only the SSE way.
func (p *Pool) legacySSE(url string) bool {
	_, ok := p.sseURLs.Load(url)
	return ok
}

// direct reports whether CallTool posts to up itself: a Streamable HTTP upstream
// that speaks Streamable HTTP.
func (p *Pool) direct(up tenant.Upstream) bool {
	return up.Transport == tenant.TransportStreamableHTTP && !p.legacySSE(up.URL)
}

// firstPost records the status of the first POST a client sends.
type firstPost struct {
	base   http.RoundTripper
	status atomic.Int32
}

func (f *firstPost) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := f.base.RoundTrip(r)
	if err == nil && r.Method == http.MethodPost {
		f.status.CompareAndSwap(0, int32(resp.StatusCode))
	}
	return resp, err
}

// refusedPost reports whether the first POST was refused the way a
// server without Streamable HTTP refuses it.
func (f *firstPost) refusedPost() bool {
	switch f.status.Load() {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusMethodNotAllowed:
		return true
	}
	return false
}

// recording returns a copy of c whose transport records the first POST.
func recording(c *http.Client) (*http.Client, *firstPost) {
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	f := &firstPost{base: base}
	out := *c
	out.Transport = f
	return &out, f
}
