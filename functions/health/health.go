// Package health is the Health function: liveness, and with ?deep=1 a
// check of Postgres and Firestore. Every access is logged with the caller's
// user agent and IP, so that health probes show up in the logs. The
// function is public, so a deep check's result is reused for a few seconds
// and only one check runs at a time: a flood of ?deep=1 costs the
// dependencies one ping each per CacheFor.
package health

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"mcpproxy.dev/mcpproxy/shared/envfile"
	"mcpproxy.dev/mcpproxy/shared/logging"
	"mcpproxy.dev/mcpproxy/shared/postgres"
)

func init() {
	functions.HTTP("Health", Health)
}

// Config is the Health function's environment; DATABASE_URL may be
// given as DATABASE_URL_FILE (envfile).
type Config struct {
	Postgres          postgres.Options
	ProjectID         string        `env:"GOOGLE_CLOUD_PROJECT"`
	FirestoreDatabase string        `env:"FIRESTORE_DATABASE, default=(default)"`
	CheckTimeout      time.Duration `env:"HEALTH_CHECK_TIMEOUT, default=2s"`
	CacheFor          time.Duration `env:"HEALTH_CACHE_TTL, default=5s"`
	LogLevel          slog.Level    `env:"LOG_LEVEL, default=INFO"`
}

// Process-wide state, created on first use and kept across invocations.
var (
	config = sync.OnceValues(func() (Config, error) {
		var c Config
		_, err := envfile.Process(context.Background(), &c)
		return c, err
	})
	logger = sync.OnceValue(func() *slog.Logger {
		c, _ := config()
		return logging.New(os.Stderr, c.LogLevel)
	})
	store = sync.OnceValues(func() (*postgres.DB, error) {
		c, err := config()
		if err != nil {
			return nil, err
		}
		return postgres.Open(context.Background(), c.Postgres, nil)
	})
	firestoreClient = sync.OnceValues(func() (*firestore.Client, error) {
		c, err := config()
		if err != nil {
			return nil, err
		}
		project := c.ProjectID
		if project == "" {
			project = firestore.DetectProjectID
		}
		return firestore.NewClientWithDatabase(context.Background(), project, c.FirestoreDatabase)
	})
)

// Response is the answer of Health.
type Response struct {
	Status    string            `json:"status"`
	Timestamp time.Time         `json:"timestamp"`
	Version   string            `json:"version"`
	Checks    map[string]string `json:"checks,omitempty"`
	// CheckedAt is when the deep checks answered ran; they are reused
	// for a few seconds.
	CheckedAt *time.Time `json:"checkedAt,omitempty"`
}

// Checker answers health checks. Checks maps a dependency's name to a
// function that returns nil when the dependency answers.
type Checker struct {
	Checks map[string]func(context.Context) error
	// Timeout bounds each check. Default 2 s.
	Timeout time.Duration
	// CacheFor is how long the result of the deep checks answers later
	// deep requests. Default 5 s.
	CacheFor time.Duration
	Logger   *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	flight singleflight.Group
	mu     sync.Mutex
	last   *result // the latest deep result; guarded by mu
}

// result is the outcome of one run of the deep checks.
type result struct {
	checks map[string]string // read-only once made: callers share it
	at     time.Time
}

// defaultChecker checks the Postgres and Firestore of the environment.
var defaultChecker = sync.OnceValue(func() *Checker {
	c, _ := config()
	return &Checker{
		Timeout:  c.CheckTimeout,
		CacheFor: c.CacheFor,
		Logger:   logger(),
		Checks: map[string]func(context.Context) error{
			"postgres": func(ctx context.Context) error {
				db, err := store()
				if err != nil {
					return err
				}
				return db.Ping(ctx)
			},
			"firestore": func(ctx context.Context) error {
				client, err := firestoreClient()
				if err != nil {
					return err
				}
				return PingFirestore(ctx, client)
			},
		},
	}
})

// Health answers liveness, and with ?deep=1 checks the dependencies.
func Health(w http.ResponseWriter, r *http.Request) {
	defaultChecker().ServeHTTP(w, r)
}

// PingFirestore reads a document that does not exist: a NotFound answer
// proves the service answers and accepts the credentials.
func PingFirestore(ctx context.Context, client *firestore.Client) error {
	_, err := client.Collection("_health").Doc("probe").Get(ctx)
	if status.Code(err) == codes.NotFound {
		return nil
	}
	return err
}

func (c *Checker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	deep := r.URL.Query().Get("deep") == "1"
	c.Logger.InfoContext(r.Context(), "health check",
		"userAgent", r.UserAgent(), "clientIp", logging.ClientIP(r), "deep", deep)

	resp := Response{Status: "ok", Timestamp: c.now().UTC(), Version: logging.Version()}
	code := http.StatusOK
	if deep {
		res := c.deep(r.Context())
		at := res.at.UTC()
		resp.Checks, resp.CheckedAt = res.checks, &at
		var failed []string
		for name, result := range resp.Checks {
			if result != "ok" {
				failed = append(failed, name)
			}
		}
		if len(failed) > 0 {
			sort.Strings(failed)
			resp.Status = "unavailable: " + strings.Join(failed, ", ")
			code = http.StatusServiceUnavailable
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(resp)
}

func (c *Checker) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// deep returns the latest deep result while it is younger than CacheFor,
// else runs the checks, once for all the callers that ask meanwhile. The
// run does not end with the request that started it: the others wait on
// it too.
func (c *Checker) deep(ctx context.Context) *result {
	cacheFor := c.CacheFor
	if cacheFor <= 0 {
		cacheFor = 5 * time.Second
	}
	c.mu.Lock()
	last := c.last
	c.mu.Unlock()
	if last != nil && c.now().Sub(last.at) < cacheFor {
		return last
	}
	v, _, _ := c.flight.Do("deep", func() (any, error) {
		res := &result{checks: c.check(context.WithoutCancel(ctx)), at: c.now()}
		c.mu.Lock()
		c.last = res
		c.mu.Unlock()
		return res, nil
	})
	return v.(*result)
}

// check runs the checks in parallel, each with the timeout. Results name
// what failed without details: the details (which could hold a host name)
// go to the log only.
func (c *Checker) check(ctx context.Context) map[string]string {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	results := make(map[string]string, len(c.Checks))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, fn := range c.Checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			result := "ok"
			if err := fn(cctx); err != nil {
				result = "failed"
				c.Logger.ErrorContext(ctx, "health check failed", "dependency", name, "error", err.Error())
			}
			mu.Lock()
			results[name] = result
			mu.Unlock()
		})
	}
	wg.Wait()
	return results
}
