package proxy

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"mcpproxy.dev/mcpproxy/functions/proxy/configcache"
	"mcpproxy.dev/mcpproxy/functions/proxy/oauth"
	"mcpproxy.dev/mcpproxy/shared/budget"
	"mcpproxy.dev/mcpproxy/shared/logbuffer"
	"mcpproxy.dev/mcpproxy/shared/logging"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/rendezvous"
	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/upstream"
)

// Store is what the proxy needs of Postgres: three queries, each one
// round trip, all behind the warm cache.
type Store interface {
	LookupAPIKey(ctx context.Context, hash [32]byte) (*tenant.Key, error)
	LoadInstanceConfig(ctx context.Context, instanceID string) (*tenant.Instance, error)
	LookupOAuthGrant(ctx context.Context, grantID string) (*tenant.Grant, error)
}

// Options tune a Handler. Zero values take the defaults named.
type Options struct {
	// RequestTimeout bounds a whole request, upstream calls included.
	// Default 120 s.
	RequestTimeout time.Duration
	// WriteGrace is how long after RequestTimeout the answer may still
	// take to be written, so that an answer made at the deadline (its
	// timeout error) reaches the client; a client that stops reading
	// holds its request no longer. Default 10 s.
	WriteGrace time.Duration
	// ListTimeout bounds asking one upstream for a list, so one slow
	// upstream drops out of tools/list instead of holding it. Default 10 s.
	ListTimeout time.Duration
	// MaxBodyBytes bounds a request body. Default 4 MiB.
	MaxBodyBytes int64
	// Budget bounds the bytes the process holds for requests in flight:
	// bodies and upstream answers. Nil holds them without a bound.
	Budget *budget.Budget
	// MaxAnswerBytes is the room a request with a large body takes for
	// its upstream's answer, the pool's MaxMessageBytes. Default 16 MiB.
	MaxAnswerBytes int64
	// KeyLookupRate bounds the Postgres lookups of API keys not in the
	// warm cache, per second and process (the burst is the same
	// number); a request beyond it gets 429. Default 100.
	KeyLookupRate float64
	// MaxBatch bounds the messages of a JSON-RPC batch (2025-03-26).
	// Default 50.
	MaxBatch int
	// AllowedOrigins are the browser origins that may call the proxy; a
	// request with any other Origin header is refused (DNS rebinding
	// protection). Requests without Origin (non-browser clients) pass.
	AllowedOrigins []string
	// Cache configures the API key and instance caches.
	Cache configcache.Options
	// ToolsTTL is how long an upstream's tool list is kept. Default 30 s.
	ToolsTTL time.Duration
	// MaxListBytes bounds one upstream's tool list, and its prompts,
	// resources and templates together, as JSON: a larger one leaves the
	// upstream out of the lists. Default 4 MiB.
	MaxListBytes int64
	// ListCacheBytes bounds the tool lists the process keeps, and
	// separately the catalogs, the least recently used evicted beyond it.
	// Default 16 MiB each.
	ListCacheBytes int64
	// ProjectID qualifies trace IDs in log lines.
	ProjectID string
	// Version is reported as serverInfo.version.
	Version string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// RequestLog receives one entry per request made with a valid key;
	// nil keeps no request log (the structured log line is still written).
	RequestLog *logbuffer.Buffer
	// DBStats reports the Postgres pool for the process figures; nil
	// leaves the pool out of them.
	DBStats func() postgres.Stats
	// FiguresInterval is how often, while requests come, the process
	// figures are logged. Default 1 minute.
	FiguresInterval time.Duration
	// StateKey is the 32-byte XChaCha20-Poly1305 key of the requestStates
	// and task IDs the proxy gives clients (inputrequired.go, tasks.go):
	// the same on every instance, which any instance may get a retry on.
	// nil is a random key of the process, which only it can open (tests
	// of one process).
	StateKey []byte
	// StateTTL is how long a client may take to answer an
	// input-required result. Default 10 minutes.
	StateTTL time.Duration
	// Rendezvous, with SealKey, relays the requests an upstream sends a
	// 2025-era client during a tools/call (elicitation, sampling, roots)
	// across instances (ask.go); nil refuses them.
	Rendezvous *rendezvous.Store
	// SealKey is the 32-byte key that seals the session IDs and relayed
	// request IDs the proxy hands out (keyring.Derive).
	SealKey []byte
	// OAuth is the authorization server served beside the MCP routes,
	// whose access tokens the proxy takes besides API keys; nil takes
	// API keys only.
	OAuth *oauth.Server
	// Feed is the change feed the process reads to drop the keys and
	// instances an operator changed (feed.go); nil reads none, and the
	// caches rely on their TTL alone.
	Feed ChangeFeed
	// ConfigPoll is how often, while requests come, the feed is read.
	// Default 5 s.
	ConfigPoll time.Duration
	// FeedMissedPolls is how many ConfigPoll intervals may pass without
	// a successful read of the feed before the key and instance caches
	// fall back to FeedFallbackTTL. Default 3.
	FeedMissedPolls int
	// FeedFallbackTTL is the key and instance caches' TTL while the feed
	// cannot be read. Default 60 s.
	FeedFallbackTTL time.Duration
}

