package upstream_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"mcpproxy.dev/mcpproxy/internal/hostile"
	"mcpproxy.dev/mcpproxy/shared/upstream"
)

// TestNoCompression: the pool asks upstreams for no content encoding, so
// that it never spends CPU inflating what an upstream sends (a small
// gzip body may inflate to the whole message limit); an upstream that
// compresses its answer anyway fails the call instead of being inflated.
func TestNoCompression(t *testing.T) {
	var mu sync.Mutex
	var encodings []string
	h := &hostile.Server{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		encodings = append(encodings, r.Header.Get("Accept-Encoding"))
		mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		var req struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		json.Unmarshal(body, &req)
		if req.Method != "tools/call" {
			r.Body = io.NopCloser(bytes.NewReader(body))
			h.ServeHTTP(w, r)
			return
		}
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		fmt.Fprintf(zw, `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"%s"}]}}`, req.ID, strings.Repeat("z", 100<<10))
		zw.Close()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", fmt.Sprint(gz.Len()))
		w.Write(gz.Bytes())
	}))
	t.Cleanup(srv.Close)
	p := upstream.NewPool(upstream.PoolOptions{})
	t.Cleanup(p.Close)
	res, err := p.CallTool(context.Background(), hostileUpstream(srv.URL), upstream.Call{Name: "echo", Arguments: args(nil)})
	if err == nil {
		var out bytes.Buffer
		_, err = res.WriteTo(&out)
		res.Close()
		if err == nil {
			t.Fatalf("a gzip answer the pool did not ask for was relayed (%d bytes): it was inflated", out.Len())
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(encodings) == 0 {
		t.Fatal("the upstream got no request")
	}
	for _, e := range encodings {
		if e != "" {
			t.Errorf("a request to the upstream asked for Accept-Encoding %q; want none", e)
		}
	}
}
