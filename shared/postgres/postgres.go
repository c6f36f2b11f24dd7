// Package postgres is the Postgres store of every function: a pgxpool tuned
// for a Cloud Function serving many concurrent requests, the embedded
// schema migrations, and every SQL statement the functions and mcpadmin
// run, next to that schema: the proxy's lookups, the admin operations, the
// flush of the request log. Its errors wrap tenant.ErrNotFound for what
// does not exist.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"cloud.google.com/go/cloudsqlconn"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"mcpproxy.dev/mcpproxy/shared/keyring"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// Options configure Open. The env tags let a function's configuration
// embed them and fill them with go-envconfig; this package itself never
// reads the environment. A pool_* parameter in the URL (pool_max_conns,
// pool_min_conns, pool_max_conn_lifetime, pool_max_conn_lifetime_jitter,
// pool_max_conn_idle_time, pool_health_check_period), connect_timeout,
// statement_timeout or default_query_exec_mode in the URL wins over the
// matching option, since it is the most specific setting.
type Options struct {
	// URL is a libpq URL or keyword/value string.
	URL string `env:"DATABASE_URL"`

	// MaxConns bounds the connections of one function instance. Warm
	// requests use none (the config cache serves them), so 10 covers the
	// cold misses and the flush of 80 concurrent requests; Postgres
	// max_connections must cover MaxConns times the instance count.
	MaxConns int32 `env:"DB_MAX_CONNS, default=10"`
	// MinConns is 0 so that an idle instance holds no connection and a
	// cold start does not wait for one it may not need.
	MinConns int32 `env:"DB_MIN_CONNS, default=0"`
	// MaxConnLifetime recycles connections so that a failover or a
	// changed credential is picked up; the jitter keeps an instance's
	// connections from all reconnecting at the same moment.
	MaxConnLifetime       time.Duration `env:"DB_MAX_CONN_LIFETIME, default=30m"`
	MaxConnLifetimeJitter time.Duration `env:"DB_MAX_CONN_LIFETIME_JITTER, default=3m"`
	// MaxConnIdleTime closes connections a quiet instance no longer
	// needs, freeing Postgres slots for busy instances.
	MaxConnIdleTime time.Duration `env:"DB_MAX_CONN_IDLE_TIME, default=5m"`
	// HealthCheckPeriod is how often idle connections are checked and
	// the idle and lifetime limits enforced.
	HealthCheckPeriod time.Duration `env:"DB_HEALTH_CHECK_PERIOD, default=1m"`
	// ConnectTimeout bounds one connection attempt, so an unreachable
	// database fails a request quickly instead of holding it.
	ConnectTimeout time.Duration `env:"DB_CONNECT_TIMEOUT, default=5s"`
	// StatementTimeout is set on every connection: no query may hold a
	// connection the other requests are waiting for longer than this.
	StatementTimeout time.Duration `env:"DB_STATEMENT_TIMEOUT, default=30s"`
	// QueryExecMode is pgx's: cache_statement (prepared statements, one
	// round trip per query once warm), or exec / simple_protocol behind
	// PgBouncer in transaction mode and other poolers that do not keep
	// prepared statements.
	QueryExecMode string `env:"DB_QUERY_EXEC_MODE, default=cache_statement"`

	// InstanceConnectionName ("project:region:instance"), when set, makes
	// every connection go through the Cloud SQL Go connector with IAM
	// database authentication: URL then names only the IAM user and the
	// database ("user=SA@PROJECT.iam dbname=mcpproxy"), without host or
	// password.
	InstanceConnectionName string `env:"INSTANCE_CONNECTION_NAME"`
}

// DB is the store. Its methods are safe for concurrent use.
type DB struct {
	// Pool is the pool itself, for tests and local tools that read the
	// tables directly; production SQL belongs in this package's methods.
	Pool   *pgxpool.Pool
	keys   *keyring.Keyring
	dialer *cloudsqlconn.Dialer // set when connecting through Cloud SQL
}

var execModes = map[string]pgx.QueryExecMode{
	"cache_statement": pgx.QueryExecModeCacheStatement,
	"cache_describe":  pgx.QueryExecModeCacheDescribe,
	"describe_exec":   pgx.QueryExecModeDescribeExec,
	"exec":            pgx.QueryExecModeExec,
	"simple_protocol": pgx.QueryExecModeSimpleProtocol,
}

