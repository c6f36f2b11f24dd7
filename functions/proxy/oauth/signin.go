package oauth

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/zitadel/oidc/v3/pkg/client/rp"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"golang.org/x/oauth2"

	"mcpproxy.dev/mcpproxy/shared/postgres"
)

// Sign-in through an OpenID Connect provider the operator configures: the
// consent page sends the user to the provider, its callback matches the
// verified email to users rows and shows the instances the user may allow
// the client to use. The relying party (discovery, code exchange with
// PKCE, ID token verification) is zitadel/oidc's.

// OIDC is the provider users sign in with.
type OIDC struct {
	// Issuer, ClientID and ClientSecret are the provider's and of the
	// proxy's client there, whose redirect URI is <issuer>/oauth/callback.
	Issuer, ClientID, ClientSecret string
	// Name labels the sign-in button ("Google"). Default "OpenID Connect".
	Name string
	// HTTPClient reaches the provider; nil: http.DefaultClient.
	HTTPClient *http.Client
}

// parties are the relying parties, one per issuer of this server (the
// redirect URI is below it), made at the first sign-in: the provider's
// discovery must not hold the proxy's start.
type parties struct {
	mu sync.Mutex
	by map[string]rp.RelyingParty
}

type nonceKey struct{}

func (s *Server) party(ctx context.Context, iss string) (rp.RelyingParty, error) {
	s.parties.mu.Lock()
	defer s.parties.mu.Unlock()
	if p, ok := s.parties.by[iss]; ok {
		return p, nil
	}
	o := s.opts.OIDC
	opts := []rp.Option{rp.WithVerifierOpts(rp.WithNonce(func(ctx context.Context) string {
		n, _ := ctx.Value(nonceKey{}).(string)
		return n
	}))}
	if o.HTTPClient != nil {
		opts = append(opts, rp.WithHTTPClient(o.HTTPClient))
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	p, err := rp.NewRelyingPartyOIDC(ctx, o.Issuer, o.ClientID, o.ClientSecret, iss+callbackPath, []string{oidc.ScopeOpenID, oidc.ScopeEmail}, opts...)
	if err != nil {
		return nil, fmt.Errorf("OpenID provider %s: %w", o.Issuer, err)
	}
	if s.parties.by == nil {
		s.parties.by = map[string]rp.RelyingParty{}
	}
	s.parties.by[iss] = p
	return p, nil
}

const (
	loginPath    = "/oauth/login"
	callbackPath = "/oauth/callback"
	// pendingCookie carries a sign-in in progress across the provider.
	pendingCookie = "mcp_oidc_pending"
	signInTTL     = 10 * time.Minute
)

// pending is a sign-in in progress: the authorization request, and the
// state, nonce and PKCE verifier of the request to the provider.
type pending struct {
	Params   url.Values `json:"p"`
	State    string     `json:"s"`
	Nonce    string     `json:"n"`
	Verifier string     `json:"v"`
	Expires  int64      `json:"e"`
}

// signedIn is a user the provider vouched for, for one client and
// resource, carried by the instance picker's form.
type signedIn struct {
	Email    string `json:"m"`
	ClientID string `json:"c"`
	Resource string `json:"r"`
	Expires  int64  `json:"e"`
}

// login sends the user to the provider.
func (s *Server) login(w http.ResponseWriter, r *http.Request, iss string) {
	if s.opts.OIDC == nil || r.Method != http.MethodPost {
		s.showError(w, http.StatusNotFound, "no sign-in provider here")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil || !s.sameOrigin(r, iss) || !validCSRF(r) {
		s.showError(w, http.StatusForbidden, "the form did not come from this page; open the client's sign-in link again")
		return
	}
	req, page, rerr := s.parseAuthorization(r.Context(), r.PostForm, iss)
	if page != nil || rerr != nil {
		s.answerAuthorization(w, r, iss, req, page, rerr, "")
		return
	}
	p, err := s.party(r.Context(), iss)
	if err != nil {
		s.opts.Logger.Error("oauth: sign-in provider unavailable", "error", err.Error())
		s.showConsent(w, r, iss, req, "The sign-in provider cannot be reached now; try again later.")
		return
	}
	pd := pending{Params: url.Values{}, Expires: s.opts.Now().Add(signInTTL).Unix()}
	for _, k := range authorizationParams {
		if v := r.PostForm.Get(k); v != "" {
			pd.Params.Set(k, v)
		}
	}
	pd.State, _ = newSecret("")
	pd.Nonce, _ = newSecret("")
	pd.Verifier, _ = newSecret("")
	http.SetCookie(w, &http.Cookie{Name: pendingCookie, Value: s.seal(pd), Path: callbackPath, MaxAge: int(signInTTL / time.Second),
		HttpOnly: true, Secure: strings.HasPrefix(iss, "https://"), SameSite: http.SameSiteLaxMode})
	u := rp.AuthURL(pd.State, p, rp.WithCodeChallenge(oidc.NewSHACodeChallenge(pd.Verifier)),
		func() []oauth2.AuthCodeOption {
			return []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("nonce", pd.Nonce)}
		})
	http.Redirect(w, r, u, http.StatusSeeOther)
}

// callback takes the provider's answer and shows the instance picker.
func (s *Server) callback(w http.ResponseWriter, r *http.Request, iss string) {
	if s.opts.OIDC == nil {
		s.showError(w, http.StatusNotFound, "no sign-in provider here")
		return
	}
	var pd pending
	c, err := r.Cookie(pendingCookie)
	if err != nil || s.open(c.Value, &pd) != nil || pd.Expires < s.opts.Now().Unix() {
		s.showError(w, http.StatusBadRequest, "no sign-in in progress, or it took too long; open the client's sign-in link again")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: pendingCookie, Path: callbackPath, MaxAge: -1})
	q := r.URL.Query()
	if q.Get("state") != pd.State {
		s.showError(w, http.StatusBadRequest, "the sign-in answer does not belong to this sign-in; open the client's sign-in link again")
		return
	}
	req, page, rerr := s.parseAuthorization(r.Context(), pd.Params, iss)
	if page != nil || rerr != nil {
		s.answerAuthorization(w, r, iss, req, page, rerr, "")
		return
	}
	if e := q.Get("error"); e != "" {
		s.showConsent(w, r, iss, req, "The sign-in provider refused: "+clip(e, 100)+".")
		return
	}
	email, err := s.verifiedEmail(r.Context(), iss, q.Get("code"), pd)
	if err != nil {
		s.opts.Logger.Warn("oauth: sign-in failed", "error", err.Error())
		s.showConsent(w, r, iss, req, "Sign-in failed: "+err.Error()+".")
		return
	}
	s.showPicker(w, r, iss, req, email, "")
}

