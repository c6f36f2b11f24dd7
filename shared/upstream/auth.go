package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/idtoken"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// ErrUnauthorized is wrapped by the error of a request an upstream
// answered 401, and of one the proxy could not authorise at all (no OAuth
// tokens stored, a refresh the token endpoint refused): only an operator
// storing new credentials can fix it, so it is neither retried nor a
// reason to reconnect.
var ErrUnauthorized = errors.New("the upstream needs re-authorisation")

// refreshMargin is how long before it expires a token is renewed, so that
// a token never expires between being read and reaching the upstream,
// clocks a little apart included.
const refreshMargin = 60 * time.Second

// saveTimeout bounds storing a refreshed token.
const saveTimeout = 5 * time.Second

// credentialError is a failure to present credentials to an upstream. The
// session is not at fault, so Do neither drops it nor tries again.
type credentialError struct {
	upstream string
	err      error
}

func (e *credentialError) Error() string { return "upstream " + e.upstream + ": " + e.err.Error() }
func (e *credentialError) Unwrap() error { return e.err }

// authTransport presents an upstream config's credentials on every HTTP
// request to the upstream, the SDK's and the pool's own: the config's
// headers and, for OAUTH and CLOUD_RUN_IAM, a bearer token. It sends
// nothing to another origin than the upstream's (origin.go). It turns a
// 401 into ErrUnauthorized before the SDK sees it: the SDK would take a
// 401 for a broken connection and fail the session.
type authTransport struct {
	base     http.RoundTripper
	upstream string
	target   *target
	// refuse, when set, is why no request may go to the upstream.
	refuse  error
	headers map[string]string
	// token returns the bearer token to send; nil sends none of its own.
	token func() (*oauth2.Token, error)
	// refused is the first request refused for where it was going
	// (another origin, a redirect), so that a failed connect reports it:
	// the SDK may report the connection it closed after the failed write
	// instead of the write's error.
	refused atomic.Pointer[credentialError]
	// maxMessage bounds one message of what the SDK reads (limitMessages).
	maxMessage int64
}

func newAuthTransport(base http.RoundTripper, up tenant.Upstream, t *target) *authTransport {
	return &authTransport{base: base, upstream: up.Name, target: t, refuse: t.refusal(up), headers: up.Credentials.Headers,
		maxMessage: DefaultMaxMessageBytes}
}

func (t *authTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context()) // a RoundTripper must not change the caller's request
	for k, v := range t.headers {
		r.Header.Set(k, v)
	}
	resp, err := t.send(r)
	if err == nil {
		// The SDK's requests: it reads answers without a bound of its
		// own. (The pool's own tools/call meters its reading itself.)
		limitMessages(resp, t.maxMessage)
	}
	return resp, err
}

// send adds the bearer token to r, which the caller owns, and sends it,
// if r goes to the upstream's origin.
func (t *authTransport) send(r *http.Request) (*http.Response, error) {
	var err error
	switch {
	case t.refuse != nil:
		err = &credentialError{t.upstream, t.refuse}
	case !t.target.allows(r.URL):
		err = t.record(foreignOrigin(t.upstream, r.URL, t.target))
	}
	if err == nil && t.token != nil {
		var tok *oauth2.Token
		if tok, err = t.token(); err == nil {
			tok.SetAuthHeader(r)
		}
	}
	if err != nil {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, err
	}
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
		resp.Body.Close()
		return nil, &credentialError{t.upstream, fmt.Errorf("answered HTTP 401: %w", ErrUnauthorized)}
	}
	return resp, nil
}

// auth is the transport that presents up's credentials over base.
func (p *Pool) auth(up tenant.Upstream) *authTransport {
	name := up.Name
	t := newAuthTransport(p.base(), up, p.target(up.URL))
	t.maxMessage = p.opts.MaxMessageBytes
	switch up.AuthType {
	case tenant.AuthOAuth:
		configID := up.ConfigID
		// Looked up on every request: a session outlives the token
		// source it started with when an operator stores new tokens.
		t.token = func() (*oauth2.Token, error) { return p.oauthToken(configID, name) }
	case tenant.AuthCloudRunIAM:
		audience := t.target.audience
		t.token = func() (*oauth2.Token, error) { return p.idToken(name, audience) }
	}
	return t
}

