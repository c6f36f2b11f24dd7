package health

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"cloud.google.com/go/firestore"

	"mcpproxy.dev/mcpproxy/shared/logging"
	"mcpproxy.dev/mcpproxy/shared/pgtest"
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
