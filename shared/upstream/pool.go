package upstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/sync/singleflight"

	"mcpproxy.dev/mcpproxy/shared/credentials"
	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/wire"
)

// PoolOptions configure a Pool. Zero values take the defaults named.
type PoolOptions struct {
	// MaxIdleConnsPerHost sizes the HTTP keep-alive pool per upstream
	// host to the proxy's concurrency. Go's default of 2 makes most
	// concurrent calls open a new connection. Default 100.
	MaxIdleConnsPerHost int
	// ConnectTimeout bounds dialing and the initialize handshake, and
	// an OAuth token refresh of the default Credentials. Default 10 s.
	ConnectTimeout time.Duration
	// IdleTimeout closes a session nobody used for this long (a stdio
	// upstream's process is stopped). Default 10 min.
	IdleTimeout time.Duration
	// MaxMessageBytes bounds one message an upstream sends: an answer,
	// or one event of a stream. A larger one fails its call with an
	// error that wraps a *budget.TooLargeError. Default 16 MiB.
	MaxMessageBytes int64
	// ProtocolVersion is the version the pool asks for when it opens a
	// session with an upstream (initialize, or server/discover from
	// 2026-07-28); the upstream may answer with an older one. Default
	// DefaultProtocolVersion.
	ProtocolVersion string
	// HTTPClient, when set, replaces the pool's HTTP client (tests).
	HTTPClient *http.Client
	// Credentials present each upstream config's credentials on the
	// requests to it. nil means a *credentials.Presenter that reaches
	// the OAuth token endpoints with the pool's transport within
	// ConnectTimeout, stores no refreshed token, and gets Google ID
	// tokens with the application default credentials.
	Credentials Credentials
	// Logger receives what the pool cannot report through a call: the
	// stderr lines of stdio upstreams, an upstream found to speak only
	// SSE. nil discards.
	Logger *slog.Logger

	// StdioUID and StdioGID are the user and group stdio upstreams run
	// as when the proxy runs as root. Default DefaultStdioID (nobody).
	StdioUID, StdioGID int
	// SecretFiles are the files the proxy read its secrets from. When
	// the proxy runs as root, no stdio upstream starts while one of them
	// is readable by StdioUID; otherwise stdio upstreams run as the
	// proxy's user, can read them, and the pool logs so once.
	SecretFiles []string
}

// Pool keeps one client session per upstream config and credentials,
// shared by every concurrent request of the process. A session that fails
// is dropped and the next request opens a new one, so an upstream that
// restarts is reached again without restarting the proxy.
type Pool struct {
	// How upstreams are reached: set by NewPool, never changed.
	opts   PoolOptions
	http   *http.Client
	creds  Credentials
	client *mcp.Client // one for every session; its progress handler is onProgress
	iso    *isolation  // of the stdio upstreams
	log    *slog.Logger

	// Sessions: the open ones by Key, under mu; connect attempts, one per
	// key at a time; the idle sweep, by requests and the janitor.
	mu        sync.Mutex
	sessions  map[string]*pooled
	lastSweep time.Time
	closed    bool
	stop      chan struct{} // closed by Close: ends the janitor
	flight    singleflight.Group

	// What the pool learned of upstream URLs, for the life of the
	// process.
	targets sync.Map // url string → *target (origin.go)
	sseURLs sync.Map // url string → true: registered as Streamable HTTP, speaks only HTTP+SSE (fallback.go)

	// Calls (call.go, direct.go): the IDs of the tools/calls the pool
	// posts itself, and the routes of every session's progress
	// notifications to the call that asked for them, by a token unique
	// to the process.
	callSeq  atomic.Uint64
	progress sync.Map // token string → progressWatch
	// inflight are the calls through the SDK client on each session,
	// to which the session's requests to the client go (ask.go).
	inflightMu sync.Mutex
	inflight   map[*mcp.ClientSession]map[*sdkCall]bool
	// h1 sends the pool's own requests to plain-HTTP upstreams (h1.go);
	// nil with PoolOptions.HTTPClient, whose transport then sends them.
	h1 *h1Client
}