func (p *Pool) base() http.RoundTripper {
	if p.http.Transport != nil {
		return p.http.Transport
	}
	return http.DefaultTransport
}

// idToken returns a Google ID token for audience, from one source per
// audience that keeps it until shortly before it expires.
func (p *Pool) idToken(upstream, audience string) (*oauth2.Token, error) {
	p.idMu.Lock()
	ts := p.idSources[audience]
	if ts == nil {
		// The source outlives this request: it gets a context of its own.
		src, err := p.opts.IDTokenSource(context.Background(), audience)
		if err != nil {
			p.idMu.Unlock()
			return nil, &credentialError{upstream, fmt.Errorf("make a Google ID token source for %s: %w", audience, err)}
		}
		ts = oauth2.ReuseTokenSourceWithExpiry(nil, src, refreshMargin)
		p.idSources[audience] = ts
	}
	p.idMu.Unlock()
	tok, err := ts.Token()
	if err != nil {
		return nil, &credentialError{upstream, fmt.Errorf("get a Google ID token for %s: %w", audience, err)}
	}
	return tok, nil
}

func defaultIDTokenSource(ctx context.Context, audience string) (oauth2.TokenSource, error) {
	return idtoken.NewTokenSource(ctx, audience)
}

// oauthClient is what identifies an OAuth client: a change gets a new
// token source and a new session.
type oauthClient struct {
	tokenURL, clientID, clientSecret string
	scopes                           []string
}

func clientOf(o *tenant.OAuthCredentials) oauthClient {
	return oauthClient{o.TokenURL, o.ClientID, o.ClientSecret, o.Scopes}
}

func (c oauthClient) equal(d oauthClient) bool {
	return c.tokenURL == d.tokenURL && c.clientID == d.clientID && c.clientSecret == d.clientSecret && slices.Equal(c.scopes, d.scopes)
}

// grantOf names the tokens an operator stored: the refresh token, or the
// access token when there is no refresh token.
func grantOf(o *tenant.OAuthCredentials) string {
	if o.RefreshToken != "" {
		return "refresh:" + o.RefreshToken
	}
	return "access:" + o.AccessToken
}

// oauthSource is the token source of one OAUTH config, shared by every
// request of the process, so that one refresh runs at a time.
type oauthSource struct {
	client oauthClient
	ts     oauth2.TokenSource

	mu sync.Mutex
	// grants are the refresh tokens the source started from or got by
	// refreshing. A config whose stored grant is one of them is served by
	// this source: the instance cache may still hold a token the source
	// has already replaced.
	grants map[string]bool
}

func (s *oauthSource) knows(grant string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grants[grant]
}

func (s *oauthSource) remember(grant string) {
	s.mu.Lock()
	s.grants[grant] = true
	s.mu.Unlock()
}

// syncOAuth makes sure the token source of an OAUTH config matches its
// stored client and tokens. It is replaced only when the client settings
// change or an operator stored tokens the source does not know, never
// because the source refreshed them itself.
func (p *Pool) syncOAuth(up tenant.Upstream) error {
	if up.AuthType != tenant.AuthOAuth {
		return nil
	}
	o := up.Credentials.OAuth
	if o == nil {
		return &credentialError{up.Name, fmt.Errorf("no OAuth tokens are stored for its config: %w", ErrUnauthorized)}
	}
	client, grant := clientOf(o), grantOf(o)
	p.oauthMu.Lock()
	defer p.oauthMu.Unlock()
	if s := p.oauth[up.ConfigID]; s != nil && s.client.equal(client) && s.knows(grant) {
		return nil
	}
	p.oauth[up.ConfigID] = p.newOAuthSource(up, client, grant)
	return nil
}

