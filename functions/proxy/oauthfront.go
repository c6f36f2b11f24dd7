package proxy

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"mcpproxy.dev/mcpproxy/functions/proxy/oauth"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

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