type pooled struct {
	session  *mcp.ClientSession
	proc     *stdioProcess // of a stdio upstream, else nil
	lastUsed atomic.Int64  // UnixNano
}

// NewPool makes a pool.
func NewPool(opts PoolOptions) *Pool {
	if opts.MaxIdleConnsPerHost <= 0 {
		opts.MaxIdleConnsPerHost = 100
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = ConnectTimeout
	}
	if opts.ProtocolVersion == "" {
		opts.ProtocolVersion = DefaultProtocolVersion
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 10 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	httpClient := opts.HTTPClient
	var h1 *h1Client
	if httpClient == nil {
		dialer := &net.Dialer{Timeout: opts.ConnectTimeout, KeepAlive: 30 * time.Second}
		h1 = newH1Client(dialer.DialContext, opts.MaxIdleConnsPerHost)
		httpClient = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          10 * opts.MaxIdleConnsPerHost,
			MaxIdleConnsPerHost:   opts.MaxIdleConnsPerHost,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   opts.ConnectTimeout,
			ExpectContinueTimeout: time.Second,
			// No Accept-Encoding: an upstream's answer is read as sent,
			// never inflated (a small gzip body may inflate to the whole
			// message limit, in the proxy's CPU), and the transport adds
			// no header of its own to each request.
			DisableCompression: true,
		}}
	}
	p := &Pool{opts: opts, http: httpClient, creds: opts.Credentials, log: opts.Logger, iso: newIsolation(opts, opts.Logger),
		sessions: map[string]*pooled{}, stop: make(chan struct{}), h1: h1}
	if p.creds == nil {
		p.creds = credentials.New(credentials.Options{Transport: p.base(), Timeout: opts.ConnectTimeout})
	}
	go p.janitor()
	p.client = mcp.NewClient(&mcp.Implementation{Name: ClientName, Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: p.onProgress,
		// An upstream's input-required result goes to the proxy's
		// client, who answers it (2026-07-28): the pool has no input
		// to give of its own.
		MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: true},
		Capabilities:   clientCapabilities(),
	})
	p.client.AddReceivingMiddleware(p.asks)
	return p
}

// Key identifies an upstream config with its exact target and
// credentials: a changed credential gets a new session. OAuth tokens are
// left out: the pool refreshes them itself, and a session would otherwise
// be reopened after every refresh; the OAuth client settings are in. It
// is a hash, so it can be logged or kept without holding a secret.
func Key(up tenant.Upstream) string {
	// Computed on every call a request makes: on the stack, and no
	// sorting for the usual config without env or headers.
	var buf [256]byte
	b := buf[:0]
	b = appendField(b, up.ConfigID)
	b = appendField(b, string(up.Transport))
	b = appendField(b, up.URL)
	b = appendField(b, strconv.FormatBool(up.AllowHTTP))
	b = appendField(b, up.Command)
	for _, a := range up.Args {
		b = appendField(b, a)
	}
	for _, m := range [...]map[string]string{up.Credentials.Env, up.Credentials.Headers} {
		b = appendField(b, "|")
		if len(m) == 0 {
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			b = appendField(appendField(b, k), m[k])
		}
	}
	b = appendField(b, "|")
	b = appendField(b, string(up.AuthType))
	if o := up.Credentials.OAuth; o != nil {
		b = appendField(b, o.TokenURL)
		b = appendField(b, o.ClientID)
		b = appendField(b, o.ClientSecret)
		for _, s := range o.Scopes {
			b = appendField(b, s)
		}
	}
	sum := sha256.Sum256(b)
	var h [2 * sha256.Size]byte
	hex.Encode(h[:], sum[:])
	return string(h[:])
}

// appendField appends s to a Key's input, ended by a NUL.
func appendField(b []byte, s string) []byte { return append(append(b, s...), 0) }

