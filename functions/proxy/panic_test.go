package proxy_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/functions/flushlogs"
	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/internal/firestoretest"
	"mcpproxy.dev/mcpproxy/shared/logbuffer"
)

// TestPanicLogged: a request whose handling panics after its key was
// checked, outside any method, is answered 500, and its log line and
// request log entry still name the key and instance it is charged to.
// The clock panics when the front reads it for a message: it stands for
// any panic between authentication and the answer.
func TestPanicLogged(t *testing.T) {
	ctx := context.Background()
	store := &logbuffer.Firestore{Client: firestoretest.Client(t, firestoretest.Host(t)), Collection: firestoretest.Collection(t)}
	buf := logbuffer.New(store, logbuffer.Options{BatchEntries: 40, MaxAge: 50 * time.Millisecond})
	e := newEnv(t, proxy.Options{RequestLog: buf, Now: func() time.Time {
		if pc, _, _, ok := runtime.Caller(1); ok && strings.HasSuffix(runtime.FuncForPC(pc).Name(), "(*Handler).answer") {
			panic("clock broken")
		}
		return time.Now()
	}})
	resp, _ := e.Post(t, "/mcp", nil, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	if resp.StatusCode != 500 {
		t.Fatalf("panicking request: HTTP %d; want 500", resp.StatusCode)
	}
	var line string
	for _, l := range strings.Split(e.Logs.String(), "\n") {
		if strings.Contains(l, `"message":"mcp request"`) {
			line = l
		}
	}
	if !strings.Contains(line, `"apiKeyId":`) || !strings.Contains(line, `"status":"error"`) {
		t.Errorf("log line of the panicking request: %s; want its key and status error", line)
	}
	if err := buf.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := flushlogs.NewFlusher(e.DB, store, flushlogs.Options{}).Run(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := e.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM mcp_server_request_logs WHERE response_status = 'error' AND error_code = '-32603'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d request log entries of the panicking request; want 1", n)
	}
}
