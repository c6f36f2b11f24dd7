package oauth

import (
	"context"
	"crypto/subtle"
	_ "embed"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// The consent page: GET /oauth/authorize shows it, POST /oauth/authorize
// takes its answer. It is plain HTML and a form, with no script.

//go:embed consent.html
var consentHTML string

var consentPage = template.Must(template.New("consent").Parse(consentHTML))

// authRequest is an authorization request that names a known client and
// one of its redirect URIs: its errors can go back to the client.
type authRequest struct {
	client      *client
	redirectURI string
	state       string
	challenge   string
	resource    string
	instanceID  string // "" when the resource is /mcp
	scope       string
}

// authorizationParams are the parameters the consent form carries from
// the GET to the POST.
var authorizationParams = []string{"response_type", "client_id", "redirect_uri", "state", "code_challenge", "code_challenge_method", "resource", "scope"}

// errPage is an error shown on the page, not sent to a redirect URI the
// server cannot trust (RFC 6749 section 4.1.2.1).
type errPage struct{ message string }

// redirectError is an error sent back to the client's redirect URI.
type redirectError struct{ code, description string }

func (s *Server) parseAuthorization(ctx context.Context, q url.Values, iss string) (*authRequest, *errPage, *redirectError) {
	for _, p := range authorizationParams {
		if len(q[p]) > 1 {
			return nil, &errPage{"the parameter " + p + " appears more than once"}, nil
		}
	}
	id := q.Get("client_id")
	if id == "" {
		return nil, &errPage{"the request names no client (client_id)"}, nil
	}
	c, err := s.client(ctx, id)
	var docErr *documentError
	switch {
	case errors.As(err, &docErr):
		return nil, &errPage{"the client's metadata document cannot be used: " + docErr.reason}, nil
	case errors.Is(err, errUnknownClient):
		return nil, &errPage{"unknown client " + clip(id, 200)}, nil
	case errors.Is(err, errFetchRate):
		return nil, &errPage{"the client cannot be checked now; retry in a few seconds"}, nil
	case err != nil:
		s.opts.Logger.Error("oauth: client lookup failed", "error", err.Error())
		return nil, &errPage{"the client cannot be checked now; retry later"}, nil
	}
	req := &authRequest{client: c, redirectURI: q.Get("redirect_uri"), state: q.Get("state"), scope: Scope}
	if req.redirectURI == "" && len(c.RedirectURIs) == 1 {
		req.redirectURI = c.RedirectURIs[0]
	}
	if !c.matchRedirect(req.redirectURI) {
		return nil, &errPage{"the redirect URI is not one the client registered"}, nil
	}
	if q.Get("response_type") != "code" {
		return req, nil, &redirectError{"unsupported_response_type", "response_type must be code"}
	}
	req.challenge = q.Get("code_challenge")
	if q.Get("code_challenge_method") != "S256" || len(req.challenge) != 43 {
		return req, nil, &redirectError{"invalid_request", "PKCE with code_challenge_method S256 is required"}
	}
	req.resource = strings.TrimSuffix(q.Get("resource"), "/")
	if req.resource == "" {
		req.resource = iss + "/mcp"
	}
	path, ok := strings.CutPrefix(req.resource, iss)
	if ok {
		req.instanceID, ok = s.opts.ValidResource(path)
	}
	if !ok || !strings.HasPrefix(path, "/") {
		return req, nil, &redirectError{"invalid_target", "resource must be an MCP endpoint of " + iss}
	}
	return req, nil, nil
}

// authorize serves the consent page and takes its answer.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, iss string) {
	switch r.Method {
	case http.MethodGet:
		req, page, rerr := s.parseAuthorization(r.Context(), r.URL.Query(), iss)
		s.answerAuthorization(w, r, iss, req, page, rerr, "")
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			s.showError(w, http.StatusBadRequest, "the form could not be read")
			return
		}
		if !s.sameOrigin(r, iss) || !validCSRF(r) {
			s.showError(w, http.StatusForbidden, "the form did not come from this page; open the client's sign-in link again")
			return
		}
		req, page, rerr := s.parseAuthorization(r.Context(), r.PostForm, iss)
		if page != nil || rerr != nil {
			s.answerAuthorization(w, r, iss, req, page, rerr, "")
			return
		}
		switch {
		case r.PostForm.Get("decision") != "allow":
			s.redirect(w, r, iss, req, url.Values{"error": {"access_denied"}, "error_description": {"the user denied the request"}})
		case r.PostForm.Get("signin") != "" && s.opts.OIDC != nil:
			s.consentSignedIn(w, r, iss, req)
		default:
			s.consent(w, r, iss, req)
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		s.showError(w, http.StatusMethodNotAllowed, "GET or POST only")
	}
}