// Handler is the proxy's MCP endpoint. It is safe for concurrent use; one
// Handler serves every request of a process.
type Handler struct {
	store Store
	pool  *upstream.Pool
	log   *slog.Logger
	opts  Options
	keys  *configcache.Cache[*tenant.Key]
	// auth is Options.OAuth; grants are the grants of its access tokens.
	auth   *oauth.Server
	grants *configcache.Cache[*tenant.Grant]
	views  *configcache.Cache[*view]
	tools  *configcache.Cache[*toolList]
	// catalogCache keeps each upstream's capabilities, prompts, resources
	// and templates, like tools.
	catalogCache *configcache.Cache[*catalog]
	origins      map[string]bool
	keyLookups   *rate.Limiter // lookups of keys not in the cache
	// failureLines bounds the log lines of refused keys; failuresLeftOut
	// counts those it left out since the last one written.
	failureLines    *rate.Limiter
	failuresLeftOut atomic.Int64
	calls           calls // tools/call in flight, for notifications/cancelled
	// states seals the requestStates of input-required results.
	states cipher.AEAD
	asks   *asks // nil without Options.Rendezvous
	// front is ServeHTTP's chain of middleware around serve; epochs are
	// the methods of each protocol epoch with theirs (protocol.go).
	front  frontHandler
	epochs map[*epoch]handlers

	drain       atomic.Bool  // set by Shutdown: new requests are refused
	inflight    atomic.Int64 // requests being served
	lastFigures atomic.Int64 // unix nanoseconds of the last process figures
	feed        feed         // the process's place in the change feed
	// keyBuckets and instanceBuckets hold the rate limits' buckets.
	keyBuckets, instanceBuckets buckets
	quotas                      quotaBlocks // quota.go
}

