package upstream_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/internal/demo/demotest"
	"mcpproxy.dev/mcpproxy/internal/logcapture"
	"mcpproxy.dev/mcpproxy/internal/wait"
	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/upstream"
)

func stdioUpstream(t *testing.T) tenant.Upstream {
	return tenant.Upstream{ConfigID: "c1", Name: "Files", Transport: tenant.TransportStdio,
		Command: demotest.Binary(t), Args: []string{"--transport", "stdio", "--name", "files"},
		Credentials: tenant.Credentials{Env: map[string]string{"DEMO_TOKEN": "from-the-config"}}}
}

func newStdioPool(t *testing.T, idle time.Duration) (*upstream.Pool, *logcapture.Buffer) {
	logs := &logcapture.Buffer{}
	p := upstream.NewPool(upstream.PoolOptions{IdleTimeout: idle, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	t.Cleanup(p.Close)
	return p, logs
}

// callText calls a tool on up's pooled session and returns its text.
func callText(t *testing.T, p *upstream.Pool, up tenant.Upstream, tool string, args map[string]any) (string, bool) {
	t.Helper()
	var res *mcp.CallToolResult
	err := p.Do(context.Background(), up, upstream.Once, func(ctx context.Context, s *mcp.ClientSession) error {
		var err error
		res, err = s.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
		return err
	})
	if err != nil {
		t.Fatalf("call %s: %v", tool, err)
	}
	return res.Content[0].(*mcp.TextContent).Text, res.IsError
}

func pidOf(t *testing.T, p *upstream.Pool, up tenant.Upstream) int {
	t.Helper()
	text, _ := callText(t, p, up, "pid", map[string]any{})
	pid, err := strconv.Atoi(text)
	if err != nil {
		t.Fatalf("pid tool answered %q", text)
	}
	return pid
}

// procState is a process's state letter from /proc ("" when there is no
// such process; "Z" for a zombie).
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// pid (comm) state ...: comm may hold spaces; the state follows
	// the last ')'.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2 : i+3]
	}
	return "?"
}

// TestStdioProcess: one process per config serves every call, gets the
// config's environment and not the proxy's, logs its stderr with the
// namespace, carries messages of several MiB, and is restarted after it
// is killed without being left a zombie.
func TestStdioProcess(t *testing.T) {
	t.Setenv("DEMO_PROXY_SECRET", "must-not-reach-the-upstream")
	p, logs := newStdioPool(t, time.Hour)
	up := stdioUpstream(t)

	pid := pidOf(t, p, up)
	for range 3 {
		if again := pidOf(t, p, up); again != pid {
			t.Fatalf("second call served by pid %d; first by %d: the process is not reused", again, pid)
		}
	}
	if got, _ := callText(t, p, up, "env", map[string]any{"name": "DEMO_TOKEN"}); got != "from-the-config" {
		t.Errorf("DEMO_TOKEN in the upstream = %q; want the config's value", got)
	}
	if got, isErr := callText(t, p, up, "env", map[string]any{"name": "DEMO_PROXY_SECRET"}); !isErr {
		t.Errorf("the proxy's own environment reached the upstream: %q", got)
	}
	wait.For(t, "the upstream's stderr line in the log", 10*time.Second, func() bool {
		return strings.Contains(logs.String(), fmt.Sprintf(`"msg":"upstream stderr","upstream":"files","line":"demo-upstream: files on stdio, pid %d"`, pid))
	})

	const kib = 6 << 10 // one 6 MiB line on stdout
	if got, _ := callText(t, p, up, "large", map[string]any{"kib": kib}); len(got) != kib<<10 {
		t.Errorf("large result = %d bytes; want %d", len(got), kib<<10)
	}

	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "the killed process reaped", 10*time.Second, func() bool { return procState(pid) == "" })
	wait.For(t, "the dead session forgotten", 10*time.Second, func() bool { return p.Len() == 0 })
	if again := pidOf(t, p, up); again == pid {
		t.Errorf("after the kill the call was served by the dead pid %d", pid)
	}
}

// TestStdioIdleAndClose: an idle process is stopped and reaped after the
// idle time; Close stops the rest, and what a process started in its
// group, before it returns.
func TestStdioIdleAndClose(t *testing.T) {
	p, _ := newStdioPool(t, 300*time.Millisecond)
	up := stdioUpstream(t)
	pid := pidOf(t, p, up)
	wait.For(t, "the idle process stopped and reaped", 10*time.Second, func() bool { return procState(pid) == "" && p.Len() == 0 })

	// A shell that starts a child in the background, says its PID on
	// stderr and becomes the demo server.
	p2, logs := newStdioPool(t, time.Hour)
	sh := tenant.Upstream{ConfigID: "c2", Name: "Shell", Transport: tenant.TransportStdio, Command: "sh",
		Args: []string{"-c", `sleep 1000 & echo "child $!" >&2; exec "$0" --transport stdio`, demotest.Binary(t)}}
	leader := pidOf(t, p2, sh)
	var child int
	childLine := regexp.MustCompile(`"line":"child (\d+)"`)
	wait.For(t, "the child's PID on stderr", 10*time.Second, func() bool {
		m := childLine.FindStringSubmatch(logs.String())
		if m != nil {
			child, _ = strconv.Atoi(m[1])
		}
		return m != nil
	})
	if s := procState(child); s == "" || s == "Z" {
		t.Fatalf("the background child %d is not running (state %q)", child, s)
	}
	p2.Close()
	if s := procState(leader); s != "" {
		t.Errorf("after Close the upstream process %d is still there (state %s)", leader, s)
	}
	// The child is killed with the group; the init process reaps it.
	wait.For(t, "the background child killed", 10*time.Second, func() bool { s := procState(child); return s == "" || s == "Z" })
	if _, err := p2.Session(context.Background(), sh); err == nil {
		t.Error("a closed pool opened a session")
	}
}

// TestStdioMissingCommand: a command that is not installed makes the
// upstream unavailable with a reason naming it.
func TestStdioMissingCommand(t *testing.T) {
	p, _ := newStdioPool(t, time.Hour)
	up := tenant.Upstream{ConfigID: "c3", Name: "Ghost", Transport: tenant.TransportStdio, Command: "mcp-proxy-no-such-command"}
	_, err := p.Session(context.Background(), up)
	if !errors.Is(err, upstream.ErrCommandNotFound) || !strings.Contains(err.Error(), `"mcp-proxy-no-such-command"`) {
		t.Errorf("err = %v; want ErrCommandNotFound naming the command", err)
	}
}