// answerAuthorization shows the page, its error, or sends the error to
// the client.
func (s *Server) answerAuthorization(w http.ResponseWriter, r *http.Request, iss string, req *authRequest, page *errPage, rerr *redirectError, formError string) {
	switch {
	case page != nil:
		s.showError(w, http.StatusBadRequest, page.message)
	case rerr != nil:
		s.redirect(w, r, iss, req, url.Values{"error": {rerr.code}, "error_description": {rerr.description}})
	default:
		s.showConsent(w, r, iss, req, formError)
	}
}

// consent checks the pasted API key and, when it opens the requested
// instance, makes the grant and its code.
func (s *Server) consent(w http.ResponseWriter, r *http.Request, iss string, req *authRequest) {
	ctx := r.Context()
	secret := strings.TrimSpace(r.PostForm.Get("api_key"))
	if !tenant.WellFormedKey(secret) {
		s.showConsent(w, r, iss, req, "That is not an API key of this proxy.")
		return
	}
	if !s.keyChecks.Allow() {
		s.showConsent(w, r, iss, req, "Too many sign-ins right now; try again in a second.")
		return
	}
	key, err := s.db.LookupAPIKey(ctx, tenant.HashKey(secret))
	switch {
	case errors.Is(err, tenant.ErrNotFound):
		s.showConsent(w, r, iss, req, "Unknown API key.")
		return
	case err != nil:
		s.opts.Logger.Error("oauth: api key lookup failed", "error", err.Error())
		s.showConsent(w, r, iss, req, "The key cannot be checked now; try again later.")
		return
	}
	if err := key.Check(s.opts.Now()); err != nil {
		s.showConsent(w, r, iss, req, "This API key cannot be used: "+err.Error()+".")
		return
	}
	if req.instanceID != "" && req.instanceID != key.InstanceID {
		s.showConsent(w, r, iss, req, "This API key belongs to another instance than "+req.resource+".")
		return
	}
	s.grant(w, r, iss, req, postgres.NewGrant{InstanceID: key.InstanceID, UserID: key.UserID, APIKeyID: key.ID})
}

// grant stores the grant of a request (g names its instance, user and
// key) with its code, and sends the code to the client.
func (s *Server) grant(w http.ResponseWriter, r *http.Request, iss string, req *authRequest, g postgres.NewGrant) {
	code, hash := newSecret("")
	g.ClientID, g.ClientName, g.Resource, g.Scope = req.client.ID, req.client.Name, req.resource, req.scope
	_, err := s.db.CreateOAuthCode(r.Context(), g, hash, req.redirectURI, req.challenge, s.opts.Now().Add(s.opts.CodeTTL))
	if err != nil {
		s.opts.Logger.Error("oauth: create code failed", "error", err.Error())
		s.showConsent(w, r, iss, req, "The grant cannot be stored now; try again later.")
		return
	}
	s.redirect(w, r, iss, req, url.Values{"code": {code}})
}

