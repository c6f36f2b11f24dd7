package proxy

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/upstream"
)

// fakeStore serves one key and one instance without upstreams: enough for
// the request decoding path, which is what the fuzz target exercises.
type fakeStore struct{}

const fuzzKey = "mcpk_fuzz-key-0000000000000000000000000000000000"

func (fakeStore) LookupAPIKey(_ context.Context, hash [32]byte) (*tenant.Key, error) {
	if hash != tenant.HashKey(fuzzKey) {
		return nil, tenant.ErrNotFound
	}
	return &tenant.Key{ID: "k", InstanceID: "i", Active: true}, nil
}

func (fakeStore) LoadInstanceConfig(context.Context, string) (*tenant.Instance, error) {
	return &tenant.Instance{ID: "i", Name: "fuzz"}, nil
}

func (fakeStore) LookupOAuthGrant(context.Context, string) (*tenant.Grant, error) {
	return nil, tenant.ErrNotFound
}

// FuzzRequest sends arbitrary bodies and protocol headers through the
// whole handler: it must never panic, and must always answer 202 or a
// JSON-RPC object (or batch).
func FuzzRequest(f *testing.F) {
	for _, seed := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,
		`{"jsonrpc":"2.0","id":"a","method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}`,
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x__y","arguments":{"a":[1,2,{"b":null}]}}}`,
		`{"jsonrpc":"2.0","id":3,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"}]`,
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`,
		`{"jsonrpc":"2.0","id":null,"result":{}}`,
		`[]`, `{}`, `null`, `"x"`, `{"jsonrpc":"2.0","id":{},"method":"ping"}`, "\x00\xff",
	} {
		f.Add(seed, "")
		f.Add(seed, "2026-07-28")
	}
	h := New(fakeStore{}, upstream.NewPool(upstream.PoolOptions{}), slog.New(slog.NewTextHandler(io.Discard, nil)), Options{MaxBodyBytes: 1 << 16})
	f.Fuzz(func(t *testing.T, body, version string) {
		r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", "Bearer "+fuzzKey)
		if version != "" {
			r.Header.Set("MCP-Protocol-Version", version)
			r.Header.Set("Mcp-Method", "tools/list")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code == http.StatusAccepted {
			if w.Body.Len() != 0 {
				t.Fatalf("202 with a body: %q", w.Body)
			}
			return
		}
		var out any
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("HTTP %d answer is not JSON: %q", w.Code, w.Body)
		}
		check := func(m any) {
			obj, ok := m.(map[string]any)
			if !ok || obj["jsonrpc"] != "2.0" || (obj["result"] == nil) == (obj["error"] == nil) {
				t.Fatalf("HTTP %d answer is not one JSON-RPC response: %q", w.Code, w.Body)
			}
		}
		if list, ok := out.([]any); ok {
			for _, m := range list {
				check(m)
			}
			return
		}
		check(out)
	})
}

// FuzzToolNames checks the naming rules on arbitrary upstream tool names:
// exposed names are valid and distinct, and a valid name stays exactly
// namespace__tool and splits back.
func FuzzToolNames(f *testing.F) {
	f.Add("search", "do/thing", "Git Hub")
	f.Add("a__b", "a", "x")
	f.Add(strings.Repeat("t", 200), "é", "")
	f.Fuzz(func(t *testing.T, a, b, server string) {
		ns := namespaces([]tenant.Upstream{{Name: server}})[0]
		if ns == "" || strings.Contains(ns, separator) || len(ns) > tenant.MaxNamespace {
			t.Fatalf("namespace %q of %q", ns, server)
		}
		tools := []string{a, b}
		if a == b {
			tools = tools[:1]
		}
		names := exposedNames(ns+separator, tools)
		seen := map[string]bool{}
		for i, n := range names {
			if !validToolName(n) {
				t.Fatalf("exposed name %q of %q is invalid", n, tools[i])
			}
			if seen[n] {
				t.Fatalf("exposed names collide: %q", names)
			}
			seen[n] = true
			if tools[i] != "" && validToolName(ns+separator+tools[i]) && n != ns+separator+tools[i] {
				t.Fatalf("valid name %q exposed as %q", ns+separator+tools[i], n)
			}
			if gotNS, _, ok := splitToolName(n); !ok || gotNS != ns {
				t.Fatalf("exposed name %q splits to namespace %q; want %q", n, gotNS, ns)
			}
		}
	})
}
