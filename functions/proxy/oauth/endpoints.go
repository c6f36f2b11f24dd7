package oauth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// oauthError writes an error response of the token, registration or
// revocation endpoint (RFC 6749 section 5.2).
func oauthError(w http.ResponseWriter, status int, code, description string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": description})
}

// token serves the token endpoint: authorization_code with PKCE, and
// refresh_token with rotation.
func (s *Server) token(w http.ResponseWriter, r *http.Request, iss string) {
	if err := r.ParseForm(); err != nil || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded, at most 16 KiB")
		return
	}
	clientID := clientOf(r)
	if clientID == "" {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "client_id is required")
		return
	}
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		s.redeemCode(w, r, iss, clientID)
	case "refresh_token":
		s.refresh(w, r, iss, clientID)
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be authorization_code or refresh_token")
	}
}

// clientOf is the client_id of a token or revocation request: from the
// form, or from HTTP Basic credentials, whose secret a public client does
// not have and which is not checked.
func clientOf(r *http.Request) string {
	if id, _, ok := r.BasicAuth(); ok {
		if id, err := url.QueryUnescape(id); err == nil {
			return id
		}
	}
	return r.PostForm.Get("client_id")
}

func (s *Server) redeemCode(w http.ResponseWriter, r *http.Request, iss, clientID string) {
	ctx := r.Context()
	code, verifier := r.PostForm.Get("code"), r.PostForm.Get("code_verifier")
	if code == "" || len(code) > 128 {
		oauthError(w, http.StatusBadRequest, "invalid_request", "code is required")
		return
	}
	if len(verifier) < 43 || len(verifier) > 128 {
		oauthError(w, http.StatusBadRequest, "invalid_request", "code_verifier of 43 to 128 characters is required (PKCE)")
		return
	}
	c, err := s.db.RedeemOAuthCode(ctx, sha256.Sum256([]byte(code)), s.opts.Now())
	switch {
	case errors.Is(err, tenant.ErrReused):
		s.opts.Logger.Warn("authorization code used twice; its grant is revoked", "clientId", clip(clientID, 200))
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the authorization code was used before; its grant is revoked")
		return
	case errors.Is(err, tenant.ErrNotFound):
		oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown or expired authorization code")
		return
	case err != nil:
		s.unavailable(w, "redeem code", err)
		return
	}
	challenge := sha256.Sum256([]byte(verifier))
	switch {
	case c.ClientID != clientID:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the code was issued to another client")
	case r.PostForm.Get("redirect_uri") != c.RedirectURI:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "redirect_uri differs from the authorization request's")
	case subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(challenge[:])), []byte(c.CodeChallenge)) != 1:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "code_verifier does not match the code_challenge")
	case !sameResource(r, c.Resource):
		oauthError(w, http.StatusBadRequest, "invalid_target", "resource differs from the authorization request's")
	default:
		s.issue(w, r, iss, c.GrantID, c.ClientID, c.Resource, c.Scope)
	}
}

// sameResource reports whether a token request's resource, if it names
// one, is the grant's.
func sameResource(r *http.Request, grant string) bool {
	res := r.PostForm["resource"]
	return len(res) == 0 || len(res) == 1 && strings.TrimSuffix(res[0], "/") == grant
}

func (s *Server) refresh(w http.ResponseWriter, r *http.Request, iss, clientID string) {
	ctx := r.Context()
	old := r.PostForm.Get("refresh_token")
	if old == "" || len(old) > 128 {
		oauthError(w, http.StatusBadRequest, "invalid_request", "refresh_token is required")
		return
	}
	next, nextHash := newSecret(refreshPrefix)
	now := s.opts.Now()
	g, err := s.db.RotateRefreshToken(ctx, sha256.Sum256([]byte(old)), nextHash, now, now.Add(s.opts.RefreshTTL))
	switch {
	case errors.Is(err, tenant.ErrReused):
		s.opts.Logger.Warn("refresh token used twice; its grant is revoked", "clientId", clip(clientID, 200))
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the refresh token was used before; its grant is revoked")
		return
	case errors.Is(err, tenant.ErrNotFound):
		oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown, expired or revoked refresh token")
		return
	case err != nil:
		s.unavailable(w, "refresh", err)
		return
	}
	if g.ClientID != clientID {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the refresh token was issued to another client")
		return
	}
	if !sameResource(r, g.Resource) {
		oauthError(w, http.StatusBadRequest, "invalid_target", "resource differs from the grant's")
		return
	}
	s.respondTokens(w, r, iss, g.GrantID, g.ClientID, g.Resource, g.Scope, next)
}

// issue makes the first refresh token of a grant and answers the tokens.
func (s *Server) issue(w http.ResponseWriter, r *http.Request, iss, grantID, clientID, resource, scope string) {
	refresh, hash := newSecret(refreshPrefix)
	if err := s.db.CreateRefreshToken(r.Context(), grantID, hash, s.opts.Now().Add(s.opts.RefreshTTL)); err != nil {
		s.unavailable(w, "create refresh token", err)
		return
	}
	s.respondTokens(w, r, iss, grantID, clientID, resource, scope, refresh)
}