// New makes a Handler.
func New(store Store, pool *upstream.Pool, logger *slog.Logger, opts Options) *Handler {
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 120 * time.Second
	}
	if opts.WriteGrace <= 0 {
		opts.WriteGrace = 10 * time.Second
	}
	if opts.ListTimeout <= 0 {
		opts.ListTimeout = 10 * time.Second
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 4 << 20
	}
	if opts.StateTTL <= 0 {
		opts.StateTTL = 10 * time.Minute
	}
	if opts.MaxAnswerBytes <= 0 {
		opts.MaxAnswerBytes = upstream.DefaultMaxMessageBytes
	}
	if opts.KeyLookupRate <= 0 {
		opts.KeyLookupRate = 100
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 50
	}
	if opts.ToolsTTL <= 0 {
		opts.ToolsTTL = 30 * time.Second
	}
	if opts.MaxListBytes <= 0 {
		opts.MaxListBytes = 4 << 20
	}
	if opts.ListCacheBytes <= 0 {
		opts.ListCacheBytes = 16 << 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	if opts.FiguresInterval <= 0 {
		opts.FiguresInterval = time.Minute
	}
	if opts.ConfigPoll <= 0 {
		opts.ConfigPoll = 5 * time.Second
	}
	if opts.FeedMissedPolls <= 0 {
		opts.FeedMissedPolls = 3
	}
	if opts.FeedFallbackTTL <= 0 {
		opts.FeedFallbackTTL = 60 * time.Second
	}
	h := &Handler{store: store, pool: pool, log: logger, opts: opts, origins: map[string]bool{}, states: newStateAEAD(opts.StateKey),
		keyLookups:   rate.NewLimiter(rate.Limit(opts.KeyLookupRate), max(1, int(opts.KeyLookupRate))),
		failureLines: rate.NewLimiter(20, 20)}
	for _, o := range opts.AllowedOrigins {
		h.origins[strings.TrimSuffix(strings.TrimSpace(o), "/")] = true
	}
	notFound := func(err error) bool { return errors.Is(err, tenant.ErrNotFound) }
	refreshFailed := func(what string) func(string, error) {
		return func(_ string, err error) {
			logger.Warn("cache refresh failed; serving the cached value", "cache", what, "error", err.Error())
		}
	}
	panicked := func(what string) func(string, any, []byte) {
		return func(_ string, p any, stack []byte) {
			logger.Error("panic in cache loader; the load failed", "cache", what, "panic", fmt.Sprint(p), "stack", string(stack))
		}
	}
	// Keys and instances loaded together (a process's first minutes)
	// expire over the last tenth of the TTL rather than at once.
	if opts.Cache.Jitter == 0 {
		opts.Cache.Jitter = 0.1
	}
	keyOpts := opts.Cache
	keyOpts.IsNegative, keyOpts.OnRefreshError, keyOpts.OnPanic = notFound, refreshFailed("apiKey"), panicked("apiKey")
	h.keys = configcache.New[*tenant.Key](keyOpts)
	grantOpts := opts.Cache
	grantOpts.IsNegative, grantOpts.OnRefreshError, grantOpts.OnPanic = notFound, refreshFailed("grant"), panicked("grant")
	h.auth, h.grants = opts.OAuth, configcache.New[*tenant.Grant](grantOpts)
	viewOpts := opts.Cache
	viewOpts.IsNegative, viewOpts.OnRefreshError, viewOpts.OnPanic = notFound, refreshFailed("instance"), panicked("instance")
	h.views = configcache.New[*view](viewOpts)
	// A failing upstream must drop out of the list, so its tool list is
	// never served stale.
	h.tools = configcache.New[*toolList](configcache.Options{Size: opts.Cache.Size, TTL: opts.ToolsTTL,
		StaleIfError: -1, LoadTimeout: opts.ListTimeout, Now: opts.Now, OnPanic: panicked("tools"),
		Cost: func(v any) int64 { return v.(*toolList).bytes }, MaxCost: opts.ListCacheBytes})
	h.catalogCache = configcache.New[*catalog](configcache.Options{Size: opts.Cache.Size, TTL: opts.ToolsTTL,
		StaleIfError: -1, LoadTimeout: opts.ListTimeout, Now: opts.Now, OnPanic: panicked("catalog"),
		Cost: func(v any) int64 { return v.(*catalog).bytes }, MaxCost: opts.ListCacheBytes})
	if opts.Rendezvous != nil {
		a, err := newAsks(opts.SealKey, opts.Rendezvous, opts.Now, logger)
		if err != nil {
			// A programming error of the caller's wiring, as a nil store.
			panic("proxy: Options.SealKey: " + err.Error())
		}
		h.asks = a
	}
	h.feed.cursor.Store(-1)
	h.front = h.chainFront()
	h.epochs = map[*epoch]handlers{&sessionEpoch: h.handlersOf(&sessionEpoch), &statelessEpoch: h.handlersOf(&statelessEpoch)}
	return h
}

// requestID is the trace ID of the request when it has one, else random.
func requestID(r *http.Request) string {
	if id := logging.TraceID(r); id != "" {
		return id
	}
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
