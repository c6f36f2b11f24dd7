// Package oauth is the proxy's OAuth 2.1 authorization server and the
// access token checks of its resource server (docs/oauth.md): MCP
// clients that cannot send an API key (the connectors of Claude and
// ChatGPT, most hosted clients) discover it from the proxy's 401, sign a
// user in on its consent page and get short-lived access tokens for one
// instance.
//
// It serves, below the function's URL: the authorization server metadata
// (RFC 8414, and the OpenID discovery path), the protected resource
// metadata of each MCP route (RFC 9728), the JWKS, /oauth/authorize (the
// consent page), /oauth/token, /oauth/register (RFC 7591) and
// /oauth/revoke (RFC 7009).
package oauth

import (
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"mcpproxy.dev/mcpproxy/functions/proxy/configcache"
	"mcpproxy.dev/mcpproxy/shared/postgres"
)

// Options configure a Server. Zero values take the defaults named.
type Options struct {
	// Issuer is the function's public URL without a trailing slash, the
	// issuer of its tokens and the base of its resource URLs. "" derives
	// it from each request's Host (https, or http on a loopback
	// address): Cloud Run routes to a service only requests addressed to
	// its own URLs.
	Issuer string
	// Keys sign and verify access tokens.
	Keys *Keys
	// AccessTTL is how long an access token is valid. Default 10 min.
	AccessTTL time.Duration
	// RefreshTTL is how long a refresh token is valid. Default 30 days.
	RefreshTTL time.Duration
	// CodeTTL is how long an authorization code may wait to be
	// redeemed. Default 1 min.
	CodeTTL time.Duration
	// RegisterRate bounds dynamic client registrations per second and
	// process (burst 10). Default 0.2 (12 a minute).
	RegisterRate float64
	// DocumentFetchRate bounds the client metadata documents fetched per
	// second and process (burst 20), not counting those cached. Default 5.
	DocumentFetchRate float64
	// ValidResource reports whether a path below the issuer is an MCP
	// route, and which instance it names ("" for the key's own).
	ValidResource func(path string) (instanceID string, ok bool)
	// AllowDocumentAddr reports whether a client metadata document may
	// be fetched from an address; nil allows public addresses only
	// (PublicAddr). DocumentRoots are the CAs its https server is
	// checked against; nil: the system's.
	AllowDocumentAddr func(netip.Addr) bool
	DocumentRoots     *x509.CertPool
	// OIDC, when set, lets users sign in on the consent page through an
	// OpenID Connect provider, besides pasting an API key.
	OIDC *OIDC
	// Logger receives what the server refused and why.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Server is the authorization server. It is safe for concurrent use.
type Server struct {
	db        *postgres.DB
	opts      Options
	fetcher   *http.Client
	documents *configcache.Cache[*client]
	register  *rate.Limiter
	keyChecks *rate.Limiter // API key checks of the consent page
	fetches   *rate.Limiter // client metadata documents fetched
	verifier  *Verifier
	parties   parties
}

// New makes a Server over the database that holds its grants.
func New(db *postgres.DB, opts Options) *Server {
	if opts.AccessTTL <= 0 {
		opts.AccessTTL = 10 * time.Minute
	}
	if opts.RefreshTTL <= 0 {
		opts.RefreshTTL = 30 * 24 * time.Hour
	}
	if opts.CodeTTL <= 0 {
		opts.CodeTTL = time.Minute
	}
	if opts.RegisterRate <= 0 {
		opts.RegisterRate = 0.2
	}
	if opts.DocumentFetchRate <= 0 {
		opts.DocumentFetchRate = 5
	}
	if opts.AllowDocumentAddr == nil {
		opts.AllowDocumentAddr = PublicAddr
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.Issuer = strings.TrimSuffix(opts.Issuer, "/")
	// A document that cannot be used is a stable answer: cached like
	// one that can, so a client_id cannot make the server fetch at will.
	docErr := func(err error) bool { _, ok := err.(*documentError); return ok }
	return &Server{db: db, opts: opts,
		fetcher: newFetcher(opts.AllowDocumentAddr, opts.DocumentRoots),
		documents: configcache.New[*client](configcache.Options{Size: 1000, TTL: 5 * time.Minute, StaleIfError: -1,
			NegativeTTL: 30 * time.Second, LoadTimeout: documentTimeout + time.Second, IsNegative: docErr, Now: opts.Now}),
		register:  rate.NewLimiter(rate.Limit(opts.RegisterRate), 10),
		keyChecks: rate.NewLimiter(20, 20),
		fetches:   rate.NewLimiter(rate.Limit(opts.DocumentFetchRate), 20),
		// About 1 KiB per token kept: 4 MiB at most.
		verifier: NewVerifier(opts.Keys, 4096),
	}
}

// Verifier is the server's access token verifier, for the resource
// server of the same process.
func (s *Server) Verifier() *Verifier { return s.verifier }

// Owns reports whether a path is the authorization server's to serve.
func Owns(path string) bool {
	return strings.HasPrefix(path, "/.well-known/") || strings.HasPrefix(path, "/oauth/")
}

// Paths below the issuer.
const (
	metadataPath   = "/.well-known/oauth-authorization-server"
	openIDPath     = "/.well-known/openid-configuration"
	resourcePrefix = "/.well-known/oauth-protected-resource"
	jwksPath       = "/oauth/jwks"
	authorizePath  = "/oauth/authorize"
	tokenPath      = "/oauth/token"
	registerPath   = "/oauth/register"
	revokePath     = "/oauth/revoke"
)

// ServeHTTP serves the paths Owns reports.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	iss := s.Issuer(r)
	path := r.URL.Path
	switch {
	case path == metadataPath || path == openIDPath:
		s.get(w, r, func() { writeJSON(w, http.StatusOK, s.metadata(iss)) })
	case strings.HasPrefix(path, resourcePrefix+"/"):
		s.get(w, r, func() { s.resourceMetadata(w, iss, strings.TrimSuffix(path[len(resourcePrefix):], "/")) })
	case path == jwksPath:
		s.get(w, r, func() {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "public, max-age=300")
			w.Write(s.opts.Keys.JWKS())
		})
	case path == authorizePath:
		s.authorize(w, r, iss)
	case path == loginPath:
		s.login(w, r, iss)
	case path == callbackPath:
		s.callback(w, r, iss)
	case path == tokenPath:
		s.post(w, r, func() { s.token(w, r, iss) })
	case path == registerPath:
		s.post(w, r, func() { s.registerClient(w, r) })
	case path == revokePath:
		s.post(w, r, func() { s.revoke(w, r) })
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found", "error_description": "nothing at " + clip(path, 200)})
	}
}

