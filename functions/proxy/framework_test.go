package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/internal/firestoretest"
	"mcpproxy.dev/mcpproxy/internal/logcapture"
	"mcpproxy.dev/mcpproxy/internal/pgtest"
	"mcpproxy.dev/mcpproxy/internal/stack"
	"mcpproxy.dev/mcpproxy/internal/testbin"
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
	bin := testbin.Build(t, "mcpproxy.dev/mcpproxy/cmd/devserver")
	free, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	var stdout, stderr logcapture.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(),
		"HOST=127.0.0.1", fmt.Sprintf("PORT=%d", free), "K_SERVICE=mcp-proxy", "LOG_LEVEL=INFO",
		"DATABASE_URL="+e.DB.Pool.Config().ConnString(),
		"MCP_ENCRYPTION_KEY="+pgtest.KeyringSpec,
		"FIRESTORE_EMULATOR_HOST="+firestoretest.Host(t), "GOOGLE_CLOUD_PROJECT="+firestoretest.Project,
		"REQUEST_LOG_COLLECTION="+firestoretest.Collection(t))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	url := fmt.Sprintf("http://127.0.0.1:%d/mcp", free)
	if err := wait.Until(context.Background(), 30*time.Second, func() bool {
		code, _ := callAt(url, e.Key, "alpha__echo")
		return code == http.StatusOK
	}); err != nil {
		t.Fatalf("dev server did not start: %v\n%s", err, stderr.String())
	}
	for range 5 {
		if code, ok := callAt(url, e.Key, "alpha__echo"); code != http.StatusOK || !ok {
			t.Fatalf("call: HTTP %d, result %v", code, ok)
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	lines := 0
	for name, out := range map[string][]byte{"stdout": []byte(stdout.String()), "stderr": []byte(stderr.String())} {
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if sc.Text() == "" {
				t.Fatalf("an empty line on %s after a request:\n%s", name, out)
			}
			if name == "stderr" && bytes.Contains(sc.Bytes(), []byte(`"message":"mcp request"`)) {
				lines++
			}
		}
	}
	if lines < 6 {
		t.Errorf("%d request log lines on stderr; want one per call (6 or more):\n%s", lines, stderr.String())
	}
}