// ParseConfig turns options into a pool configuration without connecting.
func ParseConfig(opts Options) (*pgxpool.Config, error) {
	if opts.URL == "" {
		return nil, errors.New("no database URL (set DATABASE_URL or DATABASE_URL_FILE)")
	}
	cfg, err := pgxpool.ParseConfig(opts.URL)
	if err != nil {
		// pgx's message may quote the URL, password included: keep it out.
		return nil, errors.New("parse database URL: malformed connection string")
	}
	inURL := func(param string) bool {
		return regexp.MustCompile(`(^|[?&\s])` + param + `=`).MatchString(opts.URL)
	}
	if !inURL("pool_max_conns") && opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if !inURL("pool_min_conns") {
		cfg.MinConns = opts.MinConns
	}
	if !inURL("pool_max_conn_lifetime") && opts.MaxConnLifetime > 0 {
		cfg.MaxConnLifetime = opts.MaxConnLifetime
	}
	if !inURL("pool_max_conn_lifetime_jitter") {
		cfg.MaxConnLifetimeJitter = opts.MaxConnLifetimeJitter
	}
	if !inURL("pool_max_conn_idle_time") && opts.MaxConnIdleTime > 0 {
		cfg.MaxConnIdleTime = opts.MaxConnIdleTime
	}
	if !inURL("pool_health_check_period") && opts.HealthCheckPeriod > 0 {
		cfg.HealthCheckPeriod = opts.HealthCheckPeriod
	}
	if !inURL("connect_timeout") && opts.ConnectTimeout > 0 {
		cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	}
	if !inURL("statement_timeout") && opts.StatementTimeout > 0 {
		cfg.ConnConfig.RuntimeParams["statement_timeout"] = fmt.Sprint(opts.StatementTimeout.Milliseconds())
	}
	if !inURL("default_query_exec_mode") && opts.QueryExecMode != "" {
		mode, ok := execModes[opts.QueryExecMode]
		if !ok {
			return nil, fmt.Errorf("unknown query exec mode %q (want cache_statement, cache_describe, describe_exec, exec or simple_protocol)", opts.QueryExecMode)
		}
		cfg.ConnConfig.DefaultQueryExecMode = mode
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "mcp-proxy"
	}
	return cfg, nil
}

// Open creates the pool. It does not connect: with MinConns 0 the first
// query opens the first connection, so a cold start that is served from
// cache never waits for Postgres. keys decrypts upstream credentials; it
// may be nil for work that touches none. With InstanceConnectionName set,
// connections go through the Cloud SQL connector.
func Open(ctx context.Context, opts Options, keys *keyring.Keyring) (*DB, error) {
	cfg, err := ParseConfig(opts)
	if err != nil {
		return nil, err
	}
	if opts.InstanceConnectionName == "" {
		return OpenConfig(ctx, cfg, keys)
	}
	d, err := cloudSQLDialer(ctx)
	if err != nil {
		return nil, fmt.Errorf("cloud sql connector: %w", err)
	}
	UseDialer(cfg, d, opts.InstanceConnectionName)
	db, err := OpenConfig(ctx, cfg, keys)
	if err != nil {
		d.Close()
		return nil, err
	}
	db.dialer = d
	return db, nil
}

// OpenConfig is Open with a pool configuration from ParseConfig, changed
// by the caller (tests set a tracer on it to count queries).
func OpenConfig(ctx context.Context, cfg *pgxpool.Config, keys *keyring.Keyring) (*DB, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	return &DB{Pool: pool, keys: keys}, nil
}

// Close closes the pool; it is safe to call twice.
func (db *DB) Close() {
	if db != nil && db.Pool != nil {
		db.Pool.Close()
	}
	if db != nil && db.dialer != nil {
		db.dialer.Close()
		db.dialer = nil
	}
}

// Stats are figures of the pool at one moment.
type Stats struct {
	// Acquired, Idle and Total count connections: in use, waiting in
	// the pool, and both with those being opened; Max bounds Total.
	Acquired, Idle, Total, Max int32
	// EmptyAcquires counts the acquires that found no idle connection
	// and waited for one, since Open.
	EmptyAcquires int64
	// AcquireWait is the time all acquires took, since Open.
	AcquireWait time.Duration
}

// Stats reports the pool's figures.
func (db *DB) Stats() Stats {
	st := db.Pool.Stat()
	return Stats{Acquired: st.AcquiredConns(), Idle: st.IdleConns(), Total: st.TotalConns(), Max: st.MaxConns(),
		EmptyAcquires: st.EmptyAcquireCount(), AcquireWait: st.AcquireDuration()}
}

// Ping checks that a connection can be had and answers.
func (db *DB) Ping(ctx context.Context) error { return db.Pool.Ping(ctx) }

// validUUID: IDs from a URL path are checked before they reach a query,
// so a malformed one is "not found" rather than a Postgres cast error.
var validUUID = tenant.IsUUID