// get serves a document to any origin: metadata is public, and browser
// based clients read it.
func (s *Server) get(w http.ResponseWriter, r *http.Request, serve func()) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		serve()
	case http.MethodOptions:
		w.Header().Set("Access-Control-Allow-Methods", "GET")
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "invalid_request", "error_description": "GET only"})
	}
}

// post serves an endpoint that browser-based clients call with a form or
// JSON and no credentials of the browser's.
func (s *Server) post(w http.ResponseWriter, r *http.Request, serve func()) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	switch r.Method {
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		serve()
	case http.MethodOptions:
		w.Header().Set("Access-Control-Allow-Methods", "POST")
		w.Header().Set("Access-Control-Allow-Headers", "Content-Type, Authorization")
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "POST")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "invalid_request", "error_description": "POST only"})
	}
}

// maxFormBytes bounds the body of a token, registration or revocation
// request, and of the consent form.
const maxFormBytes = 16 << 10

// Issuer is the issuer for a request: Options.Issuer, or derived from the
// request's Host.
func (s *Server) Issuer(r *http.Request) string {
	if s.opts.Issuer != "" {
		return s.opts.Issuer
	}
	if onLoopback(r) {
		return "http://" + r.Host
	}
	return "https://" + r.Host
}

func (s *Server) metadata(iss string) map[string]any {
	return map[string]any{
		"issuer":                                         iss,
		"authorization_endpoint":                         iss + authorizePath,
		"token_endpoint":                                 iss + tokenPath,
		"registration_endpoint":                          iss + registerPath,
		"revocation_endpoint":                            iss + revokePath,
		"jwks_uri":                                       iss + jwksPath,
		"response_types_supported":                       []string{"code"},
		"response_modes_supported":                       []string{"query"},
		"grant_types_supported":                          []string{"authorization_code", "refresh_token"},
		"code_challenge_methods_supported":               []string{"S256"},
		"token_endpoint_auth_methods_supported":          []string{"none"},
		"revocation_endpoint_auth_methods_supported":     []string{"none"},
		"scopes_supported":                               []string{Scope},
		"authorization_response_iss_parameter_supported": true,
		"client_id_metadata_document_supported":          true,
		// The OpenID discovery path serves this document too: clients
		// try it, and nothing here is OpenID-specific beyond its name.
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"EdDSA"},
	}
}

// resourceMetadata answers the protected resource metadata (RFC 9728) of
// the MCP route at path.
func (s *Server) resourceMetadata(w http.ResponseWriter, iss, path string) {
	if _, ok := s.opts.ValidResource(path); !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found", "error_description": "no MCP endpoint at " + clip(path, 200)})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"resource":                 iss + path,
		"authorization_servers":    []string{iss},
		"scopes_supported":         []string{Scope},
		"bearer_methods_supported": []string{"header"},
		"resource_name":            "MCP proxy",
	})
}

// ResourceMetadataURL is the URL of the protected resource metadata of
// the MCP route at path, for the resource server's 401.
func ResourceMetadataURL(iss, path string) string {
	return iss + resourcePrefix + strings.TrimSuffix(path, "/")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b)
}

// onLoopback reports whether the request reached a loopback address.
func onLoopback(r *http.Request) bool {
	addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