// redirect sends the user agent back to the client with params, its state
// and the issuer (RFC 9207).
func (s *Server) redirect(w http.ResponseWriter, r *http.Request, iss string, req *authRequest, params url.Values) {
	u, _ := url.Parse(req.redirectURI) // parsed when it was matched
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	if req.state != "" {
		q.Set("state", req.state)
	}
	q.Set("iss", iss)
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

type hidden struct{ Name, Value string }

type consentView struct {
	ClientName, ClientHost, RedirectHost, Resource, Action, Error string
	Hidden                                                        []hidden
	// Provider names the OpenID Connect provider to sign in with, "" for
	// none; LoginAction is where its button posts.
	Provider, LoginAction string
	// Email and Instances are the signed-in user and the instances to
	// pick from (the picker), empty on the API key form.
	Email     string
	Instances []instanceChoice
}

type instanceChoice struct {
	ID, Label string
	Checked   bool
}

// csrfCookie holds the random value the consent form must repeat
// (double submit): a page of another site can neither read it nor set it.
const csrfCookie = "mcp_consent_csrf"

func (s *Server) showConsent(w http.ResponseWriter, r *http.Request, iss string, req *authRequest, formError string) {
	v := s.consentView(w, iss, req, formError)
	status := http.StatusOK
	if formError != "" {
		status = http.StatusBadRequest
	}
	s.page(w, status, v)
}

// consentView is the page's view of a request, with a new CSRF token in
// its form and cookie.
func (s *Server) consentView(w http.ResponseWriter, iss string, req *authRequest, formError string) consentView {
	token, _ := newSecret("")
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: token, Path: "/oauth/", MaxAge: 1800,
		HttpOnly: true, Secure: strings.HasPrefix(iss, "https://"), SameSite: http.SameSiteStrictMode})
	v := consentView{ClientName: req.client.Name, Resource: req.resource, Action: iss + authorizePath, Error: formError}
	if v.ClientName == "" {
		v.ClientName = "An MCP client"
	}
	if u, err := url.Parse(req.client.ID); err == nil && u.Scheme == "https" {
		v.ClientHost = u.Host
	}
	if u, err := url.Parse(req.redirectURI); err == nil {
		v.RedirectHost = u.Scheme + "://" + u.Host
	}
	q := url.Values{"response_type": {"code"}, "client_id": {req.client.ID}, "redirect_uri": {req.redirectURI},
		"state": {req.state}, "code_challenge": {req.challenge}, "code_challenge_method": {"S256"}, "resource": {req.resource}, "scope": {req.scope}}
	for _, p := range authorizationParams {
		v.Hidden = append(v.Hidden, hidden{p, q.Get(p)})
	}
	v.Hidden = append(v.Hidden, hidden{"csrf", token})
	if s.opts.OIDC != nil {
		v.Provider, v.LoginAction = s.opts.OIDC.Name, iss+loginPath
		if v.Provider == "" {
			v.Provider = "OpenID Connect"
		}
	}
	return v
}

func (s *Server) showError(w http.ResponseWriter, status int, message string) {
	s.page(w, status, consentView{ClientName: "a client", Error: message})
}

// page writes the consent page, or with no form (no Action) its error.
func (s *Server) page(w http.ResponseWriter, status int, v consentView) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	// same-origin, not no-referrer: with no-referrer the browser sends
	// the form's post with Origin: null, which sameOrigin refuses.
	h.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(status)
	if v.Action == "" {
		errorPage.Execute(w, v)
		return
	}
	consentPage.Execute(w, v)
}

var errorPage = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Authorization error</title></head>
<body><main><h1>Authorization error</h1><p role="alert">{{.Error}}</p></main></body></html>
`))

// validCSRF reports whether the form repeats the page's cookie.
func validCSRF(r *http.Request) bool {
	c, err := r.Cookie(csrfCookie)
	form := r.PostForm.Get("csrf")
	return err == nil && c.Value != "" && subtle.ConstantTimeCompare([]byte(c.Value), []byte(form)) == 1
}

// sameOrigin reports whether a form post came from the issuer's origin,
// when the browser says where it came from.
func (s *Server) sameOrigin(r *http.Request, iss string) bool {
	o := r.Header.Get("Origin")
	return o == "" || o == iss || strings.HasPrefix(iss, o+"/")
}