// respondTokens answers an access token for a grant that still stands,
// with the given refresh token.
func (s *Server) respondTokens(w http.ResponseWriter, r *http.Request, iss, grantID, clientID, resource, scope, refresh string) {
	g, err := s.db.LookupOAuthGrant(r.Context(), grantID)
	if err != nil {
		s.unavailable(w, "look up grant", err)
		return
	}
	now := s.opts.Now()
	if err := g.Check(now); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_grant", err.Error())
		return
	}
	jti, _ := newSecret("")
	access := s.opts.Keys.Sign(&Claims{Issuer: iss, Subject: g.Key.UserID, Audience: resource,
		ExpiresAt: now.Add(s.opts.AccessTTL).Unix(), IssuedAt: now.Unix(), ID: jti, ClientID: clientID, Scope: scope, Grant: grantID})
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": access, "token_type": "Bearer", "expires_in": int(s.opts.AccessTTL / time.Second),
		"refresh_token": refresh, "scope": scope,
	})
}

// refreshPrefix starts every refresh token, so that a leaked one is
// recognisable by secret scanners.
const refreshPrefix = "mcpr_"

// newSecret makes a random token behind prefix, and its SHA-256.
func newSecret(prefix string) (string, [32]byte) {
	var b [32]byte
	rand.Read(b[:])
	s := prefix + base64.RawURLEncoding.EncodeToString(b[:])
	return s, sha256.Sum256([]byte(s))
}

func (s *Server) unavailable(w http.ResponseWriter, what string, err error) {
	s.opts.Logger.Error("oauth: "+what+" failed", "error", err.Error())
	w.Header().Set("Retry-After", "1")
	oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "cannot answer now; retry later")
}

// revoke serves RFC 7009: an access or refresh token revokes its grant,
// and so the grant's other tokens. An unknown token is no error.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded, at most 16 KiB")
		return
	}
	clientID, token := clientOf(r), r.PostForm.Get("token")
	if clientID == "" {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "client_id is required")
		return
	}
	if token == "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "token is required")
		return
	}
	var err error
	if LooksLikeJWT(token) {
		if c, verr := s.opts.Keys.Verify(token); verr == nil && c.ClientID == clientID {
			if err = s.db.RevokeOAuthGrant(r.Context(), c.Grant, clientID); errors.Is(err, tenant.ErrNotFound) {
				err = nil
			}
		}
	} else if len(token) <= 128 {
		err = s.db.RevokeRefreshToken(r.Context(), sha256.Sum256([]byte(token)), clientID)
	}
	if err != nil {
		s.unavailable(w, "revoke", err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// registerClient serves dynamic client registration (RFC 7591) for
// public clients: every client is registered with
// token_endpoint_auth_method none, whatever it asked for (section 3.2.1
// lets the server replace what it does not support).
func (s *Server) registerClient(w http.ResponseWriter, r *http.Request) {
	if !s.register.Allow() {
		w.Header().Set("Retry-After", "10")
		oauthError(w, http.StatusTooManyRequests, "temporarily_unavailable", "too many registrations; retry later")
		return
	}
	var req struct {
		RedirectURIs  []string `json:"redirect_uris"`
		ClientName    string   `json:"client_name"`
		GrantTypes    []string `json:"grant_types"`
		ResponseTypes []string `json:"response_types"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_client_metadata", "the body must be a JSON object of client metadata, at most 16 KiB")
		return
	}
	if err := checkRedirectURIs(req.RedirectURIs); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_redirect_uri", err.Error())
		return
	}
	for _, g := range req.GrantTypes {
		if g != "authorization_code" && g != "refresh_token" {
			oauthError(w, http.StatusBadRequest, "invalid_client_metadata", "grant_types may hold authorization_code and refresh_token only")
			return
		}
	}
	for _, t := range req.ResponseTypes {
		if t != "code" {
			oauthError(w, http.StatusBadRequest, "invalid_client_metadata", "response_types may hold code only")
			return
		}
	}
	id, _ := newSecret(registeredPrefix)
	c, err := s.db.CreateOAuthClient(r.Context(), postgres.OAuthClient{ID: id[:len(registeredPrefix)+32], Name: clip(req.ClientName, 100), RedirectURIs: slices.Clone(req.RedirectURIs)})
	if err != nil {
		s.unavailable(w, "register client", err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{
		"client_id": c.ID, "client_id_issued_at": c.CreatedAt.Unix(), "client_name": c.Name,
		"redirect_uris": c.RedirectURIs, "grant_types": []string{"authorization_code", "refresh_token"},
		"response_types": []string{"code"}, "token_endpoint_auth_method": "none",
	})
}
