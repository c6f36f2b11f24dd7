package proxy_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/internal/firestoretest"
	"mcpproxy.dev/mcpproxy/internal/logcapture"
	"mcpproxy.dev/mcpproxy/internal/pgtest"
	"mcpproxy.dev/mcpproxy/internal/stack"
	"mcpproxy.dev/mcpproxy/internal/testbin"
	"mcpproxy.dev/mcpproxy/internal/testenv"
	"mcpproxy.dev/mcpproxy/internal/wait"
)

// devProcess is the proxy running as a process of its own: the dev
// server binary, which serves the functions as the Functions Framework's
// wrapper does.
type devProcess struct {
	url            string // its /mcp
	cmd            *exec.Cmd
	stdout, stderr *logcapture.Buffer
	exited         chan struct{} // closed when it has exited
	exitErr        error         // cmd.Wait's, once exited is closed
}

// startDevserver starts the dev server on a free port, with e's Postgres
// and the Firestore emulator's collection coll for its request log, and
// env added to its environment. It is killed when the test ends, its
// stderr logged if the test failed.
func startDevserver(t *testing.T, e *testenv.Env, coll string, env ...string) *devProcess {
	t.Helper()
	bin := testbin.Build(t, "mcpproxy.dev/mcpproxy/cmd/devserver")
	free, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p := &devProcess{url: fmt.Sprintf("http://127.0.0.1:%d/mcp", free), cmd: exec.Command(bin),
		stdout: &logcapture.Buffer{}, stderr: &logcapture.Buffer{}, exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.cmd.Env = append(append(os.Environ(),
		"HOST=127.0.0.1", fmt.Sprintf("PORT=%d", free),
		"DATABASE_URL="+e.DB.Pool.Config().ConnString(),
		"MCP_ENCRYPTION_KEY="+pgtest.KeyringSpec,
		"FIRESTORE_EMULATOR_HOST="+firestoretest.Host(t), "GOOGLE_CLOUD_PROJECT="+firestoretest.Project,
		"REQUEST_LOG_COLLECTION="+coll), env...)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.exitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("dev server on %s:\n%s", p.url, p.stderr.String())
		}
	})
	return p
}

// kill ends the process at once and waits for it: its output is whole.
func (p *devProcess) kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

// waitServing waits until the process answers a call of key's.
func (p *devProcess) waitServing(t *testing.T, key string) {
	t.Helper()
	if err := wait.Until(context.Background(), 30*time.Second, func() bool {
		code, _ := callAt(p.url, key, "alpha__echo")
		return code == http.StatusOK
	}); err != nil {
		t.Fatalf("dev server on %s did not start: %v\n%s", p.url, err, p.stderr.String())
	}
}

// requestLines counts the request log lines ("mcp request") on stderr.
func (p *devProcess) requestLines() int {
	return strings.Count(p.stderr.String(), `"message":"mcp request"`)
}
