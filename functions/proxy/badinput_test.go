package proxy_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/functions/proxy"
)

func TestBadInput(t *testing.T) {
	e := newEnv(t, proxy.Options{MaxBodyBytes: 1024})
	auth := "Bearer " + e.key
	const list = `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	tests := []struct {
		name   string
		path   string
		header map[string]string
		body   string
		status int
		code   int
	}{
		{"invalid JSON", "/mcp", nil, `{"jsonrpc":"2.0",`, 400, -32700},
		{"not JSON-RPC 2.0", "/mcp", nil, `{"jsonrpc":"1.0","id":1,"method":"ping"}`, 400, -32600},
		{"missing method", "/mcp", nil, `{"jsonrpc":"2.0","id":1,"params":{}}`, 400, -32600},
		{"empty method", "/mcp", nil, `{"jsonrpc":"2.0","id":1,"method":""}`, 400, -32600},
		{"batch on 2025-06-18", "/mcp", map[string]string{"MCP-Protocol-Version": "2025-06-18"}, "[" + list + "]", 400, -32600},
		{"unknown method", "/mcp", nil, `{"jsonrpc":"2.0","id":1,"method":"tools/explode"}`, 200, -32601},
		{"bad params", "/mcp", nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}`, 200, -32602},
		{"tool name missing", "/mcp", nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}`, 200, -32602},
		{"invalid cursor", "/mcp", nil, `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"x"}}`, 200, -32602},
		{"body over the limit", "/mcp", nil, `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"` + strings.Repeat("x", 2000) + `"}}`, 413, -32600},
		{"wrong content type", "/mcp", map[string]string{"Content-Type": "text/plain"}, list, 415, -32600},
		{"not acceptable", "/mcp", map[string]string{"Accept": "text/html"}, list, 406, -32600},
		{"unsupported protocol version", "/mcp", map[string]string{"MCP-Protocol-Version": "2024-01-01"}, list, 400, -32600},
		{"disallowed origin", "/mcp", map[string]string{"Origin": "https://evil.example.com"}, list, 403, -32003},
		{"foreign host on loopback", "/mcp", map[string]string{"Host": "evil.example.com"}, list, 403, -32003},
		{"missing key", "/mcp", map[string]string{"Authorization": ""}, list, 401, -32001},
		{"unknown key", "/mcp", map[string]string{"Authorization": "Bearer mcpk_not-a-real-key-000000000000000000000000"}, list, 401, -32001},
		{"basic auth is not a key", "/mcp", map[string]string{"Authorization": "Basic dXNlcjpwYXNz"}, list, 401, -32001},
		{"another instance's path", "/mcp/00000000-0000-0000-0000-000000000000", nil, list, 403, -32003},
		{"unknown namespace", "/mcp/" + e.inst.ID + "/gamma", nil, list, 404, -32600},
		{"unknown path", "/v1/chat", nil, list, 404, -32600},
		{"2026: Mcp-Method missing", "/mcp", map[string]string{"MCP-Protocol-Version": "2026-07-28"},
			`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`, 400, -32020},
		{"2026: header and _meta differ", "/mcp", map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"},
			`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25","io.modelcontextprotocol/clientCapabilities":{}}}}`, 400, -32020},
		{"2026: no client capabilities", "/mcp", map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"},
			`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, 400, -32602},
		{"2026: unsupported version", "/mcp", map[string]string{"MCP-Protocol-Version": "v999.0.0", "Mcp-Method": "tools/list"},
			`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"v999.0.0","io.modelcontextprotocol/clientCapabilities":{}}}}`, 400, -32022},
		{"2026: removed method", "/mcp", map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "ping"},
			`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`, 404, -32601},
		{"2026: Mcp-Name differs", "/mcp", map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "alpha__add"},
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha__echo","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`, 400, -32020},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header := map[string]string{"Authorization": auth}
			for k, v := range tt.header {
				header[k] = v
			}
			resp, out := e.post(t, tt.path, header, tt.body)
			if resp.StatusCode != tt.status || rpcCode(out) != tt.code {
				t.Errorf("got HTTP %d code %d (%v); want HTTP %d code %d", resp.StatusCode, rpcCode(out), out, tt.status, tt.code)
			}
			if out["jsonrpc"] != "2.0" {
				t.Errorf("answer is not a JSON-RPC object: %v", out)
			}
			if tt.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a Bearer WWW-Authenticate: %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
	// The proxy still serves after all of that.
	resp, out := e.post(t, "/mcp", map[string]string{"Authorization": auth}, list)
	if resp.StatusCode != 200 || out["result"] == nil {
		t.Errorf("after bad input: HTTP %d %v", resp.StatusCode, out)
	}
}