// verifiedEmail exchanges the provider's code and returns the user's
// email, which the provider must say is verified.
func (s *Server) verifiedEmail(ctx context.Context, iss, code string, pd pending) (string, error) {
	p, err := s.party(ctx, iss)
	if err != nil {
		return "", err
	}
	ctx = context.WithValue(ctx, nonceKey{}, pd.Nonce)
	tokens, err := rp.CodeExchange[*oidc.IDTokenClaims](ctx, code, p, rp.WithCodeVerifier(pd.Verifier))
	if err != nil {
		return "", fmt.Errorf("code exchange: %w", err)
	}
	email, verified := tokens.IDTokenClaims.Email, bool(tokens.IDTokenClaims.EmailVerified)
	if email == "" {
		info, err := rp.Userinfo[*oidc.UserInfo](ctx, tokens.AccessToken, tokens.TokenType, tokens.IDTokenClaims.Subject, p)
		if err != nil {
			return "", fmt.Errorf("userinfo: %w", err)
		}
		email, verified = info.Email, bool(info.EmailVerified)
	}
	if email == "" || !verified {
		return "", errors.New("the provider gave no verified email")
	}
	return email, nil
}

// instances are those the signed-in user may allow the request's client
// to use: of the user's organizations, the one the resource names if it
// names one.
func (s *Server) instances(ctx context.Context, req *authRequest, email string) ([]postgres.UserInstance, error) {
	all, err := s.db.InstancesForEmail(ctx, email)
	if err != nil {
		return nil, err
	}
	var out []postgres.UserInstance
	for _, in := range all {
		if req.instanceID == "" || in.InstanceID == req.instanceID {
			out = append(out, in)
		}
	}
	return out, nil
}

