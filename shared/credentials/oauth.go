package credentials

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"

	"golang.org/x/oauth2"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// oauthClient is what identifies an OAuth client: a change gets a new
// token source (and, upstream.Key, a new session).
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

func (p *Presenter) syncOAuth(up tenant.Upstream) error {
	o := up.Credentials.OAuth
	if o == nil {
		return &Error{up.Name, fmt.Errorf("no OAuth tokens are stored for its config: %w", ErrUnauthorized)}
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

func (p *Presenter) newOAuthSource(up tenant.Upstream, client oauthClient, grant string) *oauthSource {
	o := up.Credentials.OAuth
	s := &oauthSource{client: client, grants: map[string]bool{grant: true}}
	r := &refresher{
		config: &oauth2.Config{ClientID: o.ClientID, ClientSecret: o.ClientSecret,
			Endpoint: oauth2.Endpoint{TokenURL: o.TokenURL}, Scopes: slices.Clone(o.Scopes)},
		// Every request to the config waits for a refresh in progress:
		// it runs within Timeout. A redirect would carry the client
		// secret and the refresh token elsewhere.
		ctx: context.WithValue(context.Background(), oauth2.HTTPClient,
			&http.Client{Transport: p.opts.Transport, Timeout: p.opts.Timeout, CheckRedirect: refuseRedirect(up.Name)}),
		presenter: p, source: s, configID: up.ConfigID, upstream: up.Name, refreshToken: o.RefreshToken,
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
func (p *Presenter) oauthToken(configID, upstream string) (*oauth2.Token, error) {
	p.oauthMu.Lock()
	s := p.oauth[configID]
	p.oauthMu.Unlock()
	if s == nil {
		return nil, &Error{upstream, fmt.Errorf("no OAuth token source for config %s: %w", configID, ErrUnauthorized)}
	}
	return s.ts.Token()
}

// refuseRedirect is the CheckRedirect of the OAuth token endpoint's
// client: the client secret and the refresh token would follow a
// redirect to wherever the token endpoint names.
func refuseRedirect(upstream string) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, _ []*http.Request) error {
		to := "an unknown location"
		if req.URL != nil {
			to = req.URL.Scheme + "://" + req.URL.Host
		}
		return &Error{upstream, fmt.Errorf("refused to follow a redirect to %s: credentials go only to the configured URL; configure the URL it redirects to instead", to)}
	}
}

// refresher gets a new access token with the refresh token and stores
// it. oauth2.ReuseTokenSourceWithExpiry calls it under its lock, one
// refresh at a time, and keeps what it returns until refreshMargin before
// expiry. (oauth2.Config.TokenSource would refresh only 10 s before, and
// store nothing.)
type refresher struct {
	config       *oauth2.Config
	ctx          context.Context // carries the token endpoint's HTTP client
	presenter    *Presenter
	source       *oauthSource
	configID     string
	upstream     string
	refreshToken string
}

func (r *refresher) Token() (*oauth2.Token, error) {
	if r.refreshToken == "" {
		return nil, &Error{r.upstream, fmt.Errorf("the OAuth access token has expired and no refresh token is stored: %w", ErrUnauthorized)}
	}
	// A source without an access token refreshes at once: oauth2 has no
	// exported refresh call of its own.
	tok, err := r.config.TokenSource(r.ctx, &oauth2.Token{RefreshToken: r.refreshToken}).Token()
	if err != nil {
		return nil, &Error{r.upstream, refreshFailure(err)}
	}
	if tok.RefreshToken == "" {
		tok.RefreshToken = r.refreshToken
	}
	r.refreshToken = tok.RefreshToken
	r.source.remember("refresh:" + tok.RefreshToken)
	r.presenter.saveToken(r.configID, r.upstream, tok)
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
// the request: the new token is good, only a new process would not know
// it.
func (p *Presenter) saveToken(configID, upstream string, tok *oauth2.Token) {
	if p.opts.SaveToken == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), saveTimeout)
	defer cancel()
	stored := tenant.OAuthToken{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: tok.TokenType, Expiry: tok.Expiry}
	if err := p.opts.SaveToken(ctx, configID, stored); err != nil {
		p.opts.Logger.Warn("refreshed OAuth token not stored; this process goes on with it", "upstream", upstream,
			"config", configID, "error", err.Error())
	}
}