// Session returns the pooled session of up, connecting when there is none.
// Concurrent callers share one connection attempt, which runs detached
// from their requests within ConnectTimeout.
func (p *Pool) Session(ctx context.Context, up tenant.Upstream) (*mcp.ClientSession, error) {
	if err := p.creds.Sync(up); err != nil {
		return nil, credentialFailure(up.Name, err)
	}
	key := Key(up)
	now := time.Now()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errors.New("upstream pool is closed")
	}
	p.sweepLocked(now)
	if e, ok := p.sessions[key]; ok {
		e.lastUsed.Store(now.UnixNano())
		p.mu.Unlock()
		return e.session, nil
	}
	p.mu.Unlock()
	return p.open(ctx, key, &up)
}

// open connects to up, or waits for the connection another caller makes
// to it. up is a pointer, so that Session's copy of it stays on the
// stack when a session is pooled, as on nearly every call.
func (p *Pool) open(ctx context.Context, key string, upp *tenant.Upstream) (*mcp.ClientSession, error) {
	up := *upp
	ch := p.flight.DoChan(key, func() (any, error) {
		cctx, cancel := context.WithTimeout(context.Background(), p.opts.ConnectTimeout)
		defer cancel()
		s, proc, err := p.connect(cctx, up)
		if err != nil {
			return nil, err
		}
		e := &pooled{session: s, proc: proc}
		e.lastUsed.Store(time.Now().UnixNano())
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			s.Close()
			proc.ended()
			return nil, errors.New("upstream pool is closed")
		}
		p.sessions[key] = e
		p.mu.Unlock()
		// Forget the session when it ends, whatever ends it (the
		// upstream went away or its process died, Drop, idle sweep,
		// Close), and reap its process.
		go func() {
			s.Wait()
			p.forget(key, s)
			s.Close()
			proc.ended()
		}()
		return s, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*mcp.ClientSession), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *Pool) connect(ctx context.Context, up tenant.Upstream) (*mcp.ClientSession, *stdioProcess, error) {
	var (
		httpClient *http.Client
		g          *guard
		probe      *firstPost
	)
	if up.Transport != tenant.TransportStdio {
		g = p.guard(up)
		if g.refuse != nil {
			return nil, nil, fmt.Errorf("upstream %s: %w", up.Name, g.refuse)
		}
		httpClient = guardedClient(p.http, g)
	}
	if up.Transport == tenant.TransportStreamableHTTP {
		if p.legacySSE(up.URL) {
			up.Transport = tenant.TransportSSE
		} else {
			httpClient, probe = recording(httpClient)
		}
	}
	t, err := transport(up, httpClient, p.iso)
	if err != nil {
		return nil, nil, fmt.Errorf("upstream %s: %w", up.Name, err)
	}
	proc := prepareStdio(t, p.log, up)
	s, err := p.client.Connect(ctx, t, p.sessionOptions())
	if err != nil && proc == nil && noInitialize(err) && !wire.Stateless(p.opts.ProtocolVersion) {
		// A server of 2026-07-28 alone has no initialize: asked for
		// that version, the SDK's client discovers it instead.
		if t, terr := transport(up, httpClient, p.iso); terr == nil {
			if s, serr := p.client.Connect(ctx, t, &mcp.ClientSessionOptions{ProtocolVersion: wire.V20260728}); serr == nil {
				return s, nil, nil
			}
		}
	}
	if err != nil {
		proc.ended() // a process that started but failed to initialize
		if refused := g.firstRefusal(); refused != nil {
			return nil, nil, fmt.Errorf("upstream %s: connect: %w", up.Name, refused)
		}
		if proc != nil {
			err = p.iso.startError(up.Command, err)
		}
		if probe != nil && probe.refusedPost() {
			if s, sseErr := p.connectSSE(ctx, up); sseErr == nil {
				return s, nil, nil
			}
		}
		return nil, nil, fmt.Errorf("upstream %s: connect: %w", up.Name, err)
	}
	return s, proc, nil
}

