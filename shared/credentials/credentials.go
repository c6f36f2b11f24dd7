// Package credentials presents the credentials of an upstream config on
// the HTTP requests to it: the config's headers and, for OAUTH and
// CLOUD_RUN_IAM, a bearer token (the stored OAuth tokens, refreshed
// before they expire; a Google ID token for the upstream's origin).
// Where a request may go is not its concern: upstream.Pool sends one only
// to its upstream's origin, and turns the upstream's 401 into
// ErrUnauthorized.
package credentials

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// ErrUnauthorized is wrapped by the error of a request an upstream
// answered 401, and of one the proxy could not authorise at all (no OAuth
// tokens stored, a refresh the token endpoint refused): only an operator
// storing new credentials can fix it, so it is neither retried nor a
// reason to reconnect.
var ErrUnauthorized = errors.New("the upstream needs re-authorisation")

// Error is a failure to present credentials to an upstream, or a request
// refused so that they go nowhere else. The session is not at fault:
// upstream.Pool neither drops it nor tries again.
type Error struct {
	Upstream string // the upstream's name
	Err      error
}

func (e *Error) Error() string { return "upstream " + e.Upstream + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// DefaultTimeout bounds a token refresh where Options does not say.
const DefaultTimeout = 10 * time.Second

// refreshMargin is how long before it expires a token is renewed, so that
// a token never expires between being read and reaching the upstream,
// clocks a little apart included.
const refreshMargin = 60 * time.Second

// saveTimeout bounds storing a refreshed token.
const saveTimeout = 5 * time.Second

// Options configure a Presenter. Zero values take the defaults named.
type Options struct {
	// Transport reaches the OAuth token endpoints. Default
	// http.DefaultTransport.
	Transport http.RoundTripper
	// Timeout bounds an OAuth token refresh; every call to the config
	// waits for a refresh in progress. Default DefaultTimeout.
	Timeout time.Duration
	// IDTokenSource makes the source of Google ID tokens for an
	// audience, for CLOUD_RUN_IAM upstreams; ctx is the source's for all
	// its fetches. The Presenter makes one per audience and keeps each
	// token until shortly before it expires. nil means
	// idtoken.NewTokenSource with the application default credentials
	// (on Cloud Run, the function's service account).
	IDTokenSource func(ctx context.Context, audience string) (oauth2.TokenSource, error)
	// SaveToken stores the tokens of an OAUTH config the Presenter has
	// just refreshed, so that a new process starts from them and a
	// rotated refresh token is not lost. It runs within 5 s, before the
	// request that needed the token goes on. A failure is logged; the
	// request goes on with the new token. nil stores nothing.
	SaveToken func(ctx context.Context, configID string, t tenant.OAuthToken) error
	// Logger receives a refreshed token that could not be stored. nil
	// discards.
	Logger *slog.Logger
}

// Presenter presents the credentials of every upstream config of the
// process. It keeps one OAuth token source per config and one ID token
// source per audience, shared by every request, so that one refresh runs
// at a time. It is safe for concurrent use.
type Presenter struct {
	opts Options

	oauthMu sync.Mutex
	oauth   map[string]*oauthSource // by config ID

	idMu      sync.Mutex
	idSources map[string]oauth2.TokenSource // by audience
	audiences sync.Map                      // URL string → audience string
}

// New makes a Presenter.
func New(opts Options) *Presenter {
	if opts.Transport == nil {
		opts.Transport = http.DefaultTransport
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.IDTokenSource == nil {
		opts.IDTokenSource = defaultIDTokenSource
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Presenter{opts: opts, oauth: map[string]*oauthSource{}, idSources: map[string]oauth2.TokenSource{}}
}

// Sync makes the token source of an OAUTH config match its stored client
// and tokens, as up holds them; the caller calls it before each call to
// up. The source is replaced only when the client settings change or an
// operator stored tokens it does not know, never because it refreshed
// them itself. An OAUTH config without stored tokens is ErrUnauthorized.
func (p *Presenter) Sync(up tenant.Upstream) error {
	if up.AuthType != tenant.AuthOAuth {
		return nil
	}
	return p.syncOAuth(up)
}

// Authorize adds up's credentials to r, which the caller owns: the
// config's headers, then the bearer token of an OAUTH or CLOUD_RUN_IAM
// config. The OAuth token is that of the source the last Sync of up's
// config left: a session outlives the tokens it started with when an
// operator stores new ones.
func (p *Presenter) Authorize(up tenant.Upstream, r *http.Request) error {
	setHeaders(up, r)
	var (
		tok *oauth2.Token
		err error
	)
	switch up.AuthType {
	case tenant.AuthOAuth:
		tok, err = p.oauthToken(up.ConfigID, up.Name)
	case tenant.AuthCloudRunIAM:
		tok, err = p.idToken(up.Name, p.audience(up.URL))
	default:
		return nil
	}
	if err != nil {
		return err
	}
	tok.SetAuthHeader(r)
	return nil
}

// HeadersOnly presents a config's headers and nothing else: no OAuth or
// ID token (upstream.Connect, which discovers a server's tools before
// anything is stored).
type HeadersOnly struct{}

// Sync has nothing to do.
func (HeadersOnly) Sync(tenant.Upstream) error { return nil }

// Authorize adds the config's headers to r.
func (HeadersOnly) Authorize(up tenant.Upstream, r *http.Request) error {
	setHeaders(up, r)
	return nil
}

func setHeaders(up tenant.Upstream, r *http.Request) {
	for k, v := range up.Credentials.Headers {
		r.Header.Set(k, v)
	}
}

// audience is the ID token audience Cloud Run expects for rawURL, its
// scheme://host, parsed once per URL. A URL that does not parse is
// refused by the pool before any token is asked for.
func (p *Presenter) audience(rawURL string) string {
	if a, ok := p.audiences.Load(rawURL); ok {
		return a.(string)
	}
	a := ""
	if u, err := url.Parse(rawURL); err == nil {
		a = u.Scheme + "://" + u.Host
	}
	p.audiences.Store(rawURL, a)
	return a
}
