package proxy_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/functions/flushlogs"
	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/internal/firestoretest"
	"mcpproxy.dev/mcpproxy/internal/testenv"
	"mcpproxy.dev/mcpproxy/shared/logbuffer"
	"mcpproxy.dev/mcpproxy/shared/postgres"
)

// TestRequestLogReachesPostgres sends requests through the proxy, flushes,
// and checks Postgres: one row per request made with a valid key, the
// aggregates summing to them, last_used_at per key, Firestore emptied.
func TestRequestLogReachesPostgres(t *testing.T) {
	ctx := context.Background()
	store := &logbuffer.Firestore{Client: firestoretest.Client(t, firestoretest.Host(t)), Collection: firestoretest.Collection(t)}
	buf := logbuffer.New(store, logbuffer.Options{BatchEntries: 40, MaxAge: 50 * time.Millisecond})
	e := newEnv(t, proxy.Options{RequestLog: buf})
	_, key2, err := e.DB.CreateAPIKey(ctx, e.Seeded.Instance.ID, "", "second", nil)
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{e.Key, key2}

	type kind struct {
		body, method, tool, status, code string
	}
	kinds := []kind{
		{`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, "tools/list", "", "success", ""},
		{`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"hi"}}}`, "tools/call", "alpha__echo", "success", ""},
		{`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"beta__fail","arguments":{}}}`, "tools/call", "beta__fail", "success", ""},
		{`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"alpha__nope","arguments":{}}}`, "tools/call", "alpha__nope", "error", "-32602"},
	}
	const n = 200
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			k := kinds[i%len(kinds)]
			resp, out := e.Post(t, "/mcp", map[string]string{"Authorization": "Bearer " + keys[i%2], "User-Agent": "log-test/1"}, k.body)
			if resp.StatusCode != http.StatusOK || (k.code == "" && out["error"] != nil) {
				t.Errorf("request %d: %d %v", i, resp.StatusCode, out)
			}
		})
	}
	wg.Wait()
	// Refused keys are not charged to anyone: no entry.
	for range 5 {
		e.Post(t, "/mcp", map[string]string{"Authorization": "Bearer mcp_not-a-key"}, kinds[0].body)
	}
	if err := buf.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := flushlogs.NewFlusher(e.DB, store, flushlogs.Options{}).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != n || rep.Remaining != 0 {
		t.Errorf("flush report %+v; want %d entries and nothing left", rep, n)
	}

	count := func(sql string, args ...any) int {
		t.Helper()
		var c int
		if err := e.DB.Pool.QueryRow(ctx, sql, args...).Scan(&c); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return c
	}
	if got := count(`SELECT count(*) FROM mcp_server_request_logs`); got != n {
		t.Errorf("%d log rows; want %d", got, n)
	}
	if got := count(`SELECT coalesce(sum(request_count), 0)::int FROM mcp_server_request_hourly`); got != n {
		t.Errorf("aggregates count %d; want %d", got, n)
	}
	for _, k := range kinds {
		got := count(`SELECT count(*) FROM mcp_server_request_logs
WHERE method = $1 AND tool_name = $2 AND response_status = $3 AND coalesce(error_code, '') = $4
  AND mcp_server_instance_id = $5 AND user_agent = 'log-test/1' AND duration_ms >= 0 AND input_bytes = $6`,
			k.method, k.tool, k.status, k.code, e.Seeded.Instance.ID, len(k.body))
		if got != n/len(kinds) {
			t.Errorf("%s %s %s: %d rows; want %d", k.method, k.tool, k.status, got, n/len(kinds))
		}
		sum := count(`SELECT coalesce(sum(request_count), 0)::int FROM mcp_server_request_hourly
WHERE method = $1 AND tool_name = $2 AND response_status = $3`, k.method, k.tool, k.status)
		if sum != n/len(kinds) {
			t.Errorf("%s %s %s: aggregates say %d; want %d", k.method, k.tool, k.status, sum, n/len(kinds))
		}
	}
	if got := count(`SELECT count(*) FROM mcp_server_request_logs WHERE method = 'tools/call' AND response_status = 'success' AND transport_type <> 'STREAMABLE_HTTPS'`); got != 0 {
		t.Errorf("%d calls without their upstream's transport", got)
	}
	if got := count(`SELECT count(DISTINCT api_key_id) FROM mcp_server_request_logs`); got != 2 {
		t.Errorf("rows name %d keys; want 2", got)
	}
	if got := count(`SELECT count(*) FROM mcp_api_keys k WHERE k.last_used_at IS DISTINCT FROM
    (SELECT max(created_at) FROM mcp_server_request_logs l WHERE l.api_key_id = k.id)`); got != 0 {
		t.Errorf("%d keys whose last_used_at is not their latest use", got)
	}
	for _, secret := range keys {
		if got := count(`SELECT count(*) FROM mcp_server_request_logs l WHERE strpos(l::text, $1) > 0`, secret); got != 0 {
			t.Errorf("a log row holds an API key")
		}
	}
	if left, err := store.Count(ctx); err != nil || left != 0 {
		t.Errorf("%d batch documents left (%v)", left, err)
	}
}

// TestProcessFigures checks the periodic figures line: pool, caches,
// request log, memory.
func TestProcessFigures(t *testing.T) {
	store := &logbuffer.Firestore{Client: firestoretest.Client(t, firestoretest.Host(t)), Collection: firestoretest.Collection(t)}
	var e *testenv.Env
	e = newEnv(t, proxy.Options{RequestLog: logbuffer.New(store, logbuffer.Options{}),
		FiguresInterval: 20 * time.Millisecond, DBStats: func() postgres.Stats { return e.DB.Stats() }})
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	for range 3 {
		e.Post(t, "/mcp", nil, body)
		time.Sleep(30 * time.Millisecond)
	}
	logs := e.Logs.String()
	for _, want := range []string{`"message":"process figures"`, `"dbPool":{"acquired":0,`, `"max":`,
		`"keyCache":{"size":1,`, `"hitRate":`, `"requestLog":{"depth":`, `"heapBytes":`, `"goroutines":`} {
		if !strings.Contains(logs, want) {
			t.Errorf("figures lack %s in %s", want, logs)
		}
	}
}
