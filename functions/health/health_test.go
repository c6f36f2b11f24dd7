package health

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"mcpproxy.dev/mcpproxy/internal/pgtest"
	"mcpproxy.dev/mcpproxy/shared/logging"
	"mcpproxy.dev/mcpproxy/shared/postgres"
)

func realFirestore(t *testing.T) *firestore.Client {
	t.Helper()
	if os.Getenv("FIRESTORE_EMULATOR_HOST") == "" {
		t.Fatal("FIRESTORE_EMULATOR_HOST is not set: run the tests with `make test`")
	}
	c, err := firestore.NewClient(context.Background(), "health-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func serve(t *testing.T, c *Checker, target string) (*httptest.ResponseRecorder, Response, string) {
	t.Helper()
	var logs bytes.Buffer
	c.Logger = logging.New(&logs, nil)
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.Header.Set("User-Agent", "GoogleHC/1.0")
	r.Header.Set("X-Forwarded-For", "198.51.100.66, 203.0.113.7") // a spoofed hop, then Google's
	w := httptest.NewRecorder()
	c.ServeHTTP(w, r)
	var resp Response
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatalf("body is not JSON: %q", w.Body.String())
	}
	return w, resp, logs.String()
}

func checks(t *testing.T, db *postgres.DB) *Checker {
	fs := realFirestore(t)
	return &Checker{Checks: map[string]func(context.Context) error{
		"postgres":  db.Ping,
		"firestore": func(ctx context.Context) error { return PingFirestore(ctx, fs) },
	}}
}

func TestLiveness(t *testing.T) {
	w, resp, logs := serve(t, &Checker{}, "/health")
	if w.Code != http.StatusOK || resp.Status != "ok" || resp.Version == "" || resp.Timestamp.IsZero() {
		t.Errorf("got %d %+v; want 200 ok with version and timestamp", w.Code, resp)
	}
	if resp.Checks != nil {
		t.Errorf("liveness ran checks: %v", resp.Checks)
	}
	for _, want := range []string{`"userAgent":"GoogleHC/1.0"`, `"clientIp":"203.0.113.7"`, `"severity":"INFO"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log line %q lacks %s", logs, want)
		}
	}
}

func TestDeep(t *testing.T) {
	db := pgtest.Open(t, nil)
	w, resp, _ := serve(t, checks(t, db), "/health?deep=1")
	if w.Code != http.StatusOK || resp.Checks["postgres"] != "ok" || resp.Checks["firestore"] != "ok" {
		t.Errorf("got %d %+v; want 200 with both checks ok", w.Code, resp)
	}
}

func TestDeepPostgresDown(t *testing.T) {
	secretURL := "postgres://user:hunter2@127.0.0.1:1/app?connect_timeout=1"
	db, err := postgres.Open(context.Background(), postgres.Options{URL: secretURL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	w, resp, logs := serve(t, checks(t, db), "/health?deep=1")
	if w.Code != http.StatusServiceUnavailable || resp.Status != "unavailable: postgres" || resp.Checks["firestore"] != "ok" {
		t.Errorf("got %d %+v; want 503 naming postgres only", w.Code, resp)
	}
	if strings.Contains(w.Body.String(), "hunter2") || strings.Contains(logs, "hunter2") {
		t.Error("the password reached the answer or the log")
	}
}

// counted wraps the real checks, counting each run and holding every
// run until release is closed, so that requests pile up behind it.
func counted(t *testing.T, db *postgres.DB, release <-chan struct{}) (map[string]func(context.Context) error, *atomic.Int64, *atomic.Int64) {
	real := checks(t, db).Checks
	var pg, fs atomic.Int64
	return map[string]func(context.Context) error{
		"postgres": func(ctx context.Context) error {
			pg.Add(1)
			<-release
			return real["postgres"](ctx)
		},
		"firestore": func(ctx context.Context) error {
			fs.Add(1)
			<-release
			return real["firestore"](ctx)
		},
	}, &pg, &fs
}

// TestDeepFlood: a burst of deep checks, then more right after, reach
// Postgres and Firestore once: one check runs at a time and its result
// serves the callers of a short while.
func TestDeepFlood(t *testing.T) {
	db := pgtest.Open(t, nil)
	release := make(chan struct{})
	fns, pg, fs := counted(t, db, release)
	c := &Checker{Checks: fns, Logger: logging.New(io.Discard, nil)}
	var wg sync.WaitGroup
	codes := make(chan int, 40)
	deep := func() {
		w := httptest.NewRecorder()
		c.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/health?deep=1", nil))
		codes <- w.Code
	}
	for range 20 {
		wg.Go(deep)
	}
	time.Sleep(300 * time.Millisecond) // the burst waits on the first check
	close(release)
	wg.Wait()
	for range 20 {
		deep()
	}
	close(codes)
	for code := range codes {
		if code != http.StatusOK {
			t.Errorf("a deep check answered %d; want 200", code)
		}
	}
	if pg.Load() != 1 || fs.Load() != 1 {
		t.Errorf("40 deep checks pinged Postgres %d and Firestore %d times; want once each", pg.Load(), fs.Load())
	}
}

// TestDeepCacheExpires: the result answers for CacheFor, then the checks
// run again; the answer says when its checks ran.
func TestDeepCacheExpires(t *testing.T) {
	db := pgtest.Open(t, nil)
	release := make(chan struct{})
	close(release)
	fns, pg, _ := counted(t, db, release)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := &Checker{Checks: fns, CacheFor: 5 * time.Second, Now: func() time.Time { return now }}
	for _, step := range []struct {
		advance time.Duration
		runs    int64
		ranAt   time.Time
	}{
		{0, 1, now},
		{4 * time.Second, 1, now},
		{2 * time.Second, 2, now.Add(6 * time.Second)},
	} {
		now = now.Add(step.advance)
		w, resp, _ := serve(t, c, "/health?deep=1")
		if w.Code != http.StatusOK || pg.Load() != step.runs {
			t.Errorf("at +%s: %d, %d runs; want 200 and %d runs", now.Sub(step.ranAt), w.Code, pg.Load(), step.runs)
		}
		if resp.CheckedAt == nil || !resp.CheckedAt.Equal(step.ranAt) {
			t.Errorf("checkedAt %v; want %v", resp.CheckedAt, step.ranAt)
		}
	}
}