func (p *Pool) newOAuthSource(up tenant.Upstream, client oauthClient, grant string) *oauthSource {
	o := up.Credentials.OAuth
	s := &oauthSource{client: client, grants: map[string]bool{grant: true}}
	r := &refresher{
		config: &oauth2.Config{ClientID: o.ClientID, ClientSecret: o.ClientSecret,
			Endpoint: oauth2.Endpoint{TokenURL: o.TokenURL}, Scopes: slices.Clone(o.Scopes)},
		// The token endpoint is reached with the pool's transport, within
		// ConnectTimeout: every call waits for a refresh in progress. A
		// redirect would carry the client secret and the refresh token
		// elsewhere.
		ctx: context.WithValue(context.Background(), oauth2.HTTPClient,
			&http.Client{Transport: p.base(), Timeout: p.opts.ConnectTimeout, CheckRedirect: refuseRedirect(up.Name)}),
		pool: p, source: s, configID: up.ConfigID, upstream: up.Name, refreshToken: o.RefreshToken,
	}
	var initial *oauth2.Token
	if o.AccessToken != "" {
		initial = &oauth2.Token{AccessToken: o.AccessToken, TokenType: o.TokenType, RefreshToken: o.RefreshToken, Expiry: o.Expiry}
	}
	s.ts = oauth2.ReuseTokenSourceWithExpiry(initial, r, refreshMargin)
	return s
}

// oauthToken returns the current access token of an OAUTH config,
// refreshing it first when it expires within refreshMargin.
func (p *Pool) oauthToken(configID, upstream string) (*oauth2.Token, error) {
	p.oauthMu.Lock()
	s := p.oauth[configID]
	p.oauthMu.Unlock()
	if s == nil {
		return nil, &credentialError{upstream, fmt.Errorf("no OAuth token source for config %s: %w", configID, ErrUnauthorized)}
	}
	return s.ts.Token()
}

// refresher gets a new access token with the refresh token and stores
// it. oauth2.ReuseTokenSourceWithExpiry calls it under its lock, one
// refresh at a time, and keeps what it returns until refreshMargin before
// expiry. (oauth2.Config.TokenSource would refresh only 10 s before, and
// store nothing.)
type refresher struct {
	config       *oauth2.Config
	ctx          context.Context // carries the token endpoint's HTTP client
	pool         *Pool
	source       *oauthSource
	configID     string
	upstream     string
	refreshToken string
}

func (r *refresher) Token() (*oauth2.Token, error) {
	if r.refreshToken == "" {
		return nil, &credentialError{r.upstream, fmt.Errorf("the OAuth access token has expired and no refresh token is stored: %w", ErrUnauthorized)}
	}
	// A source without an access token refreshes at once: oauth2 has no
	// exported refresh call of its own.
	tok, err := r.config.TokenSource(r.ctx, &oauth2.Token{RefreshToken: r.refreshToken}).Token()
	if err != nil {
		return nil, &credentialError{r.upstream, refreshFailure(err)}
	}
	if tok.RefreshToken == "" {
		tok.RefreshToken = r.refreshToken
	}
	r.refreshToken = tok.RefreshToken
	r.source.remember("refresh:" + tok.RefreshToken)
	r.pool.saveToken(r.configID, r.upstream, tok)
	return tok, nil
}

// refreshFailure words a failed refresh without the token endpoint's
// answer, which is not ours to log. A 400 or 401 (invalid_grant,
// invalid_client) means the refresh token or the client was refused:
// only an operator can fix that.
func refreshFailure(err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return fmt.Errorf("refresh the OAuth token: %w", err)
	}
	status := 0
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	if status == http.StatusBadRequest || status == http.StatusUnauthorized {
		return fmt.Errorf("the token endpoint refused the refresh (HTTP %d, %q): %w", status, re.ErrorCode, ErrUnauthorized)
	}
	return fmt.Errorf("refresh the OAuth token: the token endpoint answered HTTP %d", status)
}

// saveToken hands refreshed tokens to SaveToken. A failure does not fail
// the call: the new token is good, only a new process would not know it.
func (p *Pool) saveToken(configID, upstream string, tok *oauth2.Token) {
	if p.opts.SaveToken == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), saveTimeout)
	defer cancel()
	stored := tenant.OAuthToken{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: tok.TokenType, Expiry: tok.Expiry}
	if err := p.opts.SaveToken(ctx, configID, stored); err != nil {
		p.log.Warn("refreshed OAuth token not stored; this process goes on with it", "upstream", upstream,
			"config", configID, "error", err.Error())
	}
}
