package proxy_test

import (
	"context"
	"slices"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/internal/demo"
	"mcpproxy.dev/mcpproxy/internal/demo/demotest"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// TestTransports: one instance in front of an SSE upstream, a server
// registered as Streamable HTTP that speaks only SSE, and a stdio
// upstream (the demo binary, as a process of the proxy's): tools, calls
// with progress, prompts, resources and completion through the proxy.
func TestTransports(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, version string) {
		e := newEnv(t, proxy.Options{})
		ctx := context.Background()
		legacy, _ := demotest.StartSSEUpstream(t, "legacy")
		fallback, refused := demotest.StartSSEUpstream(t, "fallback")
		servers := []postgres.Server{
			{Name: "Legacy", Transport: tenant.TransportSSE, URL: legacy.URL},
			{Name: "Fallback", Transport: tenant.TransportStreamableHTTP, URL: fallback.URL},
			{Name: "Local", Transport: tenant.TransportStdio, Command: demotest.Binary(t), Args: []string{"--transport", "stdio", "--name", "local"}},
		}
		key := e.AddInstance(t, "transports", servers, []string{"echo", "slow", "env", "pid"})

		var progress progressCounts
		s := e.Client(t, "/mcp", key, version, progress.options())
		var want []string
		for _, ns := range []string{"fallback", "legacy", "local"} {
			for _, tool := range []string{"echo", "env", "pid", "slow"} {
				want = append(want, ns+"__"+tool)
			}
		}
		if got := toolNames(t, s); !slices.Equal(got, want) {
			t.Fatalf("tools = %v; want %v\nlogs: %s", got, want, e.Logs)
		}
		// Connecting to the SSE-only server was refused (the SDK client
		// tries server/discover, then initialize) before the fallback.
		firstConnect := refused.Load()
		if firstConnect == 0 {
			t.Error("the SSE-only server was never asked the Streamable HTTP way")
		}
		for _, ns := range []string{"fallback", "legacy", "local"} {
			res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: ns + "__echo", Arguments: map[string]any{"text": "via " + ns}})
			if err != nil || text(t, res) != "via "+ns {
				t.Errorf("%s echo = %v, %v", ns, res, err)
			}
			params := &mcp.CallToolParams{Name: ns + "__slow", Arguments: map[string]any{"ms": 60, "steps": 3}}
			params.SetProgressToken("progress-" + ns)
			if res, err := s.CallTool(ctx, params); err != nil || res.IsError {
				t.Errorf("%s slow = %v, %v", ns, res, err)
			}
			prompt, err := s.GetPrompt(ctx, &mcp.GetPromptParams{Name: ns + "__greet", Arguments: map[string]string{"name": "Ada"}})
			if err != nil || prompt.Description != "A greeting from "+ns {
				t.Errorf("%s prompt = %+v, %v", ns, prompt, err)
			}
			completion, err := s.Complete(ctx, &mcp.CompleteParams{Ref: &mcp.CompleteReference{Type: "ref/prompt", Name: ns + "__greet"},
				Argument: mcp.CompleteParamsArgument{Name: "name", Value: "a"}})
			if err != nil || !slices.Equal(completion.Completion.Values, []string{"alice"}) {
				t.Errorf("%s completion = %+v, %v", ns, completion, err)
			}
		}
		// The stdio upstream got its config's environment.
		if res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "local__env", Arguments: map[string]any{"name": "DEMO_REGION"}}); err != nil || text(t, res) != "eu-local" {
			t.Errorf("local env = %v, %v", res, err)
		}
		// Fallback is first in the instance's order: the resource both
		// list is read from it.
		if got := readText(t, s, demo.ReadmeURI); got != "This is fallback." {
			t.Errorf("readme = %q; want fallback's", got)
		}
		if got := readText(t, s, "demo://notes/n1"); got != "Note n1 of fallback." {
			t.Errorf("note = %q; want fallback's", got)
		}
		// Progress reached the client for every transport.
		counts := progress.counts(3)
		for _, ns := range []string{"fallback", "legacy", "local"} {
			if counts["progress-"+ns] != 3 {
				t.Errorf("%s: %d progress notifications; want 3", ns, counts["progress-"+ns])
			}
		}
		// The fallback was found once and remembered.
		if n := refused.Load(); n != firstConnect {
			t.Errorf("the SSE-only server refused %d Streamable HTTP POSTs, %d of them after the fallback was found", n, n-firstConnect)
		}
	})
}