// DefaultProtocolVersion is the version a pool asks an upstream for
// unless told otherwise: the last one with initialize. Asked for
// 2026-07-28, the go-sdk's server spent 1.25 to 1.41 times the CPU time
// per tools/call, and the proxy 1.06 to 1.28 times (BENCHMARKS.md, "The
// protocol spoken to an upstream").
const DefaultProtocolVersion = "2025-11-25"

// noInitialize reports whether an upstream refused initialize as a
// method it does not have or a version it does not speak.
func noInitialize(err error) bool {
	var jerr *jsonrpc.Error
	return errors.As(err, &jerr) && (jerr.Code == jsonrpc.CodeMethodNotFound || jerr.Code == mcp.CodeUnsupportedProtocolVersion)
}

func (p *Pool) sessionOptions() *mcp.ClientSessionOptions {
	return &mcp.ClientSessionOptions{ProtocolVersion: p.opts.ProtocolVersion}
}

// guardedClient is c sending through g, and refusing redirects.
func guardedClient(c *http.Client, g *guard) *http.Client {
	out := *c
	out.Transport = g
	out.CheckRedirect = g.checkRedirect
	return &out
}

// connectSSE connects to a server registered as Streamable HTTP over SSE
// and, when that works, remembers that its URL speaks only SSE.
func (p *Pool) connectSSE(ctx context.Context, up tenant.Upstream) (*mcp.ClientSession, error) {
	up.Transport = tenant.TransportSSE
	t, err := transport(up, guardedClient(p.http, p.guard(up)), p.iso)
	if err != nil {
		return nil, err
	}
	s, err := p.client.Connect(ctx, t, p.sessionOptions())
	if err != nil {
		return nil, err
	}
	p.sseURLs.Store(up.URL, true)
	p.log.Info("upstream answers only over HTTP+SSE (2024-11-05); using SSE for it", "upstream", tenant.Namespace(up.Name))
	return s, nil
}

// forget removes key's entry if it still holds s.
func (p *Pool) forget(key string, s *mcp.ClientSession) {
	p.mu.Lock()
	if e, ok := p.sessions[key]; ok && e.session == s {
		delete(p.sessions, key)
	}
	p.mu.Unlock()
}

// Drop closes s and removes it from the pool, so the next request to up
// opens a new session.
func (p *Pool) Drop(up tenant.Upstream, s *mcp.ClientSession) {
	p.forget(Key(up), s)
	go s.Close() // Close may send a DELETE; no request waits for it.
}

// sweepEvery is how often idle sessions are looked for: a quarter of the
// idle timeout, at most a minute.
func (p *Pool) sweepEvery() time.Duration { return min(p.opts.IdleTimeout/4, time.Minute) }

// janitor sweeps on a timer, so that idle stdio upstreams stop while no
// request comes (locally, or on an instance that keeps its CPU); on Cloud
// Functions, which gives an idle instance no CPU, requests sweep too.
func (p *Pool) janitor() {
	tick := time.NewTicker(p.sweepEvery())
	defer tick.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-tick.C:
			p.mu.Lock()
			p.sweepLocked(now)
			p.mu.Unlock()
			if p.h1 != nil {
				p.h1.prune(now)
			}
		}
	}
}

// sweepLocked closes sessions idle for longer than IdleTimeout, at most
// once per sweepEvery.
func (p *Pool) sweepLocked(now time.Time) {
	if now.Sub(p.lastSweep) < p.sweepEvery() {
		return
	}
	p.lastSweep = now
	for key, e := range p.sessions {
		if now.Sub(time.Unix(0, e.lastUsed.Load())) > p.opts.IdleTimeout {
			delete(p.sessions, key)
			go e.session.Close()
		}
	}
}

// Len is the number of open sessions.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sessions)
}

