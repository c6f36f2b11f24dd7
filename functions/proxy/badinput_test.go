package proxy_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/internal/testenv"
)

func TestKeyStates(t *testing.T) {
	e := newEnv(t, proxy.Options{})
	ctx := context.Background()
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	revokedRow, revoked, _ := e.DB.CreateAPIKey(ctx, e.Seeded.Instance.ID, "", "", nil)
	e.DB.RevokeAPIKey(ctx, revokedRow.ID)
	past := time.Now().Add(-time.Hour)
	_, expired, _ := e.DB.CreateAPIKey(ctx, e.Seeded.Instance.ID, "", "", &past)
	for name, tc := range map[string]struct {
		key, want string
	}{
		"revoked": {revoked, "revoked"},
		"expired": {expired, "expired"},
	} {
		resp, out := e.Post(t, "/mcp", map[string]string{"Authorization": "Bearer " + tc.key}, list)
		msg, _ := out["error"].(map[string]any)["message"].(string)
		if resp.StatusCode != 401 || !strings.Contains(msg, tc.want) {
			t.Errorf("%s key: HTTP %d %q; want 401 saying %s", name, resp.StatusCode, msg, tc.want)
		}
	}
	// A deleted instance locks its keys out once the cache forgets it.
	if err := e.DB.DeleteInstance(ctx, e.Seeded.Instance.ID); err != nil {
		t.Fatal(err)
	}
	e2 := e.Process(t, testenv.Options{})
	resp, _ := e2.Post(t, "/mcp", nil, list)
	if resp.StatusCode != 401 {
		t.Errorf("deleted instance: HTTP %d; want 401", resp.StatusCode)
	}
	// Failed authentications are logged with the prefix, never the key.
	logs := e.Logs.String()
	if !strings.Contains(logs, "authentication failed") || !strings.Contains(logs, revoked[:12]) {
		t.Error("failed authentication not logged with the key prefix")
	}
	for _, k := range []string{revoked, expired, e.Key} {
		if strings.Contains(logs, k) || strings.Contains(e2.Logs.String(), k) {
			t.Fatal("a key reached the log")
		}
	}
}

func TestQueryCounts(t *testing.T) {
	e := newEnv(t, proxy.Options{})
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	call := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"hi"}}}`

	// 80 concurrent first requests for one cold instance.
	e.Queries.Reset()
	var wg sync.WaitGroup
	for range 80 {
		wg.Go(func() {
			resp, out := e.Post(t, "/mcp", nil, list)
			if resp.StatusCode != 200 || out["result"] == nil {
				t.Errorf("cold request: HTTP %d %v", resp.StatusCode, out)
			}
		})
	}
	wg.Wait()
	keyQueries, configQueries := 0, 0
	for _, q := range e.Queries.Queries() {
		switch {
		case strings.Contains(q, "FROM mcp_api_keys"):
			keyQueries++
		case strings.Contains(q, "FROM user_mcp_server_instances"):
			configQueries++
		}
	}
	if keyQueries != 1 || configQueries != 1 || e.Queries.Count() != 2 {
		t.Errorf("80 cold requests made %d key and %d config queries (%d in all); want exactly 1 and 1", keyQueries, configQueries, e.Queries.Count())
	}

	// A warm tools/call touches no database.
	e.Post(t, "/mcp", nil, call)
	e.Queries.Reset()
	for range 20 {
		resp, out := e.Post(t, "/mcp", nil, call)
		if resp.StatusCode != 200 || out["result"] == nil {
			t.Fatalf("warm call: HTTP %d %v", resp.StatusCode, out)
		}
	}
	if n := e.Queries.Count(); n != 0 {
		t.Errorf("20 warm tools/call made %d queries; want 0: %q", n, e.Queries.Queries())
	}
}