func TestHTTPMethods(t *testing.T) {
	e := newEnv(t, proxy.Options{AllowedOrigins: []string{"https://app.example.com"}})
	for _, m := range []string{http.MethodGet, http.MethodDelete, http.MethodPut} {
		req, _ := http.NewRequest(m, e.proxy.URL+"/mcp", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 || !strings.Contains(resp.Header.Get("Allow"), "POST") {
			t.Errorf("%s: HTTP %d Allow %q; want 405 with Allow: POST", m, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	req, _ := http.NewRequest(http.MethodOptions, e.proxy.URL+"/mcp", nil)
	req.Header.Set("Origin", "https://app.example.com")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight: HTTP %d %v", resp.StatusCode, resp.Header)
	}
	// Notifications are accepted without an answer.
	r, _ := e.post(t, "/mcp", map[string]string{"Authorization": "Bearer " + e.key}, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	if r.StatusCode != 202 {
		t.Errorf("notification: HTTP %d; want 202", r.StatusCode)
	}
	// A 2025-03-26 batch is answered as a batch.
	req, _ = http.NewRequest(http.MethodPost, e.proxy.URL+"/mcp", strings.NewReader(`[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":2,"method":"nope"}]`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+e.key)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var batch []map[string]any
	decodeJSON(t, resp, &batch)
	if resp.StatusCode != 200 || len(batch) != 2 || batch[0]["result"] == nil || rpcCode(batch[1]) != -32601 {
		t.Errorf("batch: HTTP %d %v; want two answers, ping ok and -32601", resp.StatusCode, batch)
	}
}

func TestKeyStates(t *testing.T) {
	e := newEnv(t, proxy.Options{})
	ctx := context.Background()
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	revokedRow, revoked, _ := e.db.CreateAPIKey(ctx, e.inst.ID, "", "", nil)
	e.db.RevokeAPIKey(ctx, revokedRow.ID)
	past := time.Now().Add(-time.Hour)
	_, expired, _ := e.db.CreateAPIKey(ctx, e.inst.ID, "", "", &past)
	for name, tc := range map[string]struct {
		key, want string
	}{
		"revoked": {revoked, "revoked"},
		"expired": {expired, "expired"},
	} {
		resp, out := e.post(t, "/mcp", map[string]string{"Authorization": "Bearer " + tc.key}, list)
		msg, _ := out["error"].(map[string]any)["message"].(string)
		if resp.StatusCode != 401 || !strings.Contains(msg, tc.want) {
			t.Errorf("%s key: HTTP %d %q; want 401 saying %s", name, resp.StatusCode, msg, tc.want)
		}
	}
	// X-API-Key works like Authorization: Bearer.
	resp, out := e.post(t, "/mcp", map[string]string{"Authorization": "", "X-API-Key": e.key}, list)
	if resp.StatusCode != 200 || out["result"] == nil {
		t.Errorf("X-API-Key: HTTP %d %v", resp.StatusCode, out)
	}
	// A deleted instance locks its keys out once the cache forgets it.
	if err := e.db.DeleteInstance(ctx, e.inst.ID); err != nil {
		t.Fatal(err)
	}
	e2 := newEnvSharing(t, e)
	resp, _ = e2.post(t, "/mcp", map[string]string{"Authorization": "Bearer " + e.key}, list)
	if resp.StatusCode != 401 {
		t.Errorf("deleted instance: HTTP %d; want 401", resp.StatusCode)
	}
	// Failed authentications are logged with the prefix, never the key.
	logs := e.logs.String()
	if !strings.Contains(logs, "authentication failed") || !strings.Contains(logs, revoked[:12]) {
		t.Error("failed authentication not logged with the key prefix")
	}
	for _, k := range []string{revoked, expired, e.key} {
		if strings.Contains(logs, k) || strings.Contains(e2.logs.String(), k) {
			t.Fatal("a key reached the log")
		}
	}
}

func TestQueryCounts(t *testing.T) {
	e := newEnv(t, proxy.Options{})
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	call := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"hi"}}}`
	header := map[string]string{"Authorization": "Bearer " + e.key}

	// 80 concurrent first requests for one cold instance.
	e.counter.Reset()
	var wg sync.WaitGroup
	for range 80 {
		wg.Go(func() {
			resp, out := e.post(t, "/mcp", header, list)
			if resp.StatusCode != 200 || out["result"] == nil {
				t.Errorf("cold request: HTTP %d %v", resp.StatusCode, out)
			}
		})
	}
	wg.Wait()
	keyQueries, configQueries := 0, 0
	for _, q := range e.counter.Queries() {
		switch {
		case strings.Contains(q, "FROM mcp_api_keys"):
			keyQueries++
		case strings.Contains(q, "FROM user_mcp_server_instances"):
			configQueries++
		}
	}
	if keyQueries != 1 || configQueries != 1 || e.counter.Count() != 2 {
		t.Errorf("80 cold requests made %d key and %d config queries (%d in all); want exactly 1 and 1", keyQueries, configQueries, e.counter.Count())
	}

	// A warm tools/call touches no database.
	e.post(t, "/mcp", header, call)
	e.counter.Reset()
	for range 20 {
		resp, out := e.post(t, "/mcp", header, call)
		if resp.StatusCode != 200 || out["result"] == nil {
			t.Fatalf("warm call: HTTP %d %v", resp.StatusCode, out)
		}
	}
	if n := e.counter.Count(); n != 0 {
		t.Errorf("20 warm tools/call made %d queries; want 0: %q", n, e.counter.Queries())
	}
}
