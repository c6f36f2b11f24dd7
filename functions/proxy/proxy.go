// Package proxy is the Proxy function: the authenticated MCP endpoint that
// aggregates the upstream MCP servers of one instance.
//
// One Handler serves every request of a function instance process: its
// API key and instance caches, its upstream sessions and its Postgres pool
// are created on the first request and kept warm for the next ones.
package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/functions/proxy/configcache"
	"mcpproxy.dev/mcpproxy/functions/proxy/oauth"
	"mcpproxy.dev/mcpproxy/shared/budget"
	"mcpproxy.dev/mcpproxy/shared/credentials"
	"mcpproxy.dev/mcpproxy/shared/envfile"
	"mcpproxy.dev/mcpproxy/shared/keyring"
	"mcpproxy.dev/mcpproxy/shared/logbuffer"
	"mcpproxy.dev/mcpproxy/shared/logging"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/rendezvous"
	"mcpproxy.dev/mcpproxy/shared/upstream"
)

func init() {
	functions.HTTP("Proxy", Proxy)
	quietFramework()
}

// quietFramework turns the Functions Framework's log flush off. With
// K_SERVICE set, as Cloud Run sets it, the framework writes an empty line
// to stdout and another to stderr after every request, to flush the
// output of runtimes that buffer it. A Go process does not buffer
// os.Stdout or os.Stderr: the lines flush nothing and cost two write
// system calls per request, about 1.5% of the proxy's CPU per call
// (BENCHMARKS.md). The framework is the only reader of K_SERVICE in the
// binary (every function of it shares this process's environment).
func quietFramework() {
	os.Unsetenv("K_SERVICE")
}

// Config is the Proxy function's environment. Any variable, and in
// deployment DATABASE_URL and MCP_ENCRYPTION_KEY, may be given as
// NAME_FILE (envfile): stdio upstreams must not find them in the
// proxy's environment.
type Config struct {
	Postgres      postgres.Options
	EncryptionKey string `env:"MCP_ENCRYPTION_KEY"`
	ProjectID     string `env:"GOOGLE_CLOUD_PROJECT"`
	// StdioUID and StdioGID are who stdio upstreams run as when the
	// proxy runs as root (shared/upstream/isolation.go).
	StdioUID int `env:"STDIO_UID, default=65534"`
	StdioGID int `env:"STDIO_GID, default=65534"`

	// CacheTTL is long because the change feed, read every ConfigPoll,
	// drops what an operator changes; the TTL is only the backstop for a
	// change the feed cannot carry (docs/configuration.md).
	CacheTTL          time.Duration `env:"CACHE_TTL, default=1h"`
	ConfigPoll        time.Duration `env:"CONFIG_POLL, default=5s"`
	FeedMissedPolls   int           `env:"CONFIG_POLL_MISSED, default=3"`
	FeedFallbackTTL   time.Duration `env:"CACHE_FALLBACK_TTL, default=60s"`
	CacheStaleIfError time.Duration `env:"CACHE_STALE_IF_ERROR, default=10m"`
	CacheNegativeTTL  time.Duration `env:"CACHE_NEGATIVE_TTL, default=5s"`
	CacheSize         int           `env:"CACHE_SIZE, default=10000"`

	RequestTimeout         time.Duration `env:"REQUEST_TIMEOUT, default=120s"`
	UpstreamListTimeout    time.Duration `env:"UPSTREAM_LIST_TIMEOUT, default=10s"`
	UpstreamConnectTimeout time.Duration `env:"UPSTREAM_CONNECT_TIMEOUT, default=10s"`
	UpstreamToolsTTL       time.Duration `env:"UPSTREAM_TOOLS_TTL, default=30s"`
	UpstreamMaxListBytes   int64         `env:"UPSTREAM_MAX_LIST_BYTES, default=4194304"`
	UpstreamListCacheBytes int64         `env:"UPSTREAM_LIST_CACHE_BYTES, default=16777216"`
	UpstreamIdleTimeout    time.Duration `env:"UPSTREAM_IDLE_TIMEOUT, default=10m"`
	UpstreamConnsPerHost   int           `env:"UPSTREAM_MAX_IDLE_CONNS_PER_HOST, default=100"`
	// UpstreamProtocol is the version asked of upstreams; empty:
	// upstream.DefaultProtocolVersion.
	UpstreamProtocol string `env:"UPSTREAM_PROTOCOL_VERSION"`
	// RequestStateTTL is how long a client may take to answer an
	// upstream's input-required result (2026-07-28).
	RequestStateTTL time.Duration `env:"REQUEST_STATE_TTL, default=10m"`

	FirestoreDatabase string `env:"FIRESTORE_DATABASE, default=(default)"`
	LogCollection     string `env:"REQUEST_LOG_COLLECTION, default=requestLogBatches"`
	LogBatchEntries   int    `env:"LOG_BATCH_ENTRIES, default=500"`
	// RendezvousCollection holds the answers of clients to the requests
	// upstreams send them during a call, until the instance that holds
	// the call takes them; its TTL policy (deploy.sh) is on expireAt.
	RendezvousCollection string        `env:"RENDEZVOUS_COLLECTION, default=rendezvous"`
	LogBatchMaxAge       time.Duration `env:"LOG_BATCH_MAX_AGE, default=5s"`
	LogBufferBytes       int           `env:"LOG_BUFFER_MAX_BYTES, default=67108864"`
	ShutdownTimeout      time.Duration `env:"SHUTDOWN_TIMEOUT, default=8s"`
	FiguresInterval      time.Duration `env:"FIGURES_INTERVAL, default=1m"`

	MaxBodyBytes  int64   `env:"MAX_BODY_BYTES, default=4194304"`
	MaxBatch      int     `env:"MAX_BATCH_MESSAGES, default=50"`
	KeyLookupRate float64 `env:"KEY_LOOKUP_RATE, default=100"`
	// InflightBytes is the budget of request and result bytes held at
	// once; deploy.sh sizes it from the function's memory.
	InflightBytes      int64    `env:"INFLIGHT_BYTES, default=50331648"`
	UpstreamMaxMessage int64    `env:"UPSTREAM_MAX_MESSAGE_BYTES, default=16777216"`
	AllowedOrigins     []string `env:"ALLOWED_ORIGINS"`
	// OAuthSigningKeys turn on the OAuth authorization server
	// (docs/oauth.md): keyid:base64 Ed25519 seeds, the first signing;
	// deploy.sh gives them as a Secret Manager file.
	OAuthSigningKeys  string        `env:"OAUTH_SIGNING_KEYS"`
	OAuthIssuer       string        `env:"OAUTH_ISSUER"`
	OAuthAccessTTL    time.Duration `env:"OAUTH_ACCESS_TTL, default=10m"`
	OAuthRefreshTTL   time.Duration `env:"OAUTH_REFRESH_TTL, default=720h"`
	OAuthRegisterRate float64       `env:"OAUTH_REGISTER_RATE, default=0.2"`
	// An OpenID Connect provider users sign in with on the consent page;
	// unset: API keys only.
	OIDCIssuer       string     `env:"OAUTH_OIDC_ISSUER"`
	OIDCClientID     string     `env:"OAUTH_OIDC_CLIENT_ID"`
	OIDCClientSecret string     `env:"OAUTH_OIDC_CLIENT_SECRET"`
	OIDCName         string     `env:"OAUTH_OIDC_NAME"`
	LogLevel         slog.Level `env:"LOG_LEVEL, default=INFO"`
	// LogDelay is how long an INFO line may wait to be written with the
	// lines after it (logging.NewBatched); 0 writes each at once.
	LogDelay time.Duration `env:"LOG_DELAY, default=50ms"`
}

