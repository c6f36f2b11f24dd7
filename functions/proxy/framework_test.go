package proxy_test

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/internal/firestoretest"
	"mcpproxy.dev/mcpproxy/internal/wait"
)

// TestFrameworkWritesNoFlushLines: on Cloud Run (K_SERVICE set) the
// Functions Framework writes an empty line to stdout and one to stderr
// after each request; the proxy turns that off (quietFramework). The dev
// server, which serves the functions as the framework's wrapper does
// (the same os.Getenv("K_SERVICE") check on every request), runs with
// K_SERVICE set; after its calls neither output holds an empty line, and
// stderr holds each call's log line.
func TestFrameworkWritesNoFlushLines(t *testing.T) {
	e := newEnv(t, proxy.Options{})
	p := startDevserver(t, e, firestoretest.Collection(t), "K_SERVICE=mcp-proxy", "LOG_LEVEL=INFO")
	p.waitServing(t, e.Key)
	for range 5 {
		if code, ok := callAt(p.url, e.Key, "alpha__echo"); code != http.StatusOK || !ok {
			t.Fatalf("call: HTTP %d, result %v", code, ok)
		}
	}
	// The client has each answer before its handler has ended, which is
	// when the line is written.
	if err := wait.Until(context.Background(), 10*time.Second, func() bool { return p.requestLines() >= 6 }); err != nil {
		t.Errorf("%d request log lines on stderr; want one per call (6 or more):\n%s", p.requestLines(), p.stderr.String())
	}
	p.kill()
	for name, out := range map[string]string{"stdout": p.stdout.String(), "stderr": p.stderr.String()} {
		sc := bufio.NewScanner(strings.NewReader(out))
		for sc.Scan() {
			if sc.Text() == "" {
				t.Fatalf("an empty line on %s after a request:\n%s", name, out)
			}
		}
	}
}
