package proxy_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// blocker is an upstream with one tool, block, that runs until it is
// cancelled or its time is up, and reports both.
type blocker struct {
	started   chan string // the call's tag, when it starts
	cancelled chan string // the call's tag, when its context ends early
	finished  chan string // the call's tag, when its time is up
}

type blockIn struct {
	Tag string `json:"tag"`
	MS  int    `json:"ms"`
}

func newBlocker() (*blocker, *mcp.Server) {
	b := &blocker{started: make(chan string, 8), cancelled: make(chan string, 8), finished: make(chan string, 8)}
	s := mcp.NewServer(&mcp.Implementation{Name: "blocker", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "block"}, func(ctx context.Context, _ *mcp.CallToolRequest, in blockIn) (*mcp.CallToolResult, any, error) {
		b.started <- in.Tag
		select {
		case <-ctx.Done():
			b.cancelled <- in.Tag
			return nil, nil, ctx.Err()
		case <-time.After(time.Duration(in.MS) * time.Millisecond):
			b.finished <- in.Tag
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "done"}}}, nil, nil
		}
	})
	return b, s
}

func receive(t *testing.T, ch chan string, what string) string {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		return ""
	}
}

// TestCancellation: a call the client gives up on, by closing its
// request or by notifications/cancelled, is cancelled upstream, over
// Streamable HTTP (the proxy's own POST) and over SSE (the SDK session);
// a cancellation that could mean two calls is ignored.
func TestCancellation(t *testing.T) {
	e := newEnv(t, proxy.Options{})
	ctx := context.Background()
	b, server := newBlocker()
	direct := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil))
	sse := httptest.NewServer(mcp.NewSSEHandler(func(*http.Request) *mcp.Server { return server }, nil))
	t.Cleanup(func() {
		for _, s := range []*httptest.Server{direct, sse} {
			s.CloseClientConnections()
			s.Close()
		}
	})
	key := e.AddInstance(t, "cancel", []postgres.Server{
		{Name: "direct", Transport: tenant.TransportStreamableHTTP, URL: direct.URL},
		{Name: "legacy", Transport: tenant.TransportSSE, URL: sse.URL},
	}, []string{"block"})
	post := func(ctx context.Context, body string) (int, string, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.Proxy.URL+"/mcp", bytes.NewBufferString(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("MCP-Protocol-Version", "2025-11-25")
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out), nil
	}
	call := func(id int, ns, tag string, ms int) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"%s__block","arguments":{"tag":%q,"ms":%d}}}`, id, ns, tag, ms)
	}
	cancelNote := func(id int) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":%d,"reason":"user gave up"}}`, id)
	}

	for _, ns := range []string{"direct", "legacy"} {
		t.Run(ns+"/request gone", func(t *testing.T) {
			cctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { _, _, err := post(cctx, call(1, ns, ns+"-gone", 60000)); done <- err }()
			if tag := receive(t, b.started, "the call to start"); tag != ns+"-gone" {
				t.Fatalf("started %q", tag)
			}
			cancel()
			<-done
			if tag := receive(t, b.cancelled, "the upstream to see the cancellation"); tag != ns+"-gone" {
				t.Errorf("cancelled %q", tag)
			}
		})
		t.Run(ns+"/notifications/cancelled", func(t *testing.T) {
			type answer struct {
				status int
				body   string
			}
			done := make(chan answer, 1)
			go func() { status, body, _ := post(ctx, call(41, ns, ns+"-note", 60000)); done <- answer{status, body} }()
			if tag := receive(t, b.started, "the call to start"); tag != ns+"-note" {
				t.Fatalf("started %q", tag)
			}
			if status, _, err := post(ctx, cancelNote(41)); err != nil || status != http.StatusAccepted {
				t.Fatalf("notifications/cancelled answered %d, %v; want 202", status, err)
			}
			if tag := receive(t, b.cancelled, "the upstream to see the cancellation"); tag != ns+"-note" {
				t.Errorf("cancelled %q", tag)
			}
			select {
			case a := <-done:
				if a.status != http.StatusOK {
					t.Errorf("the cancelled call's request answered %d %s", a.status, a.body)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the cancelled call's request did not end")
			}
		})
	}

	t.Run("ambiguous", func(t *testing.T) {
		var wg sync.WaitGroup
		for _, tag := range []string{"a", "b"} {
			wg.Go(func() { post(ctx, call(7, "direct", "same-id-"+tag, 1500)) })
		}
		receive(t, b.started, "the first call to start")
		receive(t, b.started, "the second call to start")
		if status, _, err := post(ctx, cancelNote(7)); err != nil || status != http.StatusAccepted {
			t.Fatalf("notifications/cancelled answered %d, %v", status, err)
		}
		wg.Wait()
		for range 2 {
			receive(t, b.finished, "both calls to finish uncancelled")
		}
		select {
		case tag := <-b.cancelled:
			t.Errorf("a cancellation that named two calls cancelled %s", tag)
		default:
		}
	})
}