// handler is built on the first request of the process. A configuration
// error is kept and answered on every request, instead of a crash loop.
var handler = sync.OnceValues(func() (*Handler, error) {
	ctx := context.Background()
	var c Config
	secretFiles, err := envfile.Process(ctx, &c)
	if err != nil {
		return nil, err
	}
	logger := logging.NewBatched(os.Stderr, c.LogLevel, c.LogDelay)
	if v := c.UpstreamProtocol; v != "" && !slices.Contains(mcp.SupportedProtocolVersions(), v) {
		return nil, fmt.Errorf("UPSTREAM_PROTOCOL_VERSION %q is none of %s", v, strings.Join(mcp.SupportedProtocolVersions(), ", "))
	}
	keys, err := keyring.Parse(c.EncryptionKey)
	if err != nil {
		return nil, err
	}
	// Every instance derives the same key for the requestStates it
	// seals, from the key they share already.
	stateKey, err := StateKey(keys)
	if err != nil {
		return nil, err
	}
	db, err := postgres.Open(ctx, c.Postgres, keys)
	if err != nil {
		return nil, err
	}
	project := c.ProjectID
	if project == "" {
		project = firestore.DetectProjectID
	}
	fs, err := firestore.NewClientWithDatabase(ctx, project, c.FirestoreDatabase, logbuffer.ClientOptions()...)
	if err != nil {
		return nil, err
	}
	requestLog := logbuffer.New(&logbuffer.Firestore{Client: fs, Collection: c.LogCollection}, logbuffer.Options{
		BatchEntries: c.LogBatchEntries, MaxAge: c.LogBatchMaxAge, MaxBytes: c.LogBufferBytes, Logger: logger,
	})
	creds := credentials.New(credentials.Options{
		Timeout:   c.UpstreamConnectTimeout,
		SaveToken: db.SaveOAuthToken,
		Logger:    logger,
	})
	pool := upstream.NewPool(upstream.PoolOptions{
		MaxIdleConnsPerHost: c.UpstreamConnsPerHost,
		ProtocolVersion:     c.UpstreamProtocol,
		ConnectTimeout:      c.UpstreamConnectTimeout,
		MaxMessageBytes:     c.UpstreamMaxMessage,
		IdleTimeout:         c.UpstreamIdleTimeout,
		Credentials:         creds,
		Logger:              logger,
		StdioUID:            c.StdioUID,
		StdioGID:            c.StdioGID,
		SecretFiles:         secretFiles,
	})
	sealKey, err := keys.Derive("mcp-proxy session and relayed request IDs v1")
	if err != nil {
		return nil, err
	}
	var auth *oauth.Server
	if c.OAuthSigningKeys != "" {
		signing, err := oauth.ParseKeys(c.OAuthSigningKeys)
		if err != nil {
			return nil, err
		}
		var provider *oauth.OIDC
		if c.OIDCIssuer != "" {
			provider = &oauth.OIDC{Issuer: c.OIDCIssuer, ClientID: c.OIDCClientID, ClientSecret: c.OIDCClientSecret, Name: c.OIDCName}
		}
		auth = oauth.New(db, oauth.Options{Issuer: c.OAuthIssuer, Keys: signing, AccessTTL: c.OAuthAccessTTL,
			RefreshTTL: c.OAuthRefreshTTL, RegisterRate: c.OAuthRegisterRate, ValidResource: ValidResource, OIDC: provider, Logger: logger})
	}
	// A negative CONFIG_POLL reads no change feed: the caches then rely
	// on CACHE_TTL alone, as before the feed (for measurements).
	var feed ChangeFeed = db
	if c.ConfigPoll < 0 {
		feed = nil
	}
	h := New(db, pool, logger, Options{
		Rendezvous:     rendezvous.New(fs, rendezvous.Options{Collection: c.RendezvousCollection}),
		SealKey:        sealKey,
		RequestTimeout: c.RequestTimeout,
		ListTimeout:    c.UpstreamListTimeout,
		MaxBodyBytes:   c.MaxBodyBytes,
		MaxBatch:       c.MaxBatch,
		KeyLookupRate:  c.KeyLookupRate,
		Budget:         budget.New(c.InflightBytes, 0),
		MaxAnswerBytes: c.UpstreamMaxMessage,
		AllowedOrigins: c.AllowedOrigins,
		Cache: configcache.Options{Size: c.CacheSize, TTL: c.CacheTTL, StaleIfError: c.CacheStaleIfError,
			NegativeTTL: c.CacheNegativeTTL, LoadTimeout: c.Postgres.ConnectTimeout + c.Postgres.StatementTimeout},
		ToolsTTL:        c.UpstreamToolsTTL,
		MaxListBytes:    c.UpstreamMaxListBytes,
		ListCacheBytes:  c.UpstreamListCacheBytes,
		ProjectID:       c.ProjectID,
		Version:         logging.Version(),
		RequestLog:      requestLog,
		DBStats:         db.Stats,
		FiguresInterval: c.FiguresInterval,
		StateKey:        stateKey,
		StateTTL:        c.RequestStateTTL,
		OAuth:           auth,
		Feed:            feed,
		ConfigPoll:      c.ConfigPoll,
		FeedMissedPolls: c.FeedMissedPolls,
		FeedFallbackTTL: c.FeedFallbackTTL,
	})
	// Before the first request is served: the feed is read from here on.
	// On failure the first poll starts it, dropping what was cached.
	if err := h.PrimeFeed(ctx); err != nil {
		logger.Warn("change feed not primed; the first read starts it", "error", err.Error())
	}
	onSignal(logger, c.ShutdownTimeout, func(ctx context.Context) error {
		err := h.Shutdown(ctx)
		db.Close()
		fs.Close()
		return err
	}, requestLog)
	return h, nil
})