// Close closes every session, and removes the home folder of the stdio
// upstreams when they ran as another user; later calls to Session fail.
// It is safe to call twice.
func (p *Pool) Close() {
	p.mu.Lock()
	sessions := p.sessions
	p.sessions = map[string]*pooled{}
	wasClosed := p.closed
	p.closed = true
	p.mu.Unlock()
	if !wasClosed {
		close(p.stop)
	}
	var wg sync.WaitGroup
	for _, e := range sessions {
		wg.Go(func() {
			e.session.Close()
			e.proc.ended()
		})
	}
	wg.Wait()
	if !wasClosed {
		p.iso.close()
		if p.h1 != nil {
			p.h1.close()
		}
	}
}

// Retry says what Do may do with a call whose session broke under it.
type Retry int

const (
	// Idempotent calls (lists, reads, completions) run once more on a
	// new session.
	Idempotent Retry = iota
	// Once: a call that may have reached the upstream (tools/call) is
	// never sent twice; it runs again only when the upstream cannot have
	// run it.
	Once
)

// Do runs call with the session of up. When the session turns out broken
// it is dropped, and call is run once more on a new session if retry is
// Idempotent, or if the upstream cannot have executed it (the upstream no
// longer knew the session, or the connection was refused). A failure to
// authorise (ErrUnauthorized, no token to be had) is returned at once: a
// new session would present the same credentials.
func (p *Pool) Do(ctx context.Context, up tenant.Upstream, retry Retry, call func(context.Context, *mcp.ClientSession) error) error {
	for attempt := 0; ; attempt++ {
		s, err := p.Session(ctx, up)
		if err != nil {
			return err
		}
		err = call(ctx, s)
		if err == nil || isCredentialError(err) || !sessionBroken(ctx, err) {
			return err
		}
		p.Drop(up, s)
		if attempt > 0 || !(retry == Idempotent || notExecuted(err)) {
			return err
		}
	}
}

// isCredentialError reports whether err is a failure to authorise. Its
// target lives here, not in Do: errors.As takes its address, which would
// put one on the heap for every call, failed or not.
func isCredentialError(err error) bool {
	var cerr *credentials.Error
	return errors.As(err, &cerr)
}

// Discover lists the tools of up on its pooled session, presenting every
// kind of credential (OAuth, Cloud Run IAM) as a tools/list does.
func (p *Pool) Discover(ctx context.Context, up tenant.Upstream) ([]*mcp.Tool, error) {
	var tools []*mcp.Tool
	err := p.Do(ctx, up, Idempotent, func(ctx context.Context, s *mcp.ClientSession) error {
		var err error
		tools, err = ListTools(ctx, s)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("upstream %s: tools/list: %w", up.Name, err)
	}
	return tools, nil
}

// codeRejected is the SDK transport's own JSON-RPC error ("rejected by
// transport"), which wraps failures to reach the upstream: it is not an
// answer of the upstream.
const codeRejected = -32005

// Answer returns the JSON-RPC error the upstream answered with, if err
// holds one, as opposed to a failure to reach it.
func Answer(err error) (*jsonrpc.Error, bool) {
	for _, e := range unwrapAll(err) {
		if jerr, ok := e.(*jsonrpc.Error); ok && !(jerr.Code == codeRejected && jerr.Message == "rejected by transport") {
			return jerr, true
		}
	}
	return nil, false
}

// unwrapAll lists err and every error it wraps, depth first.
func unwrapAll(err error) []error {
	if err == nil {
		return nil
	}
	out := []error{err}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		out = append(out, unwrapAll(u.Unwrap())...)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			out = append(out, unwrapAll(e)...)
		}
	}
	return out
}

// sessionBroken reports whether err means the session can no longer be
// used: anything but an answer from the upstream or the caller's own
// cancellation.
func sessionBroken(ctx context.Context, err error) bool {
	_, answered := Answer(err)
	return !answered && ctx.Err() == nil
}

// notExecuted reports whether the upstream cannot have run the request.
func notExecuted(err error) bool {
	return errors.Is(err, mcp.ErrSessionMissing) || errors.Is(err, syscall.ECONNREFUSED)
}
