package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"mcpproxy.dev/mcpproxy/functions/proxy/oauth"
	"mcpproxy.dev/mcpproxy/shared/logging"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// serveOAuth serves the authorization server's paths as the front serves
// MCP requests: counted for Shutdown, refused while it drains, and one
// log line each (never a token or a code: the path and status only).
func (h *Handler) serveOAuth(w http.ResponseWriter, r *http.Request) {
	h.inflight.Add(1)
	defer h.inflight.Add(-1)
	if h.drain.Load() {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "the proxy is shutting down; retry", http.StatusServiceUnavailable)
		return
	}
	start := h.opts.Now()
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	h.auth.ServeHTTP(sw, r)
	h.log.LogAttrs(r.Context(), slog.LevelInfo, "oauth request", slog.String("path", r.URL.Path), slog.String("httpMethod", r.Method),
		slog.Int("httpStatus", sw.status), slog.Int64("durationMs", h.opts.Now().Sub(start).Milliseconds()),
		slog.String("clientIp", logging.ClientIP(r)), slog.String("userAgent", r.UserAgent()))
}

// statusWriter remembers the status of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// The proxy as an OAuth protected resource: requests with an access token
// of its authorization server (package oauth) instead of an API key.

// authenticateToken checks an access token for the route: signature,
// issuer, audience (the route's own URL, so a token for one instance is
// refused on another), expiry and scope in the process; the grant's
// status, its key's and its instance's from the warm cache.
func (h *Handler) authenticateToken(ctx context.Context, r *http.Request, rt route, token string, o *outcome) (*caller, *rpcError) {
	claims, err := h.auth.Verifier().Check(token, h.auth.Issuer(r), strings.TrimSuffix(r.URL.Path, "/"), h.opts.Now())
	if err != nil {
		h.authFailure(r, "(access token)", err.Error())
		return nil, unauthorized("invalid_token", err.Error())
	}
	g, outcome, err := h.grants.Get(ctx, claims.Grant, func(ctx context.Context) (*tenant.Grant, error) {
		return h.store.LookupOAuthGrant(ctx, claims.Grant)
	})
	o.keyCache = outcome
	switch {
	case errors.Is(err, tenant.ErrNotFound):
		h.authFailure(r, "(access token)", "unknown grant")
		return nil, unauthorized("invalid_token", "the grant of the access token does not exist")
	case err != nil:
		h.log.Error("grant lookup failed", "error", err.Error())
		return nil, newError(http.StatusServiceUnavailable, codeInternalError, "cannot check the access token now; retry later")
	}
	if err := g.Check(h.opts.Now()); err != nil {
		h.authFailure(r, "(access token)", err.Error())
		return nil, unauthorized("invalid_token", err.Error())
	}
	if rt.instanceID != "" && rt.instanceID != g.Key.InstanceID {
		// The audience check refuses this already; a grant is never
		// used on another instance than its own, whatever its resource.
		h.authFailure(r, "(access token)", "token used on another instance")
		return nil, unauthorized("invalid_token", "the access token is not for instance "+rt.instanceID)
	}
	o.key, o.grant = &g.Key, g
	return h.open(ctx, &g.Key, rt, o)
}

// challenge points a 401 at the route's protected resource metadata
// (RFC 9728 section 5.1), where clients find the authorization server.
func (h *Handler) challenge(r *http.Request, e *rpcError) {
	if h.auth == nil || e.status != http.StatusUnauthorized {
		return
	}
	c := e.header.Get("Www-Authenticate") + `, resource_metadata="` + oauth.ResourceMetadataURL(h.auth.Issuer(r), r.URL.EscapedPath()) + `", scope="` + oauth.Scope + `"`
	e.header.Set("Www-Authenticate", c)
	// A browser-based client of an allowed origin must read it.
	e.header.Set("Access-Control-Expose-Headers", "WWW-Authenticate")
}

// ValidResource reports whether path is an MCP route, and the instance it
// names; the authorization server takes it as Options.ValidResource.
func ValidResource(path string) (instanceID string, ok bool) {
	rt, ok := parseRoute(path)
	if !ok || path != "/mcp" && strings.HasSuffix(path, "/") {
		return "", false
	}
	return rt.instanceID, true
}