// onSignal shuts the process down on SIGTERM (Cloud Run gives 10 s before
// it kills) and on SIGINT (Ctrl-C locally), then exits. The Functions
// Framework has no shutdown hook, so the proxy installs its own when it
// builds its handler: once, on the first request.
func onSignal(logger *slog.Logger, timeout time.Duration, shutdown func(context.Context) error, requestLog *logbuffer.Buffer) {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, os.Interrupt)
	go func() { // ends with the process
		sig := <-signals
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		err := shutdown(ctx)
		attrs := []any{"signal", sig.String(), "durationMs", time.Since(start).Milliseconds(), "requestLog", requestLog.Stats()}
		code := 0
		if err != nil {
			code = 1
			logger.Error("proxy shut down with request log entries unwritten", append(attrs, "error", err.Error())...)
		} else {
			logger.Info("proxy shut down", attrs...)
		}
		logging.Flush(logger)
		os.Exit(code)
	}()
}

// Proxy is the function's entry point.
func Proxy(w http.ResponseWriter, r *http.Request) {
	h, err := handler()
	if err != nil {
		logging.New(os.Stderr, slog.LevelInfo).Error("proxy misconfigured", "error", err.Error())
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": nil,
			"error": map[string]any{"code": codeInternalError, "message": "the proxy is misconfigured; see its logs"}})
		return
	}
	h.ServeHTTP(w, r)
}