func (s *Server) showPicker(w http.ResponseWriter, r *http.Request, iss string, req *authRequest, email, formError string) {
	list, err := s.instances(r.Context(), req, email)
	if err != nil {
		s.opts.Logger.Error("oauth: instances for email failed", "error", err.Error())
		s.showConsent(w, r, iss, req, "Your instances cannot be listed now; try again later.")
		return
	}
	if len(list) == 0 {
		s.showConsent(w, r, iss, req, "No instance here may be used by "+email+" (an operator adds users with mcpadmin user add).")
		return
	}
	token := s.seal(signedIn{Email: email, ClientID: req.client.ID, Resource: req.resource, Expires: s.opts.Now().Add(signInTTL).Unix()})
	v := s.consentView(w, iss, req, formError)
	v.Email, v.Hidden = email, append(v.Hidden, hidden{"signin", token})
	for i, in := range list {
		v.Instances = append(v.Instances, instanceChoice{ID: in.InstanceID, Label: in.InstanceName + " (" + in.OrganizationName + ")", Checked: i == 0})
	}
	status := http.StatusOK
	if formError != "" {
		status = http.StatusBadRequest
	}
	s.page(w, status, v)
}

// consentSignedIn makes the grant for the instance a signed-in user
// picked.
func (s *Server) consentSignedIn(w http.ResponseWriter, r *http.Request, iss string, req *authRequest) {
	var si signedIn
	if s.open(r.PostForm.Get("signin"), &si) != nil || si.Expires < s.opts.Now().Unix() ||
		si.ClientID != req.client.ID || si.Resource != req.resource {
		s.showConsent(w, r, iss, req, "The sign-in expired or belongs to another request; sign in again.")
		return
	}
	list, err := s.instances(r.Context(), req, si.Email)
	if err != nil {
		s.opts.Logger.Error("oauth: instances for email failed", "error", err.Error())
		s.showConsent(w, r, iss, req, "Your instances cannot be listed now; try again later.")
		return
	}
	chosen := r.PostForm.Get("instance")
	for _, in := range list {
		if in.InstanceID == chosen {
			s.grant(w, r, iss, req, postgres.NewGrant{InstanceID: in.InstanceID, UserID: in.UserID})
			return
		}
	}
	s.showPicker(w, r, iss, req, si.Email, "Pick one of the instances listed.")
}

// seal signs v (with its expiry inside) for a cookie or a form field.
func (s *Server) seal(v any) string {
	b, _ := json.Marshal(v)
	p := base64.RawURLEncoding.EncodeToString(b)
	m := hmac.New(sha256.New, s.opts.Keys.macKey)
	m.Write([]byte(p))
	return p + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// open checks what seal made and decodes it into v.
func (s *Server) open(sealed string, v any) error {
	p, sig, ok := strings.Cut(sealed, ".")
	if !ok || len(sealed) > 8192 {
		return errors.New("malformed")
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return errors.New("malformed")
	}
	m := hmac.New(sha256.New, s.opts.Keys.macKey)
	m.Write([]byte(p))
	if !hmac.Equal(got, m.Sum(nil)) {
		return errors.New("bad signature")
	}
	b, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return errors.New("malformed")
	}
	return json.Unmarshal(b, v)
}

// macKey derives the key that signs sign-in state from the signing key,
// so that no other secret needs configuring; rotating the signing key
// ends the sign-ins in progress, nothing else.
func macKey(signer ed25519.PrivateKey) []byte {
	h := sha256.Sum256(append([]byte("mcp-proxy oauth sign-in\x00"), signer.Seed()...))
	return h[:]
}
