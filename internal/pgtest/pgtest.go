// Package pgtest gives integration tests a fresh, migrated database on the
// real Postgres named by DATABASE_URL (make test starts one). A test that
// cannot reach Postgres fails; it never skips.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"mcpproxy.dev/mcpproxy/shared/keyring"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/postgres/migrate"
)

// URL returns DATABASE_URL or fails the test.
func URL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("DATABASE_URL")
	if u == "" {
		t.Fatal("DATABASE_URL is not set: run the tests with `make test`, which starts Postgres and the Firestore emulator")
	}
	return u
}

// KeyringSpec is the MCP_ENCRYPTION_KEY of TestKeyring, for a proxy
// process that a test starts over its database; never use its key
// elsewhere. The key is "test-only-key-32-bytes-long-0000".
const KeyringSpec = "test:dGVzdC1vbmx5LWtleS0zMi1ieXRlcy1sb25nLTAwMDA="

// TestKeyring is a fixed keyring for tests (KeyringSpec).
func TestKeyring(t testing.TB) *keyring.Keyring {
	t.Helper()
	k, err := keyring.Parse(KeyringSpec)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// NewDatabase creates an empty database for the test, drops it when the
// test ends, and returns its URL.
func NewDatabase(t testing.TB) string {
	t.Helper()
	base := URL(t)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to Postgres at DATABASE_URL: %v", err)
	}
	defer admin.Close(ctx)
	var b [6]byte
	rand.Read(b[:])
	name := "test_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), base)
		if err != nil {
			t.Errorf("drop test database: %v", err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database: %v", err)
		}
	})
	return withDatabase(t, base, name)
}

func withDatabase(t testing.TB, raw, name string) string {
	t.Helper()
	if strings.Contains(raw, "://") {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("parse DATABASE_URL: %v", err)
		}
		u.Path = "/" + name
		return u.String()
	}
	return raw + " dbname=" + name
}

// Open returns a store on a fresh migrated database with TestKeyring,
// closed when the test ends. A non-nil tracer observes every query.
func Open(t testing.TB, tracer pgx.QueryTracer) *postgres.DB {
	t.Helper()
	cfg, err := postgres.ParseConfig(postgres.Options{URL: NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	if tracer != nil {
		cfg.ConnConfig.Tracer = tracer
	}
	db, err := postgres.OpenConfig(context.Background(), cfg, TestKeyring(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := migrate.Up(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	return db
}

// Counter is a pgx tracer that counts the queries sent.
type Counter struct {
	n   atomic.Int64
	mu  sync.Mutex
	sql []string
}

// TraceQueryStart implements pgx.QueryTracer.
func (c *Counter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	c.mu.Lock()
	c.sql = append(c.sql, data.SQL)
	c.mu.Unlock()
	return ctx
}

// TraceQueryEnd implements pgx.QueryTracer.
func (c *Counter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// Reset sets the count to zero.
func (c *Counter) Reset() {
	c.n.Store(0)
	c.mu.Lock()
	c.sql = nil
	c.mu.Unlock()
}

// Count is the number of queries since the last reset.
func (c *Counter) Count() int64 { return c.n.Load() }

// Queries are the SQL texts since the last reset.
func (c *Counter) Queries() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.sql...)
}
